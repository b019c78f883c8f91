"""fastbp on a real dask.distributed cluster (2 worker processes, loopback only).

Checks the three claims of docs/scaling-out.md: the compile cache is shared
(workers load kernels another process compiled), each worker's kernels use the
worker's CPU share (``NUMBA_NUM_THREADS=1``), and models travel between worker
processes by pickle: GridSearchCV through joblib's dask backend and incremental
``partial_fit`` over the blocks of a dask array give the results of a local run.
"""

import os
import shutil
import sys
from contextlib import contextmanager

import numpy as np
import pytest

distributed = pytest.importorskip(
    "distributed",
    reason="the dask extra is not installed (pip install 'fastbp[dask]')",
)
da = pytest.importorskip(
    "dask.array", reason="the dask extra is not installed (pip install 'fastbp[dask]')"
)

import dask  # noqa: E402
import joblib  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import fastbp  # noqa: E402

pytestmark = [
    pytest.mark.dask,
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


#: This process's own setting, which the cluster must not change.
_CLIENT_NUMBA_NUM_THREADS = os.environ.get("NUMBA_NUM_THREADS")


@contextmanager
def _restored_environ(names):
    """Undo the nanny's writes to this process's environment.

    A nanny applies ``distributed.nanny.pre-spawn-environ`` to its *own*
    ``os.environ`` before spawning a worker, and a LocalCluster's nannies live
    in this (the client's) process.  Left there, ``NUMBA_NUM_THREADS=1`` would
    make numba's next compilation here raise ("Cannot set NUMBA_NUM_THREADS to
    a different value once the threads have been launched") and
    ``NUMBA_CACHE_DIR`` would redirect later test modules' caches.  A value
    exported here would also win over the dask config, so it is hidden while
    the workers spawn.
    """
    saved = {name: os.environ.pop(name, None) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def numba_cache_dir(tmp_path_factory):
    """A NUMBA_CACHE_DIR holding the kernels this process compiled or loaded.

    This stands in for a cache directory on a shared filesystem that a first
    process filled: the workers of the cluster point ``NUMBA_CACHE_DIR`` at it
    and must load from it instead of compiling.  It is filled by copying this
    process's cache entries (numba's cache is plain files, keyed on source,
    types and CPU, not on location) because compiling into an empty directory
    costs a minute or more on a loaded 2-core machine.
    """
    from numba.core.caching import UserProvidedCacheLocator

    cache_dir = tmp_path_factory.mktemp("numba-cache")
    stats = _fit_and_cache_stats()  # warms this process's own cache
    for source in stats["paths"]:  # fastbp/ and fastbp/_numba/
        if os.path.basename(source) == "__pycache__":  # numba's in-tree cache
            kernel_file = os.path.join(os.path.dirname(source), "kernels.py")
            subpath = UserProvidedCacheLocator.get_suitable_cache_subpath(kernel_file)
        else:  # this process's own NUMBA_CACHE_DIR
            subpath = os.path.basename(source)
        target = cache_dir / subpath
        target.mkdir()
        for name in os.listdir(source):
            if name.endswith((".nbi", ".nbc")):
                shutil.copy2(os.path.join(source, name), target / name)
    return str(cache_dir)


@pytest.fixture(scope="module")
def client(numba_cache_dir):
    env = {"NUMBA_NUM_THREADS": "1", "NUMBA_CACHE_DIR": numba_cache_dir}
    config = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in env.items()}
    with dask.config.set(config), _restored_environ(env):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _workers(client):
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


# -- functions that run on the workers (pickled by value: pytest's module name
# is not importable there) ----------------------------------------------------


def _fit_and_cache_stats():
    """Fit and predict once, then report numba's cache statistics."""
    import warnings

    import numba
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_digits(return_X_y=True)
    est = fastbp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:200] / 16.0, y[:200]).predict(X[:50] / 16.0)
    hits = misses = 0
    paths = set()
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("fastbp."):
            continue
        for obj in vars(module).values():
            if isinstance(obj, numba.core.dispatcher.Dispatcher) and obj.signatures:
                stats = obj.stats
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
                paths.add(stats.cache_path)
    return {"hits": hits, "misses": misses, "paths": sorted(paths)}


def _numba_threads():
    import numba

    return (
        numba.get_num_threads(),
        numba.config.NUMBA_NUM_THREADS,
        os.environ.get("NUMBA_NUM_THREADS"),
    )


def _partial_fit(model, X, y, classes):
    return model.partial_fit(X, y, classes=classes)


for _f in (_fit_and_cache_stats, _numba_threads, _partial_fit):
    _f.__module__ = "__main__"  # cloudpickle pickles __main__ functions by value
del _f


# -- tests -------------------------------------------------------------------


def test_workers_load_kernels_from_the_shared_compile_cache(client, numba_cache_dir):
    for address in _workers(client):
        stats = client.submit(
            _fit_and_cache_stats, workers=[address], pure=False
        ).result()
        assert stats["misses"] == 0, (address, stats)  # nothing compiled ...
        assert stats["hits"] > 0, (address, stats)  # ... all loaded from disk
        assert stats["paths"], (address, stats)
        for path in stats["paths"]:  # fastbp/ and fastbp/_numba/
            assert path.startswith(numba_cache_dir), (address, stats)


def test_each_worker_runs_one_numba_thread(client):
    threads = client.run(_numba_threads)
    assert sorted(threads) == _workers(client)
    for address, (n_threads, n_max, env) in threads.items():
        assert (n_threads, n_max, env) == (1, 1, "1"), address
    # ... while this (the client's) process keeps its own setting.
    assert os.environ.get("NUMBA_NUM_THREADS") == _CLIENT_NUMBA_NUM_THREADS


def test_grid_search_dask_backend_matches_loky(client, digits):
    X, y = digits
    X, y = X[:450], y[:450]
    grid = {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-1]}
    est = fastbp.MLPClassifier(max_iter=20, learning_rate_init=0.01, random_state=0)

    def search(backend):
        with joblib.parallel_config(backend=backend):
            return GridSearchCV(est, grid, cv=3, n_jobs=2).fit(X, y).cv_results_

    on_dask, on_loky = search("dask"), search("loky")
    keys = ["mean_test_score"] + [f"split{i}_test_score" for i in range(3)]
    for key in keys:
        # fastbp is bit-identical for any thread count, so exact equality.
        np.testing.assert_array_equal(on_dask[key], on_loky[key], err_msg=key)
    assert on_dask["mean_test_score"].max() > 0.75


def test_incremental_partial_fit_over_dask_blocks(client, digits):
    X, y = digits
    X_train, y_train, X_test, y_test = X[:1500], y[:1500], X[1500:], y[1500:]
    X_blocks = da.from_array(X_train, chunks=(300, X.shape[1]))
    y_blocks = da.from_array(y_train, chunks=300)
    assert X_blocks.numblocks[0] >= 5
    classes = np.unique(y)
    n_passes = 4
    model = fastbp.MLPClassifier(
        hidden_layer_sizes=(64,), learning_rate_init=0.01, random_state=0
    )

    # Blocks become futures on the cluster; each partial_fit runs on the next
    # worker in turn, so the model travels between processes by pickle.
    X_parts = client.compute(list(X_blocks.to_delayed().ravel()))
    y_parts = client.compute(list(y_blocks.to_delayed().ravel()))
    workers = _workers(client)
    remote = model
    ran_on = []
    for step in range(n_passes * len(X_parts)):
        i = step % len(X_parts)
        where = workers[step % len(workers)]
        remote = client.submit(
            _partial_fit,
            remote,
            X_parts[i],
            y_parts[i],
            classes,
            workers=[where],
            allow_other_workers=False,
            pure=False,
        )
        ran_on.append(where)
    remote = remote.result()
    assert set(ran_on) == set(workers)

    # The same schedule in this process (2 kernel threads, not 1).
    local = clone(model)
    bounds = np.cumsum((0,) + X_blocks.chunks[0])
    for step in range(n_passes * len(X_parts)):
        i = step % len(X_parts)
        rows = slice(bounds[i], bounds[i + 1])
        local.partial_fit(X_train[rows], y_train[rows], classes=classes)

    for a, b in zip(
        remote.coefs_ + remote.intercepts_,
        local.coefs_ + local.intercepts_,
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert remote.t_ == local.t_ == n_passes * len(X_train)
    accuracy = remote.score(X_test, y_test)
    assert accuracy == local.score(X_test, y_test)
    assert accuracy > 0.85
