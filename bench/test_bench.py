"""The pytest-benchmark suite: every case of the registry x every implementation.

``python -m pytest bench`` times every case of :mod:`bench.cases` for fastbp,
scikit-learn and PyTorch (skipped, with the reason, when torch does not
import); ``benchmark.group`` is the case name, so each table compares the
implementations on one workload.  pytest-benchmark times whole fits of
``case.n_epochs`` epochs (``extra_info`` has the epochs, the time per epoch and
the FLOPs); the JIT warm-up runs before ``benchmark(...)``.

``FASTBP_BENCH_SMOKE=1 python -m pytest -q --benchmark-disable bench`` runs
every case once at tiny sizes: what CI runs.  Nothing here asserts a timing;
the assertions are about correctness (fastbp agrees with scikit-learn).
"""

import numpy as np
import pytest

from .cases import CASES, EpochCase, ProcessCase, epoch_flops
from .runners import (
    IMPLEMENTATIONS,
    applicable,
    run_process,
    trainer,
    warm_up,
)

#: Accuracy of fastbp vs scikit-learn on the test rows, per dtype: the same
#: model in float64, the same up to rounding in float32.
ACCURACY_TOLERANCE = {np.float64: 0.01, np.float32: 0.03}


def _skip_unless_applicable(case, impl):
    reason = applicable(case, impl)
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bench(benchmark, case, impl):
    _skip_unless_applicable(case, impl)
    benchmark.group = case.name
    if isinstance(case, ProcessCase):
        benchmark.extra_info["epochs"] = case.n_epochs
        if case.cold:  # each run compiles everything: one round is enough
            _, stages = benchmark.pedantic(
                run_process, args=(case, impl), rounds=1, iterations=1
            )
        else:
            run_process(case, impl)  # fills fastbp's cache if it was empty
            _, stages = benchmark(run_process, case, impl)
        assert set(stages) == {case.job, *case.stages}
        if impl in ("sklearn", "dummy"):
            assert all(compiles == 0 for _, compiles in stages.values())
        elif case.cold:
            assert stages[case.job][1] > 0  # an empty cache: kernels compiled
        else:
            assert stages[case.job][1] == 0  # a warm cache: all loaded
        return

    data = case.data.make()
    tr = trainer(impl, case, data)
    warm_up(tr)
    n_epochs = benchmark(tr.fit, case.n_epochs)
    assert n_epochs == case.n_epochs

    accuracy = tr.accuracy()
    if impl == "fastbp" and not case.fastbp_params:  # scikit-learn's model
        reference = trainer("sklearn", case, data)
        reference.fit(case.n_epochs)
        assert accuracy == pytest.approx(
            reference.accuracy(), abs=ACCURACY_TOLERANCE[case.dtype]
        )
    units = case.layer_units(data.X_train.shape[1], data.n_classes)
    flops = epoch_flops(units, len(data.y_train))
    benchmark.extra_info.update(
        epochs=n_epochs, epoch_flops=flops, test_accuracy=accuracy
    )
    if benchmark.stats is not None:  # None under --benchmark-disable
        seconds = benchmark.stats.stats.min / n_epochs
        benchmark.extra_info.update(
            seconds_per_epoch=seconds, gflops=flops / seconds / 1e9
        )


def test_registry_is_consistent():
    for name, case in CASES.items():
        assert case.name == name
        assert case.n_epochs >= 1
        if isinstance(case, EpochCase):
            assert case.dtype in (np.float32, np.float64)
            data = case.data.make()
            assert case.batch_size <= len(data.y_train)  # no clipping warnings
        else:
            assert isinstance(case, ProcessCase)


def test_report_flags_cases_measured_on_a_contended_machine():
    # A case whose GEMM probe fell below CONTENDED_BELOW of the run's best is
    # marked, and a target measured on it says "contended" instead of met/NO.
    from . import report
    from .runners import CONTENDED_BELOW, EpochResult

    def result(case, impl, seconds, probe):
        return EpochResult(case, impl, seconds, [seconds], seconds, [seconds],
                           0.9, 0.0, 1e9, 1e9, gemm_probe=probe)  # fmt: skip

    best = 60.0
    quiet, busy = best, best * CONTENDED_BELOW * 0.9
    results = {
        "digits-adam": {"sklearn": result("digits-adam", "sklearn", 0.010, busy),
                        "fastbp": result("digits-adam", "fastbp", 0.001, busy)},
        "clf20k-adam": {"sklearn": result("clf20k-adam", "sklearn", 0.10, quiet),
                        "fastbp": result("clf20k-adam", "fastbp", 0.05, quiet)},
    }  # fmt: skip
    cases = [CASES["digits-adam"], CASES["clf20k-adam"]]
    report._mark_contended(results, cases, {"float64": best})
    assert [r.contended for r in results["digits-adam"].values()] == [True, True]
    assert not any(r.contended for r in results["clf20k-adam"].values())
    verdicts = {row[0]: row[3] for row in report.evaluate_targets(results, {})}
    assert verdicts["digits adam: speedup vs sklearn"] == "contended"  # 10x
    assert verdicts["20000x100 adam: speedup vs sklearn"] == "NO"  # 2x < 4x
    _, rows = report.epoch_table(cases, results, {}, with_torch=False)
    assert rows[0][0] == "digits-adam (contended)" and rows[1][0] == "clf20k-adam"


def test_report_marks_contended_process_cases():
    # A whole process timed while other work shares the cores must not print
    # "yes" (a quickstart run next to a test suite once showed warm 0.21 "met").
    from . import report
    from .runners import CONTENDED_BELOW, ProcessResult

    def result(impl, seconds, probe):
        res = ProcessResult("process-warm", impl, seconds, [seconds], {"fit": (0.1, 0)})
        res.gemm_probe = probe
        return res

    best = 60.0
    busy = best * CONTENDED_BELOW * 0.9
    results = {"process-warm": {"sklearn": result("sklearn", 9.0, busy),
                                "fastbp": result("fastbp", 2.0, busy)}}  # fmt: skip
    cases = [CASES["process-warm"]]
    report._mark_contended(results, cases, {"float64": best})
    verdicts = {row[0]: row[3] for row in report.evaluate_targets(results, {})}
    assert verdicts["whole process, warm cache: fastbp / sklearn"] == "contended"
    _, rows = report.process_table(cases, results)
    assert rows[0][0] == "process-warm (contended)"


def test_report_reads_the_floors_it_measures():
    # The grid search's no-work floor and the big networks' products-alone
    # ceiling turn into the rows that explain those shortfalls.
    from . import report
    from .runners import EpochResult, ProcessResult

    def process(impl, seconds):
        return ProcessResult("gridsearch-warm", impl, seconds, [seconds],
                             {"gridsearch": (seconds, 0)})  # fmt: skip

    def epoch(impl, seconds, products):
        return EpochResult("big-f64", impl, seconds, [seconds], seconds, [seconds],
                           0.9, 0.0, 60e9, 40e9, products_gflops=products)  # fmt: skip

    results = {
        "gridsearch-warm": {"sklearn": process("sklearn", 12.0),
                            "fastbp": process("fastbp", 9.0),
                            "dummy": process("dummy", 6.0)},
        "big-f64": {"sklearn": epoch("sklearn", 2.0, 50.0),
                    "fastbp": epoch("fastbp", 1.0, 50.0)},
    }  # fmt: skip
    measured = {row[0]: row[1] for row in report.evaluate_targets(results, {
        "float64": 62.5})}  # fmt: skip
    floor = "GridSearchCV process: the most any estimator reaches"
    assert measured[f"{floor} (sklearn / no-work estimator)"] == "2.00x"
    assert measured["GridSearchCV process: speedup vs sklearn above that floor"] == (
        "2.00x"  # (12 - 6) / (9 - 6)
    )
    assert measured["GridSearchCV process, warm cache: speedup vs sklearn"] == "1.33x"
    ceiling = "8192x784 f64: numpy on the same products alone (the ceiling)"
    assert measured[f"{ceiling}, of f64 GEMM rate"] == "80%"  # 50 / 62.5
    assert measured[
        "8192x784 f64: fastbp, counting only GEMMs run, of that ceiling"
    ] == (
        "80%"  # 40 GFLOP run in 1 s / 50
    )
    _, rows = report.process_table([CASES["gridsearch-warm"]], results)
    assert rows[0][-1] == "6.00"
