"""The on-disk compile cache, seen from fresh processes.

* A model unpickled in a new process predicts without compiling anything when
  the cache is warm (estimators hold arrays, never compiled functions).
* When the package directory is read-only and holds no cache, kernels are
  cached in numba's user-wide directory instead, and a second process loads
  them from there.
* A cache built ahead of time and mounted read-only is loaded from; kernels
  it lacks compile in memory, with one warning.
* With no writable location at all, fastbp still imports and works, compiling
  in memory, and says so once.
* A process compiles or loads only the kernels its fits run.

numba's cache locators decide writability by trying to create a file; CI runs
as root, for whom file modes do not stop writes, so the child process makes
the locator's check fail exactly where numba makes it.
"""

import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp._numba import internals

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

_CHILD = textwrap.dedent(
    """
    import importlib.util, json, os, pickle, sys, warnings
    import numba.core.caching as caching
    from numba.core.registry import CPUDispatcher

    mode, model_path, X_path = sys.argv[1:4]

    def read_only(self):
        raise PermissionError(f"{self.get_cache_path()} is read-only (simulated)")

    if mode in ("read-only", "nowhere"):
        # A read-only package directory that holds no cache (one that does,
        # built ahead of time, is loaded from: see the read-only mount test).
        empty = os.path.join(os.path.dirname(model_path), "empty-package-cache")
        os.makedirs(empty, exist_ok=True)
        caching.InTreeCacheLocator.get_cache_path = lambda self: empty
        caching.InTreeCacheLocator.ensure_cache_path = read_only
    if mode == "nowhere":
        caching.UserWideCacheLocator.ensure_cache_path = read_only

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastbp
        import numpy as np

        with open(model_path, "rb") as f:
            model = pickle.load(f)
        proba = model.predict_proba(np.load(X_path))
        if mode == "fit-too":  # kernels the cache does not hold
            X = np.load(X_path)
            fastbp.MLPRegressor(hidden_layer_sizes=(3,), max_iter=2).fit(X, X[:, 0])

    hits = misses = 0
    paths = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith("fastbp."):
            continue
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher) and obj.signatures:
                stats = obj.stats
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
                if stats.cache_path:
                    paths.add(stats.cache_path)
    print(json.dumps({
        "hits": hits, "misses": misses, "paths": sorted(paths),
        "proba": proba.tolist(),
        "warnings": [str(w.message) for w in caught],
    }))
    """
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    X, y = load_digits(return_X_y=True)
    X, y = X[:200] / 16, y[:200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastbp.MLPClassifier(
            hidden_layer_sizes=(16,), activation="tanh", max_iter=5, random_state=0
        ).fit(X, y)
    expected = model.predict_proba(X)  # also warms this process's cache
    folder = tmp_path_factory.mktemp("cache")
    model_path, X_path = folder / "model.pkl", folder / "X.npy"
    model_path.write_bytes(pickle.dumps(model))
    np.save(X_path, X)
    return model_path, X_path, expected


def _run_child(code, env, cwd, *args):
    """Run ``code`` (with ``args``) in a child process; its last line is JSON."""
    # The fastbp this test imported, whether installed or in the checkout.
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env = dict(env, PYTHONPATH=os.pathsep.join([root, env.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(mode, fitted, tmp_path):
    model_path, X_path, _ = fitted
    env = dict(os.environ)
    if mode != "default":
        # The simulations act on the package and user-wide locators, which a
        # user's NUMBA_CACHE_DIR would take precedence over.  The default
        # child keeps it: it must find what this process cached there.
        env.pop("NUMBA_CACHE_DIR", None)
    env["XDG_CACHE_HOME"] = str(tmp_path / "user-cache")
    return _run_child(_CHILD, env, tmp_path, mode, str(model_path), str(X_path))


_IMPORT_CHILD = textwrap.dedent(
    """
    import gc, json, os, sys
    import numba
    import numpy as np

    def state():
        return {
            "gc": gc.isenabled(), "frozen": gc.get_freeze_count(),
            "layer": numba.config.THREADING_LAYER, "opt": str(numba.config.OPT),
            "environ": dict(os.environ),
        }

    if sys.argv[1] == "disabled":
        gc.disable()
    if sys.argv[1] == "frozen":  # e.g. a pre-forking server's objects
        kept = [[i] for i in range(1000)]
        gc.freeze()
    before = state()
    import fastbp
    from numba.core.registry import CPUDispatcher

    signatures = 0
    for name, module in list(sys.modules.items()):
        if name.startswith("fastbp."):
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher):
                    signatures += len(obj.signatures)
    after_import = state()
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 3)), rng.randint(2, size=60)
    fastbp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, n_jobs=2).fit(X, y)
    print(json.dumps({
        "before": before, "after_import": after_import, "after_fit": state(),
        "signatures": signatures,
    }))
    """
)


@pytest.mark.parametrize("collector", ["enabled", "disabled", "frozen"])
def test_import_and_fit_change_nothing_process_wide(collector, tmp_path):
    # The collector as the user had it (enabled or not, the user's frozen
    # objects frozen, nothing else), numba's threading layer and optimisation
    # level, and the environment are the same after import and after a fit;
    # nothing is compiled or loaded at import.
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    result = _run_child(_IMPORT_CHILD, env, tmp_path, collector)
    before = result["before"]
    assert before["layer"] == "default", before
    frozen_before = before.pop("frozen")
    for after in (result["after_import"], result["after_fit"]):
        frozen = after.pop("frozen")
        if collector == "frozen":  # frozen objects may still die by refcount
            assert 0 < frozen <= frozen_before
        else:
            assert frozen == frozen_before == 0
        assert after == before
    assert result["signatures"] == 0, result


_THREADS_CHILD = textwrap.dedent(
    """
    import json, threading
    import numba
    import numpy as np
    import fastbp

    rng = np.random.RandomState(0)
    data = [(rng.normal(size=(3000, 20)), rng.randint(3, size=3000)) for _ in range(3)]

    def make():
        return fastbp.MLPClassifier(hidden_layer_sizes=(32,), max_iter=4,
                                    random_state=0, n_jobs=2)

    sequential = [make().fit(X, y).coefs_[0] for X, y in data]
    models = [make() for _ in data]
    threads = [threading.Thread(target=m.fit, args=xy) for m, xy in zip(models, data)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same = all(np.array_equal(m.coefs_[0], c) for m, c in zip(models, sequential))
    print(json.dumps({"layer": numba.threading_layer(), "same": same}))
    """
)


def test_fits_from_threads_take_turns_on_numbas_workqueue_layer(tmp_path):
    # numba's workqueue layer aborts on concurrent parallel regions; fastbp
    # leaves the layer to numba (or the user) and serialises its own calls.
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    result = _run_child(_THREADS_CHILD, env, tmp_path)
    assert result == {"layer": "workqueue", "same": True}


def test_unpickled_model_loads_kernels_without_compiling(fitted, tmp_path):
    result = _child("default", fitted, tmp_path)
    assert result["misses"] == 0, result  # nothing compiled ...
    assert result["hits"] > 0, result  # ... everything loaded from the cache
    np.testing.assert_array_equal(result["proba"], fitted[2])
    assert not result["warnings"]


_LINK_LOADED = textwrap.dedent(
    """
    import json
    import numba
    import numpy as np
    from fastbp._kernels import activations as _activations

    # Compiled into the empty cache by the first child, loaded by the second.
    _activations.FORWARD.address(_activations.RELU, np.float64)
    (cres,) = _activations.relu_forward.overloads.values()
    relu_forward = _activations.relu_forward

    @numba.njit
    def relu(z):  # numba links relu_forward's code into this function
        relu_forward(z, np.empty(0))
        return z

    z = np.linspace(-2.0, 2.0, 9)
    print(json.dumps({
        "relu": relu(z.copy()).tolist(), "expected": np.maximum(z, 0.0).tolist(),
    }))
    """
)


def test_a_kernel_loaded_from_the_cache_still_links_into_new_code(tmp_path):
    # fastbp's kernels call each other by address, but a user's numba code
    # may call one directly: numba then links the cached kernel's code.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    compiled = _run_child(_LINK_LOADED, env, tmp_path)
    loaded = _run_child(_LINK_LOADED, env, tmp_path)
    for result in (compiled, loaded):
        np.testing.assert_array_equal(result["relu"], result["expected"])


def _private_mount_or_skip(what, probe_script):
    """Skip where ``probe_script`` (a mount in a private namespace) fails.

    CI sets ``FASTBP_REQUIRE_READ_ONLY_MOUNT=1``: there the test must run.
    """
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", probe_script],
                           capture_output=True)  # fmt: skip
    if probe.returncode != 0:
        message = f"no {what} here: {probe.stderr.decode()[-200:]}"
        if os.environ.get("FASTBP_REQUIRE_READ_ONLY_MOUNT") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _read_only_mount_or_skip():
    _private_mount_or_skip(
        "read-only bind mount",
        'd=$(mktemp -d) && mount --bind "$d" "$d" && '
        'mount -o remount,ro,bind "$d" && ! touch "$d/x" 2>/dev/null',
    )


@pytest.mark.skipif(
    internals.PUBLIC_ONLY, reason="numba's own cache accepts writable directories only"
)
@pytest.mark.parametrize("mode", ["default", "fit-too"])
def test_a_cache_built_ahead_loads_from_a_read_only_mount(mode, fitted, tmp_path):
    # A cache filled ahead of time (as in a container image), then mounted
    # read-only: numba accepts only writable directories and would compile
    # everything again elsewhere; fastbp loads from it, and what it lacks is
    # compiled in memory with one warning.
    _read_only_mount_or_skip()
    cache = tmp_path / "cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    filled = _run_child(_CHILD, env, tmp_path, "default", *map(str, fitted[:2]))
    assert filled["misses"] > 0 and not filled["warnings"], filled
    model_path, X_path = fitted[:2]
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    mount = (
        f"mount --bind {cache} {cache} && mount -o remount,ro,bind {cache} && "
        f"! touch {cache}/probe 2>/dev/null && "
        f"exec {sys.executable} {script} {mode} {model_path} {X_path}"
    )
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    out = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True,
                         text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(loaded["proba"], fitted[2])
    if mode == "default":
        assert loaded["misses"] == 0 and loaded["hits"] > 0, loaded
        assert loaded["paths"] and all(
            p.startswith(str(cache)) for p in loaded["paths"]
        )
        assert not loaded["warnings"], loaded
    else:
        assert loaded["misses"] > 0, loaded
        (warning,) = [w for w in loaded["warnings"] if w.startswith("fastbp:")]
        assert "could not save" in warning and str(cache) in warning, warning


@pytest.mark.slow
def test_read_only_package_falls_back_to_the_user_cache(fitted, tmp_path):
    user_cache = str(tmp_path / "user-cache")
    first = _child("read-only", fitted, tmp_path)  # compiles into the user cache
    assert first["misses"] > 0, first
    assert first["paths"] and all(p.startswith(user_cache) for p in first["paths"])
    second = _child("read-only", fitted, tmp_path)  # loads from it
    assert second["misses"] == 0 and second["hits"] > 0, second
    for result in (first, second):
        np.testing.assert_array_equal(result["proba"], fitted[2])
        assert not result["warnings"]


@pytest.mark.slow
def test_no_writable_cache_location_compiles_in_memory(fitted, tmp_path):
    result = _child("nowhere", fitted, tmp_path)
    assert result["hits"] == 0 and not result["paths"], result
    np.testing.assert_array_equal(result["proba"], fitted[2])
    messages = [m for m in result["warnings"] if "compile cache" in m]
    assert len(messages) == 1, result["warnings"]
    assert "NUMBA_CACHE_DIR" in messages[0]


#: Prelude of the child scripts below: counts numba's compilations.
_COUNT_COMPILES = textwrap.dedent(
    """
    import json, warnings
    import numba.core.event as numba_event

    class Count(numba_event.Listener):
        n = 0
        def on_start(self, event):
            self.n += 1
        def on_end(self, event):
            pass

    count = Count()
    numba_event.register("numba:compile", count)
    """
)


def _run_with_cache(code, cache_dir, cwd):
    """Run ``code`` in a child process with ``NUMBA_CACHE_DIR=cache_dir``."""
    return _run_child(code, dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir)), cwd)


_FIRST_FITS = _COUNT_COMPILES + textwrap.dedent(
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numpy as np
        import fastbp
        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 5))
        y = (X[:, 0] > 0).astype(int)
        counts = []
        # batch_size=200: two chunks per batch, run in parallel
        for params in ({"batch_size": 1}, {"batch_size": 200}, {"batch_size": 200}):
            before = count.n
            fastbp.MLPClassifier(
                hidden_layer_sizes=(4,), max_iter=2, random_state=0, **params
            ).fit(X, y).predict(X)
            counts.append(count.n - before)
    print(json.dumps({
        "counts": counts,
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    }))
    """
)


@pytest.mark.slow
def test_first_fits_from_an_empty_cache_compile_quietly(tmp_path):
    # Online SGD compiles the batch kernel with its parallel loop pruned, which
    # numba would warn about; a second configuration compiles only what it
    # adds, and a repeated one nothing.
    result = _run_with_cache(_FIRST_FITS, tmp_path / "cache", tmp_path)
    numba_warnings = [w for w in result["warnings"] if "Numba" in w]
    assert not numba_warnings, numba_warnings
    online, mini_batch, again = result["counts"]
    assert online > 0 and mini_batch > 0, result
    assert mini_batch < online, result  # the shared kernels are not compiled again
    assert again == 0, result


_USER_FITS = _COUNT_COMPILES + textwrap.dedent(
    """
    import numpy as np
    import scipy.sparse as sp
    import fastbp
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 20)).astype(np.float32)
    y = rng.integers(0, 2, 500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for Xk in (X, sp.csr_matrix(X)):
            for params in ({}, {"batch_size": 1, "solver": "sgd"},
                           {"solver": "cg"}, {"early_stopping": True},
                           {"dropout": 0.2}, {"dropout": [0.1], "batch_size": 1},
                           {"solver": "sgd", "nesterovs_momentum": False},
                           {"max_grad_norm": 1.0},
                           {"max_grad_norm": 0.5, "dropout": 0.1, "solver": "sgd"},
                           {"activation": "tanh"},
                           {"hidden_layer_sizes": (3, 3),
                            "activation": ["gelu", "softplus"]}):
                fastbp.MLPClassifier(max_iter=2, random_state=0, **params).fit(
                    Xk, y
                ).predict_proba(Xk)
            fastbp.MLPRegressor(max_iter=2, random_state=0).fit(Xk, y * 1.0)
            fastbp.MLPRegressor(max_iter=2, random_state=0, loss="poisson").fit(
                Xk, y + 1.0
            ).predict(Xk)
    print(json.dumps({"compiles": count.n}))
    """
)

_WARM = (
    "import fastbp; print(fastbp.warm_cache(['float32'], sparse=True, dropout=True, "
    "clipping=True))"
)


_USED_ONLY = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    import fastbp
    from fastbp._kernels import activations as _activations, losses as _losses
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastbp.MLPClassifier(max_iter=2, activation="tanh").fit(
            X, np.arange(300) % 3).predict(X)
    kernels = [
        kernel
        for table in (_activations.FORWARD, _activations.DERIVATIVE,
                      _losses.OUTPUT, _losses.DELTA)
        for kernel in table.kernels.values()
    ]
    print(json.dumps({
        "compiled": {k.py_func.__name__: len(k.overloads) for k in kernels},
        # the class of the kernel's cache index: numba's NullCache has none
        "cached": {
            k.py_func.__name__: type(getattr(k._cache, "_cache_file", None)).__name__
            for k in kernels
        },
    }))
    """
)


def test_a_fit_compiles_only_its_own_activation_and_loss_kernels(tmp_path):
    # Activations and losses are called by address: a tanh classifier's first
    # fit compiles (or loads) tanh's and log_loss's kernels and no other.
    result = _run_with_cache(_USED_ONLY, tmp_path / "cache", tmp_path)
    compiled = result["compiled"]
    used = {"tanh_forward", "tanh_derivative", "log_loss_output", "log_loss_delta"}
    assert {name for name, n in compiled.items() if n} == used, compiled
    assert all(compiled[name] == 1 for name in used), compiled  # float64 only
    if internals.PUBLIC_ONLY:  # numba's cache=True: set up at definition
        return
    # Only those set their cache up (fastbp's hardened one); the others did
    # not even check their cache directory.
    cached = result["cached"]
    assert all(cached[name] == "_LockedIndexDataCacheFile" for name in used), cached
    assert all(cached[name] == "NoneType" for name in set(cached) - used), cached


@pytest.mark.slow
def test_warm_cache_compiles_what_later_fits_use(tmp_path):
    cache = tmp_path / "cache"
    assert _run_with_cache(_WARM, cache, tmp_path) > 0  # an empty cache: compiles
    assert _run_with_cache(_USER_FITS, cache, tmp_path) == {"compiles": 0}
    assert _run_with_cache(_WARM, cache, tmp_path) == 0  # a warm one loads all


def test_warm_cache_rejects_bad_arguments():
    with pytest.raises(ValueError, match="float64 or float32"):
        fastbp.warm_cache(dtypes=["int64"])
    with pytest.raises(TypeError, match="sparse must be a bool"):
        fastbp.warm_cache(sparse="yes")
    with pytest.raises(TypeError, match="dropout must be a bool"):
        fastbp.warm_cache(dropout=0.2)
    with pytest.raises(TypeError, match="clipping must be a bool"):
        fastbp.warm_cache(clipping=1.0)


_FIT_AND_REPORT = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    import fastbp
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] > 0).astype(int)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = fastbp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2,
                                       random_state=0).fit(X, y)
        return [c.tolist() for c in clf.coefs_]
    """
)

_RECOMPILE_CALLEES = _FIT_AND_REPORT + textwrap.dedent(
    """
    import itertools
    from numba.core.bytecode import FunctionIdentity
    from fastbp._kernels import backprop as _backprop, update as _update

    fit()  # everything loads from the cache
    # Another process compiles the callees again and saves them over the
    # entries the cached callers were linked against: its numba numbers its
    # functions differently (as any process that compiled other code first).
    FunctionIdentity._unique_ids = itertools.count(10**6)
    for callee in (_backprop.batch_gradients, _update.finish_and_step):
        callee._cache.load_overload = lambda sig, target_context: None
        for sig in list(callee.overloads):
            del callee.overloads[sig]
            callee.compile(sig)
    print(json.dumps({"coefs": fit()}))
    """
)


@pytest.mark.slow
def test_cached_callers_survive_callees_compiled_again_by_another_process(tmp_path):
    # Before callers called callees by a process-independent name, the third
    # process aborted ("LLVM ERROR: Symbol not found") loading a cached caller.
    fill = _FIT_AND_REPORT + "print(json.dumps({'coefs': fit()}))"
    first = _run_with_cache(fill, tmp_path, tmp_path)
    second = _run_with_cache(_RECOMPILE_CALLEES, tmp_path, tmp_path)
    third = _run_with_cache(fill, tmp_path, tmp_path)
    assert first["coefs"] == second["coefs"] == third["coefs"]


_PRODUCTS_LOADED = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    import fastbp
    from fastbp._kernels import linalg as _linalg

    rng = np.random.default_rng(0)
    X = rng.standard_normal((203, 5))  # batches of 200 leave a last one of 3
    y = (X[:, 0] > 0).astype(int)
    loaded = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for params in ({"batch_size": 200}, {"solver": "lbfgs"},
                       {"solver": "sgd", "batch_size": 4}):
            model = fastbp.MLPClassifier(
                hidden_layer_sizes=(4,), max_iter=2, random_state=0, **params
            ).fit(X, y)
            model.predict(X[:1])
            loaded.append([len(_linalg.PRODUCT.kernels[_linalg.BLAS].overloads),
                           len(_linalg.loop_product.overloads)])
    print(json.dumps(loaded))
    """
)


def test_loop_products_are_compiled_only_where_training_runs_small_chunks(tmp_path):
    # Mini-batch and full-batch training, a last batch of 3 rows and a
    # one-row prediction run BLAS products only: the loops (one compilation
    # per dtype, ~0.6 s) are compiled or loaded only once a fit's chunks hold
    # at most SMALL_ROWS rows.  A fresh process, so that no other test's fit
    # has loaded them, with the user's cache (loaded and compiled kernels
    # count alike).
    loaded = _run_child(_PRODUCTS_LOADED, os.environ, tmp_path)
    assert loaded == [[1, 0], [1, 0], [1, 1]]


_DAMAGED = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", "Stochastic Optimizer")
        import fastbp
        rng = np.random.RandomState(0)
        X, y = rng.normal(size=(100, 4)), np.arange(100) % 2
        model = fastbp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3,
                                     random_state=0).fit(X, y)
    print(json.dumps({
        "coefs": model.coefs_[0].tolist(),
        "warnings": [str(w.message) for w in caught],
    }))
    """
)


@pytest.mark.skipif(
    internals.PUBLIC_ONLY, reason="numba's own cache fails on damaged entries"
)
@pytest.mark.parametrize("damage", ["index", "data", "copied"])
def test_a_damaged_cache_entry_is_compiled_again(damage, tmp_path):
    # A cut data file or a garbled index (a full disk, a killed copy, another
    # fastbp's index) made every later fit fail in numba's unpickling; a data
    # file copied over another loaded another kernel's code.
    cache = tmp_path / "cache"
    first = _run_with_cache(_DAMAGED, cache, tmp_path)
    assert not first["warnings"], first
    suffix = ".nbi" if damage == "index" else ".nbc"
    files = sorted(p for p in cache.rglob("*" + suffix))
    assert len(files) > 1
    contents = [path.read_bytes() for path in files]
    for k, path in enumerate(files):
        if damage == "index":
            path.write_bytes(contents[k][:20] + b"garbage" * 10)
        elif damage == "data":
            path.write_bytes(contents[k][: len(contents[k]) // 2])
        else:  # each data file holds the next one's kernel
            path.write_bytes(contents[(k + 1) % len(files)])
    for _ in range(2):  # the damaged entries are replaced by the first
        again = _run_with_cache(_DAMAGED, cache, tmp_path)
        np.testing.assert_array_equal(again["coefs"], first["coefs"])
        if _ == 0:
            (warning,) = again["warnings"]
            assert "unreadable" in warning and str(cache) in warning, warning
        else:
            assert not again["warnings"], again


def _tmpfs_or_skip():
    _private_mount_or_skip(
        "private tmpfs mount",
        'd=$(mktemp -d) && mount -t tmpfs -o size=16k tmpfs "$d" && '
        '! head -c 65536 /dev/zero > "$d/x" 2>/dev/null',
    )


@pytest.mark.skipif(
    internals.PUBLIC_ONLY, reason="numba's own cache fails on a full disk"
)
def test_a_full_cache_disk_still_fits(tmp_path):
    # numba's save raised "No space left on device" out of every fit whose
    # cache sat on a full disk (scikit-learn works there).  A 16 kB tmpfs in a
    # private mount namespace: each kernel stays compiled in memory, with one
    # warning naming the directory, and the model is the usual one.
    _tmpfs_or_skip()
    reference = _run_with_cache(_DAMAGED, tmp_path / "reference", tmp_path)
    cache = tmp_path / "full"
    cache.mkdir()
    script = tmp_path / "child.py"
    script.write_text(_DAMAGED)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    mount = f"mount -t tmpfs -o size=16k tmpfs {cache} && exec {sys.executable} "
    mount += str(script)
    out = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True,
                         text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    full = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(full["coefs"], reference["coefs"])
    (warning,) = full["warnings"]
    assert "could not save" in warning and str(cache) in warning, warning
    assert "No space left" in warning, warning


_INTERRUPTED = textwrap.dedent(
    """
    import json, time, warnings
    import numpy as np
    import fastbp
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(300, 5)), np.arange(300) % 3
    params = dict(hidden_layer_sizes=(7,), max_iter=5, random_state=0,
                  max_grad_norm=1.0)
    print("ready", flush=True)
    outcome, n_iter = "finished", None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            n_iter = fastbp.MLPClassifier(**params).fit(X, y).n_iter_
        except KeyboardInterrupt:
            outcome = "KeyboardInterrupt"
        except BaseException as exc:
            outcome = f"{type(exc).__name__}: {exc}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = fastbp.MLPClassifier(**params).fit(X, y)
    print(json.dumps({"outcome": outcome, "n_iter": n_iter,
                      "warnings": [str(w.message) for w in caught],
                      "coefs": again.coefs_[0].tolist()}))
    """
)


@pytest.mark.skipif(
    internals.PUBLIC_ONLY,
    reason="numba's own cache load refreshes numba's registries outside any "
    "compilation; an interrupt there leaves numba unable to type anything",
)
@pytest.mark.parametrize("delay", [0.2, 0.6, 1.0, 1.4])
def test_ctrl_c_during_a_first_compile_interrupts_cleanly(delay, tmp_path):
    # LLVM calls back into Python while it compiles; an interrupt raised in
    # that callback was dropped by ctypes and surfaced as "RuntimeError: no
    # compiled object yet" (3 of 5 tries), or was lost.  It must arrive as
    # KeyboardInterrupt, or, during training, as scikit-learn's stop ("Training
    # interrupted by user."), and the next fit must be the usual model.
    import signal

    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert child.stdout.readline().strip() == "ready"
    time.sleep(delay)  # within the first fit's compilation (several seconds)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    if result["outcome"] != "KeyboardInterrupt":
        assert result["outcome"] == "finished", result["outcome"]
        assert result["n_iter"] == 0
        assert "Training interrupted by user." in result["warnings"], result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = fastbp.MLPClassifier(
            hidden_layer_sizes=(7,), max_iter=5, random_state=0, max_grad_norm=1.0
        ).fit(*_interrupted_data())
    np.testing.assert_array_equal(result["coefs"], reference.coefs_[0])


def _interrupted_data():
    rng = np.random.RandomState(0)
    return rng.normal(size=(300, 5)), np.arange(300) % 3


_WAITS_FOR_LOCK = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("always")  # to stderr, as they happen
    warnings.filterwarnings("ignore", "Stochastic Optimizer")
    from fastbp._numba import cache
    cache.LOCK_PATIENCE = 0.2
    import fastbp
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(100, 4)), np.arange(100) % 2
    dtype = np.float32 if sys.argv[1] == "float32" else np.float64
    model = fastbp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3,
                                 random_state=0).fit(X.astype(dtype), y)
    print(json.dumps({"coefs": model.coefs_[0].astype(float).tolist()}))
    """
)


@pytest.mark.skipif(
    internals.PUBLIC_ONLY or fcntl is None, reason="fastbp's locked cache saves"
)
def test_a_cache_lock_held_long_is_reported_once(tmp_path):
    # Another process holding the cache's lock (stopped, hung, a slow shared
    # file system) made a fit wait silently.
    cache = tmp_path / "cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    first = subprocess.run([sys.executable, "-c", _WAITS_FOR_LOCK, "float64"],
                           capture_output=True, text=True, env=env)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    held = [open(path, "a+") for path in cache.rglob("*.lock")]  # noqa: SIM115
    assert held
    released = threading.Lock()

    def release():
        if released.acquire(blocking=False):
            for lock in held:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # Without the report the child would wait for ever: release at the latest
    # after two minutes, and fail on the missing warning.
    safety = threading.Timer(120, release)
    safety.start()
    try:
        for lock in held:
            fcntl.flock(lock, fcntl.LOCK_EX)
            lock.truncate(0)
            lock.write(str(os.getpid()))
            lock.flush()
        # float32: new signatures of the same kernels, saved to the same index
        child = subprocess.Popen(
            [sys.executable, "-c", _WAITS_FOR_LOCK, "float32"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        stderr = []
        for line in child.stderr:  # the child waits until the locks go
            stderr.append(line)
            if "waiting for numba's cache lock" in line:
                break
    finally:
        release()
        safety.cancel()
    out, rest = child.communicate(timeout=600)
    for lock in held:
        lock.close()
    stderr.append(rest)
    assert child.returncode == 0, "".join(stderr)[-3000:]
    warned = [line for line in "".join(stderr).splitlines() if "cache lock" in line]
    assert len(warned) == 1, warned  # once per process
    assert f"by process {os.getpid()}" in warned[0] and str(cache) in warned[0]
    assert json.loads(out.strip().splitlines()[-1])["coefs"]
