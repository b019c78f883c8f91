"""The one registry of benchmark cases.

Both the pytest-benchmark suite (``bench/test_bench.py``) and the report
command (``python -m bench.report``) read their cases from here, so a number in
the report and a number in a pytest-benchmark table always describe the same
workload.

There are two kinds of case:

* :class:`EpochCase`: train an MLP on a data set and measure the time per
  epoch (JIT warm-up excluded).  Every implementation gets the same data,
  architecture, solver, batch size, dtype and thread count.
* :class:`ProcessCase`: one whole user process (import, fit digits, predict)
  timed from outside, with a warm or a cold JIT cache.

``FASTBP_BENCH_SMOKE=1`` builds the registry with tiny sizes and few epochs, so
that CI runs every case, every code path, in seconds.
"""

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

#: Environment variable that shrinks every case to a tiny size.
SMOKE_ENV = "FASTBP_BENCH_SMOKE"

#: Threads given to every implementation: fastbp's ``n_jobs`` (numba threads),
#: scikit-learn's BLAS threads, ``torch.set_num_threads``.
THREADS = 2

#: Estimator parameters that make a fit run exactly ``max_iter`` epochs: no
#: tolerance, and a patience no run reaches.
EXACT_EPOCHS = {"tol": 0.0, "n_iter_no_change": 10**9}


def smoke_mode():
    """Return True when ``FASTBP_BENCH_SMOKE`` asks for tiny cases."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Dataset(NamedTuple):
    """A classification data set, split once into train and test rows."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_classes(self):
        return int(np.unique(self.y_train).size)


@dataclass(frozen=True)
class DataSpec:
    """How to make a case's data: scikit-learn's digits or a synthetic set.

    ``n_samples`` is the number of *training* rows for synthetic data (the
    test rows come on top: a quarter as many, at most 5000); digits is split
    80/20 (1437 training rows of its 1797).  Features are float64 here; a
    runner casts them to its case's dtype.
    """

    kind: str  # "digits" or "synthetic"
    n_samples: int = 0
    n_features: int = 0
    n_classes: int = 10
    n_informative: int = 0
    n_rows: int | None = None  # digits only: use the first n_rows rows

    def make(self):
        """Return the :class:`Dataset` (cached: cases share their data)."""
        return _make_dataset(self)

    @property
    def label(self):
        if self.kind == "digits":
            n = 1797 if self.n_rows is None else self.n_rows
            return f"digits {n}x64"
        return f"{self.n_samples}x{self.n_features}"


@lru_cache(maxsize=4)
def _make_dataset(spec):
    from sklearn.model_selection import train_test_split

    if spec.kind == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        if spec.n_rows is not None:
            X, y = X[: spec.n_rows], y[: spec.n_rows]
        test_size = 0.2
    elif spec.kind == "synthetic":
        from sklearn.datasets import make_classification

        n_test = min(max(spec.n_samples // 4, 2 * spec.n_classes), 5000)
        X, y = make_classification(
            n_samples=spec.n_samples + n_test,
            n_features=spec.n_features,
            n_informative=spec.n_informative or min(spec.n_features, 50),
            n_redundant=0,
            n_classes=spec.n_classes,
            random_state=0,
        )
        test_size = n_test
    else:
        raise ValueError(f"unknown data kind {spec.kind!r}")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=0
    )
    return Dataset(
        np.ascontiguousarray(X_train),
        y_train,
        np.ascontiguousarray(X_test),
        y_test,
    )


@dataclass(frozen=True)
class EpochCase:
    """Train one MLP configuration; the measure is seconds per epoch.

    Attributes
    ----------
    name : str
        Unique id, also the pytest-benchmark group.
    title : str
        What a reader of the report table sees.
    data : DataSpec
        The data maker.
    params : dict
        Estimator parameters shared by every implementation (scikit-learn's
        names: ``hidden_layer_sizes``, ``solver``, ``batch_size``, ...).
        :data:`EXACT_EPOCHS` and ``random_state=0`` are added by the runners.
    dtype : type
        ``np.float64`` or ``np.float32``: the input dtype, which both fastbp
        and scikit-learn keep for the whole fit.
    n_epochs : int
        Epochs per timed fit.
    threads : int
        Threads for every implementation (see :data:`THREADS`).
    curve, x : str or None, object
        For scaling cases: the swept axis and this case's value on it.
    quick : bool
        Part of the report's default (quick) mode.
    fastbp_params : dict
        Parameters only fastbp has (e.g. ``dropout``); a case with any is
        fastbp's alone.
    ceiling : bool
        Also measure numpy's rate on the same products alone
        (:func:`bench.runners.products_gflops`), the ceiling of fastbp's rate
        counting only the products it runs.
    """

    name: str
    title: str
    data: DataSpec
    params: dict = field(default_factory=dict)
    dtype: type = np.float64
    n_epochs: int = 5
    threads: int = THREADS
    curve: str | None = None
    x: object = None
    quick: bool = False
    fastbp_params: dict = field(default_factory=dict)
    ceiling: bool = False

    @property
    def hidden_layer_sizes(self):
        return tuple(self.params.get("hidden_layer_sizes", (100,)))

    @property
    def batch_size(self):
        return self.params.get("batch_size", 200)

    @property
    def solver(self):
        return self.params.get("solver", "adam")

    def layer_units(self, n_features, n_classes):
        """Units per layer, input to output (binary targets have one output)."""
        n_outputs = 1 if n_classes == 2 else n_classes
        return [n_features, *self.hidden_layer_sizes, n_outputs]


@dataclass(frozen=True)
class ProcessCase:
    """One whole user process: import, fit digits ``n_epochs`` epochs, predict.

    ``cold`` runs it with an empty ``NUMBA_CACHE_DIR``, so fastbp compiles
    every kernel it uses (numba's ``NUMBA_CACHE_DIR`` locator comes before the
    in-tree ``__pycache__`` one); scikit-learn has no JIT cache, so its cold
    and warm processes are the same.  ``stages`` are further first fits run in
    the same process after the timed one (see ``bench/_process.py``), each
    timed inside the process and left out of the process time.  ``job`` is
    what the process does: ``"fit"`` (the above) or ``"gridsearch"`` (a small
    ``GridSearchCV`` with loky workers on float64, float32 and CSR input).
    """

    name: str
    title: str
    n_epochs: int = 50
    cold: bool = False
    quick: bool = False
    stages: tuple = ()
    job: str = "fit"  # or "gridsearch" (see bench/_process.py)


def epoch_flops(layer_units, n_samples):
    """FLOPs of one training epoch: ``6 * n_samples * sum(fan_in * fan_out)``.

    Per weight and sample, the forward GEMM costs 2 FLOPs, the backward delta
    GEMM 2 and the weight-gradient GEMM 2; activations, biases, the loss and
    the optimizer step are lower order.
    """
    fan = sum(a * b for a, b in zip(layer_units[:-1], layer_units[1:], strict=True))
    return 6.0 * n_samples * fan


def executed_flops(layer_units, n_samples):
    """FLOPs of the products an epoch runs, without the input layer's delta.

    :func:`epoch_flops` less the delta product of the input layer, which no
    implementation computes (nothing consumes it).
    """
    return epoch_flops(layer_units, n_samples) - 2.0 * n_samples * (
        layer_units[0] * layer_units[1]
    )


# ----------------------------------------------------------------------------
# The registry.


def _headline_cases(smoke):
    def pick(full, tiny):
        return tiny if smoke else full

    digits = DataSpec("digits", n_rows=pick(None, 400))
    clf20k = DataSpec(
        "synthetic", n_samples=pick(20000, 400), n_features=100, n_informative=50
    )
    big = DataSpec(
        "synthetic", n_samples=pick(8192, 256), n_features=784, n_informative=50
    )
    big_params = {
        "hidden_layer_sizes": pick((512, 512), (64, 64)),
        "batch_size": pick(256, 64),
    }
    digits_adam = EpochCase(
        "digits-adam",
        "digits 64-100-10, adam, batch 200",
        digits,
        {"hidden_layer_sizes": (100,), "batch_size": 200},
        n_epochs=pick(20, 2),
        quick=True,
    )
    return [
        digits_adam,
        replace(
            digits_adam,
            name="digits-adam-dropout",
            title=f"{digits_adam.title}, dropout 0.2 (fastbp only)",
            fastbp_params={"dropout": 0.2},
        ),
        EpochCase(
            "clf20k-adam",
            f"{clf20k.label}, 100-100-10, adam, batch 200",
            clf20k,
            {"hidden_layer_sizes": (100,), "batch_size": 200},
            n_epochs=pick(3, 2),
            quick=True,
        ),
        EpochCase(
            "digits-online-sgd",
            "digits 64-100-10, sgd, batch 1 (online)",
            digits,
            {"hidden_layer_sizes": (100,), "solver": "sgd", "batch_size": 1},
            # Three epochs, as the other small cases take several: a fit's
            # fixed cost (~3 ms of validation and set-up) is not an epoch's.
            n_epochs=pick(3, 1),
            quick=True,
        ),
        EpochCase(
            "big-f64",
            f"{big.label}, 784-512-512-10, adam, batch 256, float64",
            big,
            big_params,
            n_epochs=1,
            ceiling=True,
        ),
        EpochCase(
            "big-f32",
            f"{big.label}, 784-512-512-10, adam, batch 256, float32",
            big,
            big_params,
            dtype=np.float32,
            n_epochs=1,
            ceiling=True,
        ),
    ]


#: The scaling curves: axis -> (values, values in quick mode).  Every point
#: changes one setting of the base configuration below.
SCALING_AXES = {
    "n_samples": ((1000, 3000, 10000, 30000, 100000), (1000, 10000, 100000)),
    "width": ((16, 64, 256, 1024), (16, 256, 1024)),
    "depth": ((1, 2, 3, 4), (1, 2, 4)),
    "batch_size": ((1, 8, 32, 128, 512, 1024), (1, 32, 1024)),
    "threads": ((1, 2), (1, 2)),
    "dtype": (("float32", "float64"), ()),
}

#: FLOPs per timed fit of a scaling point (sets its number of epochs).
_SCALING_FLOPS_PER_FIT = 2e9

#: The base of every scaling curve.
SCALING_BASE = {
    "n_samples": 4096,
    "n_features": 100,
    "width": 128,
    "depth": 1,
    "batch_size": 200,
    "threads": THREADS,
    "dtype": "float64",
}


def _scaling_cases(smoke):
    cases = []
    for axis, (values, quick_values) in SCALING_AXES.items():
        for value in values:
            setting = dict(SCALING_BASE, **{axis: value})
            n_samples = setting["n_samples"]
            if smoke:
                n_samples = max(n_samples // 200, 128)
            data = DataSpec(
                "synthetic",
                n_samples=n_samples,
                n_features=setting["n_features"],
                n_informative=50,
            )
            batch_size = min(setting["batch_size"], n_samples)
            hidden = (setting["width"],) * setting["depth"]
            # About the same work per timed fit, whatever the point; steps of
            # a few samples are slow enough that one epoch is long enough.
            flops = epoch_flops([setting["n_features"], *hidden, 10], n_samples)
            n_epochs = int(np.clip(_SCALING_FLOPS_PER_FIT // flops, 2, 20))
            if smoke or batch_size < 8:
                n_epochs = 1
            cases.append(
                EpochCase(
                    f"scale-{axis}-{value}",
                    f"scaling {axis}={value}",
                    data,
                    {
                        "hidden_layer_sizes": hidden,
                        "batch_size": batch_size,
                    },
                    dtype=np.dtype(setting["dtype"]).type,
                    n_epochs=n_epochs,
                    threads=setting["threads"],
                    curve=axis,
                    x=value,
                    quick=value in quick_values,
                )
            )
    return cases


def _process_cases(smoke):
    n_epochs = 2 if smoke else 50
    search_epochs = 2 if smoke else 15
    return [
        ProcessCase(
            "process-warm",
            f"whole process: import, fit digits {n_epochs} epochs, predict "
            "(warm JIT cache)",
            n_epochs=n_epochs,
            quick=True,
        ),
        ProcessCase(
            "process-cold",
            f"whole process: import, fit digits {n_epochs} epochs, predict "
            "(empty NUMBA_CACHE_DIR)",
            n_epochs=n_epochs,
            cold=True,
            quick=True,
            stages=("float32", "lbfgs"),
        ),
        ProcessCase(
            "gridsearch-warm",
            f"whole process: GridSearchCV, 12 candidates x 3 folds, {search_epochs} "
            "epochs, n_jobs=2, on float64, float32 and CSR digits (warm JIT cache)",
            n_epochs=search_epochs,
            quick=True,
            job="gridsearch",
        ),
    ]


def build_cases(smoke=None):
    """Return every case, in report order (smoke sizes if ``smoke``).

    ``smoke=None`` reads :data:`SMOKE_ENV`.
    """
    if smoke is None:
        smoke = smoke_mode()
    return [*_headline_cases(smoke), *_process_cases(smoke), *_scaling_cases(smoke)]


#: The registry, built once at import (sizes follow ``FASTBP_BENCH_SMOKE``).
CASES = {case.name: case for case in build_cases()}


def epoch_cases(*, scaling=None, quick=None):
    """The :class:`EpochCase` entries of :data:`CASES`, optionally filtered."""
    return [
        case
        for case in CASES.values()
        if isinstance(case, EpochCase)
        and (scaling is None or (case.curve is not None) == scaling)
        and (quick is None or case.quick == quick)
    ]


def process_cases():
    """The :class:`ProcessCase` entries of :data:`CASES`."""
    return [case for case in CASES.values() if isinstance(case, ProcessCase)]
