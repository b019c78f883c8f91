"""How each implementation trains a case, and how it is timed.

An implementation is one of :data:`IMPLEMENTATIONS`.  :func:`trainer` returns an
object with ``fit(n_epochs) -> epochs run`` (a fresh fit from the same initial
state every call) and ``accuracy() -> test accuracy of the last fit``.  The
timing helpers only ever time ``fit``; the first call (JIT compilation for
fastbp, allocator and thread-pool start-up for all) is a separate warm-up on
a few rows.

Thread policy, the same for all three: :attr:`EpochCase.threads` threads.
fastbp gets them as ``n_jobs`` (numba threads; fastbp itself holds BLAS to one
thread inside its kernels), scikit-learn as BLAS threads (threadpoolctl),
PyTorch through ``torch.set_num_threads``.
"""

import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from .cases import (
    EXACT_EPOCHS,
    THREADS,
    EpochCase,
    ProcessCase,
    epoch_flops,
    executed_flops,
)

#: Implementations, in table order.  ``dummy`` is scikit-learn's
#: ``DummyClassifier``, which does no fitting work: it runs the grid-search
#: process only, as that process's floor (see ``bench/_process.py``).
IMPLEMENTATIONS = ("sklearn", "fastbp", "torch", "dummy")


@lru_cache(maxsize=1)
def torch_import_error():
    """Return why PyTorch cannot be used (a string), or None when it can."""
    try:
        import torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return f"PyTorch is not importable ({type(exc).__name__}: {exc})"
    return None


@contextmanager
def _quiet_fit():
    """Silence the warnings a fixed-epoch fit raises by design."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def estimator_params(case, max_iter):
    """Parameters of a fastbp or scikit-learn estimator for ``case``."""
    return {
        **case.params,
        **EXACT_EPOCHS,
        "max_iter": max_iter,
        "random_state": 0,
    }


class SklearnLikeTrainer:
    """fastbp's or scikit-learn's ``MLPClassifier`` on one case."""

    def __init__(self, impl, case, data):
        self.impl = impl
        self.case = case
        self.X_train = data.X_train.astype(case.dtype)
        self.y_train = data.y_train
        self.X_test = data.X_test.astype(case.dtype)
        self.y_test = data.y_test
        self.model = None

    def _estimator(self, max_iter):
        params = estimator_params(self.case, max_iter)
        if self.impl == "fastbp":
            from fastbp import MLPClassifier

            return MLPClassifier(
                **params, **self.case.fastbp_params, n_jobs=self.case.threads
            )
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(**params)

    @contextmanager
    def _threads(self):
        if self.impl == "fastbp":  # n_jobs is a parameter of the estimator
            yield
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.case.threads, user_api="blas"):
            yield

    def fit(self, n_epochs, n_rows=None):
        """Fit from scratch for exactly ``n_epochs`` epochs; return ``n_iter_``."""
        rows = slice(None) if n_rows is None else slice(0, n_rows)
        model = self._estimator(n_epochs)
        with self._threads(), _quiet_fit():
            model.fit(self.X_train[rows], self.y_train[rows])
        self.model = model
        return model.n_iter_

    def accuracy(self):
        with self._threads():
            return float(np.mean(self.model.predict(self.X_test) == self.y_test))


class TorchTrainer:
    """The same network and training loop in PyTorch (CPU).

    Linear layers with ReLU, softmax cross-entropy, scikit-learn's optimizer
    settings (Adam with beta_1, beta_2, epsilon; SGD with Nesterov momentum
    0.9), L2 penalty ``alpha`` as weight decay ``alpha / batch_size`` on the
    weights only (scikit-learn divides the penalty by the batch size), a fresh
    random order of the rows every epoch, the case's dtype and threads.
    """

    def __init__(self, case, data):
        import torch

        self.torch = torch
        self.case = case
        tdtype = {np.float32: torch.float32, np.float64: torch.float64}[case.dtype]
        self.tdtype = tdtype
        classes, y_train = np.unique(data.y_train, return_inverse=True)
        self.classes = classes
        self.X_train = torch.from_numpy(data.X_train.astype(case.dtype))
        self.y_train = torch.from_numpy(y_train.astype(np.int64))
        self.X_test = torch.from_numpy(data.X_test.astype(case.dtype))
        self.y_test = data.y_test
        # One output per class (a binary problem too: softmax over two).
        units = case.layer_units(data.X_train.shape[1], len(classes))
        self.layer_units = [*units[:-1], len(classes)]
        self.model = None

    @contextmanager
    def _threads(self):
        previous = self.torch.get_num_threads()
        self.torch.set_num_threads(self.case.threads)
        try:
            yield
        finally:
            self.torch.set_num_threads(previous)

    def _build(self):
        torch = self.torch
        torch.manual_seed(0)
        layers = []
        units = self.layer_units
        for i, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:], strict=True)):
            layers.append(torch.nn.Linear(fan_in, fan_out, dtype=self.tdtype))
            if i < len(units) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        params = self.case.params
        batch_size = min(self.case.batch_size, len(self.y_train))
        weight_decay = params.get("alpha", 1e-4) / batch_size
        weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
        groups = [
            {"params": weights, "weight_decay": weight_decay},
            {"params": biases, "weight_decay": 0.0},
        ]
        lr = params.get("learning_rate_init", 1e-3)
        if self.case.solver == "adam":
            optimizer = torch.optim.Adam(
                groups,
                lr=lr,
                betas=(params.get("beta_1", 0.9), params.get("beta_2", 0.999)),
                eps=params.get("epsilon", 1e-8),
            )
        elif self.case.solver == "sgd":
            optimizer = torch.optim.SGD(
                groups,
                lr=lr,
                momentum=params.get("momentum", 0.9),
                nesterov=params.get("nesterovs_momentum", True),
            )
        else:
            raise ValueError(f"no PyTorch loop for solver {self.case.solver!r}")
        return model, optimizer, batch_size

    def fit(self, n_epochs, n_rows=None):
        """Train a fresh network for ``n_epochs`` epochs; return ``n_epochs``."""
        torch = self.torch
        X = self.X_train if n_rows is None else self.X_train[:n_rows]
        y = self.y_train if n_rows is None else self.y_train[:n_rows]
        n = len(y)
        with self._threads():
            model, optimizer, batch_size = self._build()
            loss_fn = torch.nn.CrossEntropyLoss()
            generator = torch.Generator().manual_seed(0)
            for _ in range(n_epochs):
                order = torch.randperm(n, generator=generator)
                for start in range(0, n, batch_size):
                    batch = order[start : start + batch_size]
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(X[batch]), y[batch])
                    loss.backward()
                    optimizer.step()
        self.model = model
        return n_epochs

    def accuracy(self):
        with self._threads(), self.torch.no_grad():
            pred = self.model(self.X_test).argmax(dim=1).numpy()
        return float(np.mean(self.classes[pred] == self.y_test))


def trainer(impl, case, data):
    """Return the trainer of ``impl`` for an :class:`EpochCase` and its data."""
    if impl in ("fastbp", "sklearn"):
        return SklearnLikeTrainer(impl, case, data)
    if impl == "torch":
        return TorchTrainer(case, data)
    raise ValueError(f"unknown implementation {impl!r}")


def warm_up(tr):
    """Fit one epoch on a few rows: compiles fastbp's kernels for the case.

    Returns the seconds it took (a JIT compile shows up here, not in timings).
    """
    n_rows = max(2 * tr.case.batch_size, 256)
    start = time.perf_counter()
    tr.fit(1, n_rows=n_rows)
    return time.perf_counter() - start


def time_fit(tr, n_epochs):
    """Seconds per epoch of one ``fit(n_epochs)`` (wall clock)."""
    start = time.perf_counter()
    n_run = tr.fit(n_epochs)
    return (time.perf_counter() - start) / n_run


#: Pause before a *paused* timed fit (the second column of the report).
SETTLE_SECONDS = 0.15


def settle():
    """Let the previous implementation's idle threads go to sleep.

    OpenBLAS worker threads (scikit-learn's, through numpy) busy-wait for
    about 0.1 s after each call.  A user never pauses, so the report's
    headline times fits back to back; the paused fits, each after this pause,
    show what an implementation does on cores nobody else is spinning on.
    """
    time.sleep(SETTLE_SECONDS)


@dataclass
class EpochResult:
    """Timing and accuracy of one implementation on one :class:`EpochCase`."""

    case: str
    impl: str
    seconds_per_epoch: float  # best of the back-to-back fits (the headline)
    all_seconds_per_epoch: list
    paused_seconds_per_epoch: float  # best of the fits started after settle()
    all_paused_seconds_per_epoch: list
    accuracy: float
    warm_up_seconds: float
    epoch_flops: float  # 6 * n_samples * sum(fan_in * fan_out)
    executed_flops: float  # the same without the input layer's delta GEMM
    gemm_probe: float = 0.0  # GFLOP/s of gemm_probe() around the case (lower)
    products_gflops: float = 0.0  # products_gflops() of the case, if it asks
    contended: bool = False  # the probe was far below the run's best

    @property
    def gflops(self):
        """Achieved rate under the nominal accounting (:func:`epoch_flops`)."""
        return self.epoch_flops / self.seconds_per_epoch / 1e9

    @property
    def executed_gflops(self):
        """Achieved rate counting only the GEMMs an implementation runs."""
        return self.executed_flops / self.seconds_per_epoch / 1e9


def measure_epoch_case(
    case, impls, repeats=3, min_seconds=0.0, max_repeats=50, progress=None
):
    """Time ``impls`` on ``case``, interleaved; the best fit of each counts.

    Each implementation is warmed up first (JIT compile excluded).  Then
    rounds of timed fits run: first every implementation back to back
    (sklearn, fastbp, torch: as a user comparing them runs them, each fit
    right after the other's, whatever threads the last one left spinning),
    then every implementation again, each after :func:`settle`.  Rounds go on
    for at least ``repeats`` and, up to ``max_repeats``, until ``min_seconds``
    have passed.  On a shared machine load comes in bursts of seconds that
    slow every implementation several-fold; many short interleaved fits give
    each one the same chances to land in a quiet window, and the minimum is
    the undisturbed time.  Returns a dict impl -> :class:`EpochResult`.
    """
    data = case.data.make()
    units = case.layer_units(data.X_train.shape[1], data.n_classes)
    n_samples = len(data.y_train)
    flops = epoch_flops(units, n_samples)
    executed = executed_flops(units, n_samples)
    trainers = {}
    warm = {}
    for impl in impls:
        trainers[impl] = trainer(impl, case, data)
        warm[impl] = warm_up(trainers[impl])
        if progress:
            progress(f"{case.name}: {impl} warm-up {warm[impl]:.2f} s")
    times = {impl: [] for impl in impls}
    paused = {impl: [] for impl in impls}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeats or (
        time.perf_counter() - start < min_seconds and rounds < max_repeats
    ):
        for impl in impls:
            times[impl].append(time_fit(trainers[impl], case.n_epochs))
        for impl in impls:
            settle()
            paused[impl].append(time_fit(trainers[impl], case.n_epochs))
        rounds += 1
    ceiling = 0.0
    if case.ceiling:
        ceiling = products_gflops(units, case.batch_size, case.dtype, case.threads)
        if progress:
            progress(
                f"{case.name}: numpy on the same products alone {ceiling:.1f} GFLOP/s"
            )
    results = {}
    for impl in impls:
        results[impl] = EpochResult(
            case=case.name,
            impl=impl,
            seconds_per_epoch=min(times[impl]),
            all_seconds_per_epoch=times[impl],
            paused_seconds_per_epoch=min(paused[impl]),
            all_paused_seconds_per_epoch=paused[impl],
            accuracy=trainers[impl].accuracy(),
            warm_up_seconds=warm[impl],
            epoch_flops=flops,
            executed_flops=executed,
            products_gflops=ceiling,
        )
        if progress:
            t = np.array(times[impl])
            progress(
                f"{case.name}: {impl} {1e3 * t.min():.3g} ms/epoch back to back "
                f"(best of {t.size}; median {1e3 * np.median(t):.3g}), "
                f"{1e3 * min(paused[impl]):.3g} paused, "
                f"accuracy {results[impl].accuracy:.3f}"
            )
    return results


# ----------------------------------------------------------------------------
# The hardware reference.


def gemm_gflops(dtype, sizes=(1024, 2048), threads=THREADS, repeats=3):
    """numpy's matmul rate in GFLOP/s (best over ``sizes`` and ``repeats``).

    A square ``n x n`` product costs ``2 n^3`` FLOPs.  BLAS gets ``threads``
    threads, as the implementations do.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    best = 0.0
    with threadpool_limits(limits=threads, user_api="blas"):
        for n in sizes:
            a = rng.standard_normal((n, n)).astype(dtype)
            b = rng.standard_normal((n, n)).astype(dtype)
            a @ b  # warm-up: thread pool start, page faults
            for _ in range(repeats):
                start = time.perf_counter()
                a @ b
                best = max(best, 2.0 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def products_gflops(layer_units, batch_size, dtype, threads=THREADS, repeats=5):
    """numpy's rate on the products of fastbp's mini-batches alone (GFLOP/s).

    fastbp splits a batch into fixed chunks of rows
    (:func:`fastbp._kernels.backprop.n_chunks_for`) and runs each chunk's products
    with one BLAS thread, the chunks spread over ``threads`` threads: for
    every layer the forward product, the weight-gradient product and, above
    the input layer, the delta product.  This runs exactly those products,
    into preallocated outputs, the same way (``threads`` Python threads, one
    BLAS thread each; numpy's matmul releases the GIL), and nothing else.
    fastbp also runs activations, the loss and the optimizer step, so its
    rate counting only the products run (:attr:`EpochResult.executed_gflops`)
    stays below this one: it is the ceiling that rate is measured against.
    Best of ``repeats`` passes over 8 batches.
    """
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from fastbp._kernels.backprop import n_chunks_for

    units = [int(u) for u in layer_units]
    n_chunks = n_chunks_for(batch_size)
    rows = -(-batch_size // n_chunks)
    rng = np.random.default_rng(2)
    # Scaled as a network's are, so that no value grows to overflow or
    # shrinks to a subnormal (which would slow the products down).
    weights = [
        (rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype)
        for a, b in zip(units[:-1], units[1:], strict=True)
    ]

    def chunk_arrays():
        acts = [rng.standard_normal((rows, u)).astype(dtype) for u in units]
        deltas = [rng.standard_normal((rows, u)).astype(dtype) for u in units]
        grads = [np.empty_like(w) for w in weights]
        return acts, deltas, grads

    chunks = [chunk_arrays() for _ in range(n_chunks)]
    flops = executed_flops(units, rows * n_chunks)  # one batch

    def run_chunks(first):
        for c in range(first, n_chunks, threads):
            acts, deltas, grads = chunks[c]
            for l, w in enumerate(weights):
                np.matmul(acts[l], w, out=acts[l + 1])
            for l in range(len(weights) - 1, -1, -1):
                np.matmul(acts[l].T, deltas[l + 1], out=grads[l])
                if l > 0:
                    np.matmul(deltas[l + 1], weights[l].T, out=deltas[l])

    best = 0.0
    n_batches = 8
    with threadpool_limits(limits=1, user_api="blas"):
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for attempt in range(repeats + 1):  # the first pass warms up
                start = time.perf_counter()
                for _ in range(n_batches):
                    list(pool.map(run_chunks, range(min(threads, n_chunks))))
                rate = n_batches * flops / (time.perf_counter() - start) / 1e9
                if attempt:
                    best = max(best, rate)
    return best


#: A case whose GEMM probe falls below this share of the run's best probe
#: ran on a contended machine (other work on the cores).
CONTENDED_BELOW = 0.6


def gemm_probe(dtype=np.float64, n=512, repeats=5):
    """A quick GEMM rate (GFLOP/s, best of ``repeats`` ``n x n`` products).

    Taken after :func:`settle`, before and after each case: other work on the
    machine shows up as a rate far below the best probe of the same run.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(dtype)
    best = 0.0
    settle()
    with threadpool_limits(limits=THREADS, user_api="blas"):
        a @ a
        for _ in range(repeats):
            start = time.perf_counter()
            a @ a
            best = max(best, 2.0 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


# ----------------------------------------------------------------------------
# Whole processes.

_PROCESS_SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_process.py"
)


@cache
def _fastbp_path():
    """The directory fastbp is imported from here, for the child processes.

    fastbp's modules there are byte-compiled first, as pip compiles a package
    it installs (scikit-learn's came compiled): where the environment sets
    ``PYTHONDONTWRITEBYTECODE`` (the machines of docs/performance.md do),
    every child process would otherwise compile fastbp's source again
    (~50 ms), which no installed fastbp does.
    """
    import fastbp

    package = os.path.dirname(os.path.abspath(fastbp.__file__))
    compileall.compile_dir(package, quiet=1)
    return os.path.dirname(package)


def run_process(case, impl):
    """Run one whole process of ``case`` for ``impl``.

    Returns ``(seconds, stages)``: the process's wall seconds without the
    further stages of ``case.stages``, and ``{stage: (seconds, compiles)}``
    as timed inside the process (the job, e.g. the base fit and predict, under
    its name ``case.job``).

    Timed from outside (``time.perf_counter`` around ``subprocess.run``), so it
    includes interpreter start-up, imports, cache loading or compilation, the
    fit and the prediction.  A cold fastbp run gets a fresh, empty
    ``NUMBA_CACHE_DIR`` (numba's user-provided locator comes before the
    in-tree ``__pycache__`` one).
    """
    if not isinstance(case, ProcessCase):
        raise TypeError(f"{case!r} is not a ProcessCase")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_fastbp_path(), env.get("PYTHONPATH")) if p
    )
    cmd = [sys.executable, _PROCESS_SCRIPT, impl, str(case.n_epochs), str(THREADS)]
    cmd += [case.job, *case.stages]
    with tempfile.TemporaryDirectory(prefix="fastbp-cold-cache-") as cache_dir:
        if case.cold and impl == "fastbp":
            env["NUMBA_CACHE_DIR"] = cache_dir
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{impl} process failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    stages = json.loads(proc.stdout.strip().splitlines()[-1])["stages"]
    seconds -= sum(stages[name][0] for name in case.stages)
    return seconds, {name: tuple(v) for name, v in stages.items()}


@dataclass
class ProcessResult:
    """Wall seconds of one implementation's whole process."""

    case: str
    impl: str
    seconds: float  # best of the repeats
    all_seconds: list
    stages: dict  # stage -> (seconds, numba compiles), of the best repeat


def measure_process_case(case, impls, repeats=3, progress=None):
    """Time whole processes of ``impls``, interleaved, best of ``repeats``.

    A warm case first runs fastbp once untimed, which fills its JIT cache if
    it was empty.  Returns impl -> :class:`ProcessResult`.
    """
    if not case.cold and "fastbp" in impls:
        run_process(case, "fastbp")
    runs = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl in impls:
            seconds, stages = run_process(case, impl)
            runs[impl].append((seconds, stages))
            if progress:
                extra = "".join(
                    f", first {name} fit {stages[name][0]:.2f} s"
                    for name in case.stages
                )
                progress(f"{case.name}: {impl} process {seconds:.2f} s{extra}")
    results = {}
    for impl, impl_runs in runs.items():
        best_seconds, best_stages = min(impl_runs, key=lambda run: run[0])
        results[impl] = ProcessResult(
            case.name, impl, best_seconds, [s for s, _ in impl_runs], best_stages
        )
    return results


def applicable(case, impl):
    """Return None if ``impl`` runs ``case``, else the reason it does not."""
    if impl == "dummy":
        if isinstance(case, ProcessCase) and case.job == "gridsearch":
            return None
        return "the no-work estimator runs the grid-search process only"
    if impl != "fastbp" and getattr(case, "fastbp_params", None):
        return f"{', '.join(case.fastbp_params)}: fastbp only"
    if impl == "torch":
        if isinstance(case, ProcessCase):
            return "the whole-process case compares fastbp with scikit-learn only"
        return torch_import_error()
    if isinstance(case, EpochCase) or isinstance(case, ProcessCase):
        return None
    return f"unknown case type {type(case).__name__}"
