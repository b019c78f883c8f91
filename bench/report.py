"""``python -m bench.report``: fastbp and scikit-learn side by side.

Quick mode (the default, about three to four minutes on two cores including the first
JIT compile) trains fastbp and scikit-learn on digits, a 20000x100 synthetic
problem and online SGD on digits, runs a reduced set of scaling points, and
prints the time per epoch, the speedup and the test accuracy of each.
``--full`` runs every case of :mod:`bench.cases` (the 8192x784 networks in
float64 and float32, the whole-process timings with a warm and a cold JIT
cache, every scaling point) and adds PyTorch when it imports.

Progress goes to stderr, one line per step; the tables go to stdout, and to
``OUT/report.md`` with the raw numbers in ``OUT/results.json``.  The scaling
curves are drawn to ``OUT/scaling.png`` when matplotlib is installed.
"""

import argparse
import json
import os
import platform
import sys
import time
from functools import partial

import numpy as np

from . import cases as bench_cases
from .runners import (
    CONTENDED_BELOW,
    applicable,
    gemm_gflops,
    gemm_probe,
    measure_epoch_case,
    measure_process_case,
)

_START = time.perf_counter()


def progress(message):
    """One line of progress on stderr, stamped with the elapsed time."""
    elapsed = time.perf_counter() - _START
    print(f"[{elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# The machine.


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_load():
    """The 1-minute load average and Linux's CPU pressure (share of the last
    10 s in which some runnable task waited for a core), or None where absent.

    Other users' work on a shared machine slows every implementation; a busy
    start or end of the run is flagged in the report.
    """
    load = {}
    try:
        load["load average (1 min)"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
        load["cpu pressure (10 s)"] = float(some[1].split("=")[1]) / 100
    except (OSError, IndexError, ValueError):
        pass
    return load


def _check_load(when):
    load = machine_load()
    # Our own threads raise the load average; waiting for a core is others'.
    busy = load.get("cpu pressure (10 s)", 0.0) > 0.05
    text = ", ".join(f"{k} {v:.2f}" for k, v in load.items()) or "unknown"
    warning = " -- BUSY: other work shares the cores, timings are noisy"
    progress(f"machine load {when}: {text}{warning if busy else ''}")
    return {f"{k} {when}": round(v, 2) for k, v in load.items()}


def machine_info(with_torch):
    """Versions and thread settings that the numbers depend on."""
    import numba
    import scipy
    import sklearn

    import fastbp
    from fastbp._numba.threads import _KERNEL_OMP_ENV

    info = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "numba": numba.__version__,
        "fastbp": fastbp.__version__,
        "threads": bench_cases.THREADS,
        "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
        "kernel OpenMP wait": ", ".join(
            f"{k}={os.environ.get(k, v)}" for k, v in _KERNEL_OMP_ENV.items()
        ),
    }
    try:
        info["numba threading layer"] = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        pass
    if with_torch:
        import torch

        info["torch"] = torch.__version__
    return info


# ----------------------------------------------------------------------------
# Tables.


def _ms(seconds):
    if seconds is None:
        return "-"
    ms = 1e3 * seconds
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _ratio(num, den):
    if num is None or den is None:
        return "-"
    return f"{num / den:.2f}x"


def _acc(value):
    return "-" if value is None else f"{value:.3f}"


def format_table(headers, rows, markdown=False):
    """Render rows of strings as an aligned text table or a Markdown table."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |"]
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _contended(results, case):
    return any(getattr(r, "contended", False) for r in results.get(case, {}).values())


def _get(results, case, impl, attr):
    result = results.get(case, {}).get(impl)
    return None if result is None else getattr(result, attr)


def epoch_table(cases, results, gemm, with_torch):
    """Headers and rows: time per epoch, speedups, GEMM fraction, accuracy."""
    headers = ["case", "sklearn ms/epoch", "fastbp ms/epoch", "speedup"]
    if with_torch:
        headers += ["torch ms/epoch", "fastbp vs torch"]
    headers += ["paused speedup", "fastbp GFLOP/s", "of GEMM"]
    headers += ["acc sklearn", "acc fastbp"]
    if with_torch:
        headers += ["acc torch"]
    rows = []
    for case in cases:
        t = {i: r.seconds_per_epoch for i, r in results[case.name].items()}
        p = {i: r.paused_seconds_per_epoch for i, r in results[case.name].items()}
        fastbp = results[case.name].get("fastbp")
        gflops = fastbp.gflops if fastbp else None
        peak = gemm.get(np.dtype(case.dtype).name)
        row = [
            case.name + (" (contended)" if _contended(results, case.name) else ""),
            _ms(t.get("sklearn")),
            _ms(t.get("fastbp")),
            _ratio(t.get("sklearn"), t.get("fastbp")),
        ]
        if with_torch:
            row += [_ms(t.get("torch")), _ratio(t.get("torch"), t.get("fastbp"))]
        row += [
            _ratio(p.get("sklearn"), p.get("fastbp")),
            "-" if gflops is None else f"{gflops:.1f}",
            "-" if gflops is None or not peak else f"{gflops / peak:.0%}",
            _acc(_get(results, case.name, "sklearn", "accuracy")),
            _acc(_get(results, case.name, "fastbp", "accuracy")),
        ]
        if with_torch:
            row.append(_acc(_get(results, case.name, "torch", "accuracy")))
        rows.append(row)
    return headers, rows


PROCESS_NOTE = (
    "A whole process: start Python, import, fit digits (all 1797 rows, adam) for "
    "the case's epochs, predict; timed from outside, best of the repeats, run "
    "interleaved with scikit-learn.  Warm: numba's cache holds fastbp's kernels; "
    "cold: an empty NUMBA_CACHE_DIR, so every kernel is compiled (scikit-learn has "
    "no JIT cache: its cold and warm processes differ by noise only).  'first float32 "
    "fit' and 'first lbfgs fit' are further fits in the cold process, timed inside "
    "it (and left out of its time): what a new configuration adds.  "
    "gridsearch-warm: GridSearchCV(n_jobs=2) over 12 candidates x 3 folds on "
    "float64, float32 and CSR digits, as a user's search script (loky workers "
    "start, import and load the kernels).  no-work estimator: the same search "
    "script with scikit-learn's DummyClassifier (12 candidates), whose fits do no "
    "work: what Python, the imports, loky's workers and GridSearchCV cost alone, "
    "the floor of that process for any estimator.  compiles: numba compilations in "
    "that process (not its workers) or step.  (contended): the GEMM probe around "
    "the case, as for the epoch cases."
)


def _stage(results, case, impl, stage):
    res = results.get(case, {}).get(impl)
    return None if res is None else res.stages.get(stage)


def process_table(cases, results):
    """Headers and rows of the whole-process timings."""
    headers = ["case", "sklearn s", "fastbp s", "fastbp / sklearn", "fastbp compiles",
               "no-work estimator s"]  # fmt: skip
    rows = []

    def add(label, sk, fb, compiles, floor=None):
        rows.append(
            [
                label,
                "-" if sk is None else f"{sk:.2f}",
                "-" if fb is None else f"{fb:.2f}",
                "-" if sk is None or fb is None else f"{fb / sk:.2f}",
                "-" if compiles is None else str(compiles),
                "-" if floor is None else f"{floor:.2f}",
            ]
        )

    for case in cases:
        fb_fit = _stage(results, case.name, "fastbp", case.job)
        mark = " (contended)" if _contended(results, case.name) else ""
        add(
            case.name + mark,
            _get(results, case.name, "sklearn", "seconds"),
            _get(results, case.name, "fastbp", "seconds"),
            None if fb_fit is None else fb_fit[1],
            _get(results, case.name, "dummy", "seconds"),
        )
        for stage in case.stages:
            sk = _stage(results, case.name, "sklearn", stage)
            fb = _stage(results, case.name, "fastbp", stage)
            add(
                f"{case.name}: first {stage} fit{mark}",
                None if sk is None else sk[0],
                None if fb is None else fb[0],
                None if fb is None else fb[1],
            )
    return headers, rows


# ----------------------------------------------------------------------------
# The targets of the issue "Benchmarks and the performance report".


def _speedup(results, case, fast="fastbp", slow="sklearn", slow_case=None):
    slow_t = _get(results, slow_case or case, slow, "seconds_per_epoch")
    fast_t = _get(results, case, fast, "seconds_per_epoch")
    return None if slow_t is None or fast_t is None else slow_t / fast_t


def _gemm_fraction(results, case, gemm, dtype, exact=False):
    fastbp = results.get(case, {}).get("fastbp")
    peak = gemm.get(dtype)
    if fastbp is None or not peak:
        return None
    return (fastbp.executed_gflops if exact else fastbp.gflops) / peak


def _products_fraction(results, case, gemm, dtype):
    """numpy's rate on the case's products alone / its square GEMM rate."""
    ceiling = _get(results, case, "fastbp", "products_gflops")
    peak = gemm.get(dtype)
    return ceiling / peak if ceiling and peak else None


def _of_products(results, case):
    """fastbp's rate counting the products run / numpy's on them alone."""
    ceiling = _get(results, case, "fastbp", "products_gflops")
    rate = _get(results, case, "fastbp", "executed_gflops")
    return rate / ceiling if ceiling else None


def _process_ratio(results, case="process-warm", fast="fastbp"):
    fb = _get(results, case, fast, "seconds")
    sk = _get(results, case, "sklearn", "seconds")
    return None if fb is None or sk is None else fb / sk


def _above_floor(results, case="gridsearch-warm"):
    """sklearn's process time above the no-work floor / fastbp's."""
    fb = _get(results, case, "fastbp", "seconds")
    sk = _get(results, case, "sklearn", "seconds")
    floor = _get(results, case, "dummy", "seconds")
    if fb is None or sk is None or floor is None or fb <= floor:
        return None
    return (sk - floor) / (fb - floor)


def _inverse(ratio):
    return None if not ratio else 1.0 / ratio


def _stage_seconds(results, stage):
    seconds = _stage(results, "process-cold", "fastbp", stage)
    return None if seconds is None else seconds[0]


#: (what, cases it is measured on, how to compute it from (results, gemm),
#: ">=" or "<=" or "" (for information), threshold, format)
TARGETS = [
    ("digits adam: speedup vs sklearn", ["digits-adam"],
     lambda r, g: _speedup(r, "digits-adam"), ">=", 5, "{:.2f}x"),
    ("digits adam: fastbp time per epoch with dropout 0.2 / without",
     ["digits-adam", "digits-adam-dropout"],
     lambda r, g: _inverse(_speedup(r, "digits-adam-dropout", slow="fastbp",
                                    slow_case="digits-adam")),
     "", None, "{:.2f}x"),
    ("20000x100 adam: speedup vs sklearn", ["clf20k-adam"],
     lambda r, g: _speedup(r, "clf20k-adam"), ">=", 4, "{:.2f}x"),
    ("digits online sgd: speedup vs sklearn", ["digits-online-sgd"],
     lambda r, g: _speedup(r, "digits-online-sgd"), ">=", 30, "{:.2f}x"),
    ("8192x784 f64: speedup vs sklearn", ["big-f64"],
     lambda r, g: _speedup(r, "big-f64"), ">=", 2, "{:.2f}x"),
    ("8192x784 f64: fastbp fraction of f64 GEMM rate", ["big-f64"],
     lambda r, g: _gemm_fraction(r, "big-f64", g, "float64"), ">=", 0.8, "{:.0%}"),
    ("8192x784 f64: the same, counting only GEMMs run (no input-layer delta)",
     ["big-f64"], lambda r, g: _gemm_fraction(r, "big-f64", g, "float64", exact=True),
     ">=", 0.85, "{:.0%}"),
    ("8192x784 f32: fastbp fraction of f32 GEMM rate, GEMMs run", ["big-f32"],
     lambda r, g: _gemm_fraction(r, "big-f32", g, "float32", exact=True),
     ">=", 0.85, "{:.0%}"),
    ("8192x784 f64: numpy on the same products alone (the ceiling), of f64 GEMM rate",
     ["big-f64"], lambda r, g: _products_fraction(r, "big-f64", g, "float64"), "",
     None, "{:.0%}"),
    ("8192x784 f64: fastbp, counting only GEMMs run, of that ceiling", ["big-f64"],
     lambda r, g: _of_products(r, "big-f64"), "", None, "{:.0%}"),
    ("8192x784 f32: numpy on the same products alone (the ceiling), of f32 GEMM rate",
     ["big-f32"], lambda r, g: _products_fraction(r, "big-f32", g, "float32"), "",
     None, "{:.0%}"),
    ("8192x784 f32: fastbp, counting only GEMMs run, of that ceiling", ["big-f32"],
     lambda r, g: _of_products(r, "big-f32"), "", None, "{:.0%}"),
    ("8192x784 f32: fastbp f32 speedup vs sklearn f64", ["big-f32", "big-f64"],
     lambda r, g: _speedup(r, "big-f32", slow_case="big-f64"), ">=", 4, "{:.2f}x"),
    ("whole process, warm cache: fastbp / sklearn", ["process-warm"],
     lambda r, g: _process_ratio(r), "<=", 1.15, "{:.2f}"),
    ("GridSearchCV process, warm cache: speedup vs sklearn", ["gridsearch-warm"],
     lambda r, g: _inverse(_process_ratio(r, "gridsearch-warm")), ">=", 2,
     "{:.2f}x"),
    ("GridSearchCV process: the most any estimator reaches (sklearn / no-work "
     "estimator)", ["gridsearch-warm"],
     lambda r, g: _inverse(_process_ratio(r, "gridsearch-warm", fast="dummy")), "",
     None, "{:.2f}x"),
    ("GridSearchCV process: speedup vs sklearn above that floor", ["gridsearch-warm"],
     lambda r, g: _above_floor(r), "", None, "{:.2f}x"),
    ("whole process, cold cache: fastbp seconds", ["process-cold"],
     lambda r, g: _get(r, "process-cold", "fastbp", "seconds"), "<=", 10, "{:.1f} s"),
    ("cold process: the first float32 fit adds (fastbp seconds)", ["process-cold"],
     lambda r, g: _stage_seconds(r, "float32"), "<=", 5, "{:.1f} s"),
    ("cold process: the first lbfgs fit adds (fastbp seconds)", ["process-cold"],
     lambda r, g: _stage_seconds(r, "lbfgs"), "<=", 5, "{:.1f} s"),
]  # fmt: skip


def evaluate_targets(results, gemm):
    """Rows (target, measured, goal, met) for every target that was measured.

    A target measured on a case that ran on a contended machine says so
    instead of "yes" or "NO".
    """
    rows = []
    for what, cases, compute, op, threshold, fmt in TARGETS:
        value = compute(results, gemm)
        if value is None:
            continue
        if not op:
            rows.append([what, fmt.format(value), "", ""])
            continue
        met = value >= threshold if op == ">=" else value <= threshold
        verdict = "yes" if met else "NO"
        if any(_contended(results, case) for case in cases):
            verdict = "contended"
        rows.append([what, fmt.format(value), f"{op} {fmt.format(threshold)}", verdict])
    return rows


def torch_rows(results):
    """(what, fastbp speedup vs torch, case) for every case torch ran."""
    rows = []
    for case, by_impl in results.items():
        if "torch" in by_impl and "fastbp" in by_impl and not case.startswith("scale"):
            speedup = _speedup(results, case, slow="torch")
            rows.append([f"{case}: fastbp speedup vs PyTorch", speedup, case])
    return rows


# ----------------------------------------------------------------------------
# The run.


def _jit_note(case, impl, compiled):
    key = np.dtype(case.dtype).name
    if impl == "fastbp" and key not in compiled:
        compiled.add(key)
        progress(
            f"fastbp {key}: first fit compiles the kernels unless numba's cache has "
            "them (about 20-30 s) ..."
        )


def _measure_uncontended(case, measure, probes, retries=1):
    """``measure()`` of ``case``, re-measured while the machine is contended.

    A GEMM probe before and after the case (the lower counts) far below the
    best probe of the run so far means other work shared the cores: the case
    runs again, up to ``retries`` times, and the least contended run counts.
    Whole-process cases are probed in float64 like the epoch cases.
    """
    dtype = np.dtype(getattr(case, "dtype", np.float64)).type
    best_run = None
    for attempt in range(1 + retries):
        before = gemm_probe(dtype)
        by_impl = measure()
        after = gemm_probe(dtype)
        key = np.dtype(dtype).name
        probes[key] = max(probes.get(key, 0.0), before, after)
        probe = min(before, after)
        for res in by_impl.values():
            res.gemm_probe = probe
        if best_run is None or probe > best_run[0]:
            best_run = (probe, by_impl)
        if probe >= CONTENDED_BELOW * probes[key]:
            break
        again = ", measuring again" if attempt < retries else ""
        progress(
            f"{case.name}: contended (GEMM probe {probe:.0f} GFLOP/s, best of the "
            f"run {probes[key]:.0f}){again}"
        )
    return best_run[1]


def _mark_contended(results, cases, probes):
    """Flag every case whose probe was far below the run's best."""
    for case in cases:
        best = probes.get(np.dtype(getattr(case, "dtype", np.float64)).name)
        for res in results.get(case.name, {}).values():
            if hasattr(res, "gemm_probe") and best:
                res.contended = res.gemm_probe < CONTENDED_BELOW * best


def run(full, out_dir, repeats=3, seconds=None, plot=True):
    """Run the report; return the results dictionary that is also saved.

    Every epoch case gets at least ``repeats`` interleaved rounds of timed
    fits, and more until ``seconds`` (a third of it for a scaling point) have
    passed; ``None`` means 4 s in quick mode and 10 s in full mode.
    """
    if seconds is None:
        seconds = 10.0 if full else 4.0
    torch_error = applicable(bench_cases.CASES["digits-adam"], "torch")
    with_torch = full and torch_error is None
    if full and torch_error:
        progress(f"no torch column: {torch_error}")
    impls = ["sklearn", "fastbp"] + (["torch"] if with_torch else [])
    mode = "full" if full else "quick"
    smoke = bench_cases.smoke_mode()
    sizes = " (smoke sizes)" if smoke else ""
    progress(f"bench.report, {mode} mode{sizes}: {', '.join(impls)}")

    headline = [c for c in bench_cases.epoch_cases(scaling=False) if full or c.quick]
    scaling = [c for c in bench_cases.epoch_cases(scaling=True) if full or c.quick]
    processes = [c for c in bench_cases.process_cases() if full or c.quick]

    load = _check_load("at start")
    dtypes = sorted({np.dtype(c.dtype).name for c in headline + scaling})
    gemm = {}
    for dtype in dtypes:
        gemm[dtype] = gemm_gflops(np.dtype(dtype).type)
        progress(f"numpy GEMM rate, {dtype}, {bench_cases.THREADS} threads: "
                 f"{gemm[dtype]:.1f} GFLOP/s")  # fmt: skip

    probes = {}  # dtype -> best gemm_probe() of the run so far
    results = {}
    compiled = set()
    todo = headline + processes + scaling
    for step, case in enumerate(todo, 1):
        progress(f"({step}/{len(todo)}) {case.name}: {case.title}")
        case_impls = [i for i in (*impls, "dummy") if applicable(case, i) is None]
        if isinstance(case, bench_cases.ProcessCase):
            # a cold process compiles for ~15 s, a grid search runs ~10 s
            n = (1 if case.cold or case.job != "fit" else repeats) + int(full)
            results[case.name] = _measure_uncontended(
                case,
                partial(
                    measure_process_case, case, case_impls, repeats=n, progress=progress
                ),
                probes,
            )
            continue
        for impl in case_impls:
            _jit_note(case, impl, compiled)
        min_seconds = seconds if case.curve is None else seconds / 3
        results[case.name] = _measure_uncontended(
            case,
            partial(
                measure_epoch_case,
                case,
                case_impls,
                progress=progress,
                repeats=repeats,
                min_seconds=min_seconds,
            ),
            probes,
        )

    _mark_contended(results, todo, probes)
    load.update(_check_load("at end"))
    info = {**machine_info(with_torch), **load}
    report = render(info, gemm, headline, processes, scaling, results, with_torch, mode)
    print(report["text"])

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report["markdown"])
    payload = {
        "mode": mode,
        "smoke": smoke,
        "command": "python -m bench.report" + (" --full" if full else ""),
        "machine": info,
        "gemm_gflops": gemm,
        "results": {
            case: {impl: vars(res) for impl, res in by_impl.items()}
            for case, by_impl in results.items()
        },
        "targets": report["targets"],
    }
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(payload, f, indent=1, default=float)
    progress(f"wrote {os.path.join(out_dir, 'report.md')} and results.json")

    if plot:
        path = os.path.join(out_dir, "scaling.png")
        try:
            from .plot import plot_scaling

            plot_scaling(scaling, results, path, title=_plot_title(info, mode))
        except ImportError as exc:
            progress(f"no plot: matplotlib is not importable ({exc}); "
                     "pip install 'fastbp[plot]'")  # fmt: skip
        else:
            progress(f"wrote {path}")
    progress("done")
    return payload


def _plot_title(info, mode):
    return (
        f"fastbp vs scikit-learn ({mode} run): time per epoch, {info['threads']} "
        f"threads, {info['cpu']}"
    )


def render(info, gemm, headline, processes, scaling, results, with_torch, mode):
    """The report as plain text (stdout) and Markdown (report.md)."""
    parts = {"text": [], "markdown": []}

    def section(title, headers, rows, note=None):
        if not rows:
            return
        parts["text"] += [f"\n{title}", format_table(headers, rows)]
        parts["markdown"] += [f"\n### {title}\n", format_table(headers, rows, True)]
        if note:
            parts["text"].append(note)
            parts["markdown"].append(f"\n{note}")

    machine = [[k, str(v)] for k, v in info.items()]
    machine += [[f"numpy GEMM {k}", f"{v:.1f} GFLOP/s"] for k, v in gemm.items()]
    section("Machine", ["", ""], machine)
    note = (
        "Time per epoch: best of the repeats, JIT warm-up excluded, each fit "
        "started right after the other implementation's (as a user alternating "
        "them runs them: no pause for the other library's threads to go idle); "
        "speedup = sklearn / fastbp time; paused speedup = the same for fits "
        "each started after a 0.15 s pause; (contended) = a GEMM probe around "
        "the case ran below 60% of the run's best, after one re-measurement: "
        "other work shared the cores; GFLOP/s = 6 * n_samples * sum(fan_in * fan_out) "
        "per epoch / time; 'of GEMM' = that rate / numpy's GEMM rate in the "
        "case's dtype measured in this run; accuracy on the held-out test rows."
    )
    section("Time per epoch", *epoch_table(headline, results, gemm, with_torch), note)
    section("Whole process", *process_table(processes, results), PROCESS_NOTE)
    target_rows = evaluate_targets(results, gemm)
    if with_torch:
        for what, value, case in torch_rows(results):
            if value:
                verdict = "yes" if value > 1 else "NO"
                if _contended(results, case):
                    verdict = "contended"
                target_rows.append([what, f"{value:.2f}x", "> 1.00x", verdict])
    section("Targets", ["target", "measured", "goal", "met"], target_rows)
    section(
        "Scaling points",
        *epoch_table(scaling, results, gemm, with_torch),
    )
    header = f"fastbp benchmark report ({mode} mode)"
    return {
        "text": "\n".join([header, *parts["text"]]),
        "markdown": "\n".join([f"## {header}", *parts["markdown"]]) + "\n",
        "targets": target_rows,
    }


def main(argv=None):
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Train fastbp and scikit-learn side by side and report the "
        "time per epoch, speedup and accuracy.",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="every case: the 8192x784 networks (float64 and float32), whole "
        "processes with a warm and a cold JIT cache, all scaling points, and "
        "PyTorch when it imports (several minutes)",
    )
    parser.add_argument(
        "--out", default="bench_out", help="output directory (default: bench_out)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="least number of timed fits per implementation and case (default 3)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="keep timing a case until this many seconds have passed (a third of "
        "it for a scaling point; default 4, or 10 with --full); the best fit counts",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = parser.parse_args(argv)
    run(
        args.full,
        args.out,
        repeats=max(1, args.repeats),
        seconds=args.seconds,
        plot=not args.no_plot,
    )


if __name__ == "__main__":
    main()
