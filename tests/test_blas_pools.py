"""Other BLAS thread pools while fastbp's kernels run (``fastbp._numba.blas_pools``).

After a multithreaded call, an OpenBLAS worker busy-waits ~0.1 s on a core the
kernels need.  A fit stops those workers, but only when no other Python
thread can be inside a BLAS call (stopping a pool in use would hang it), and
the kernels' own BLAS runs single-threaded during the fit and gets its thread
count back afterwards.  Process-wide state, so each scenario runs in a fresh
child process, where no thread of pytest's (or of earlier dask tests) lingers.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastbp
from fastbp._numba import blas_pools as _blas_pools
from fastbp._numba import internals

#: The pools are stopped through OpenBLAS's own symbols only (threadpoolctl
#: limits them otherwise).
stops_pools = pytest.mark.skipif(
    internals.forced("openblas"), reason="threadpoolctl's limits stop no pool"
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

_PRELUDE = textwrap.dedent(
    """
    import json, sys, threading, time, warnings
    import numpy as np
    import fastbp
    from fastbp._numba import blas_pools as _blas_pools
    from sklearn.datasets import load_digits

    warnings.simplefilter("ignore")
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16
    y = y[:300]
    A = np.random.default_rng(0).random((300, 300))

    def fit(**kw):
        return fastbp.MLPClassifier((16,), max_iter=3, random_state=0, **kw).fit(X, y)

    def running():
        # Whether each pthreads OpenBLAS pool has its workers (numpy's, scipy's).
        pools = _blas_pools._get_pools().openblas
        return {pool.path: bool(pool.running.value) for pool in pools}
    """
)


def _child(body, timeout=120):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2")
    done = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pthreads_openblas():
    return [
        info
        for info in threadpool_info()
        if info["internal_api"] == "openblas" and info["threading_layer"] == "pthreads"
    ]


needs_openblas = pytest.mark.skipif(
    not _pthreads_openblas(), reason="needs a pthreads build of OpenBLAS"
)


@needs_openblas
@stops_pools
def test_a_fit_stops_the_workers_numpy_left_spinning():
    out = _child(
        """
        fit()                      # compile, find the pools
        before = A @ A             # numpy's pool starts its workers
        started = running()
        fit()
        stopped = running()
        after = A @ A              # OpenBLAS starts them again by itself
        print(json.dumps({
            "started": started, "stopped": stopped, "restarted": running(),
            "same": bool(np.array_equal(before, after)),
            "exact": bool(np.allclose(after, np.einsum("ij,jk->ik", A, A))),
        }))
        """
    )
    assert any(out["started"].values())
    assert not any(out["stopped"].values())
    assert any(out["restarted"].values())
    assert out["same"] and out["exact"]


@needs_openblas
@stops_pools
def test_pools_keep_their_workers_while_another_thread_may_be_in_blas():
    out = _child(
        """
        fit()
        stop = threading.Event()

        def busy():                 # computing: could be inside a BLAS call
            while not stop.is_set():
                A[:2, :2] @ A[:2, :2]

        def parked():               # blocked in a wait: cannot be
            stop.wait()

        result = {}
        for name, target in (("busy", busy), ("parked", parked)):
            stop.clear()
            thread = threading.Thread(target=target)
            thread.start()
            time.sleep(0.05)
            A @ A
            result[name] = _blas_pools.stop_spinning_pools()
            stop.set()
            thread.join()
        print(json.dumps(result))
        """
    )
    assert out["busy"] == 0
    assert out["parked"] >= 1


@needs_openblas
def test_fits_beside_a_thread_doing_matrix_products_finish_and_agree():
    # A pool stopped under a running call would hang this child (timeout).
    out = _child(
        """
        import scipy.linalg
        alone = fit(n_jobs=2).coefs_
        stop = threading.Event()
        errors = []

        def products():
            while not stop.is_set():
                C = A @ A + 300 * np.eye(300)
                lu = scipy.linalg.lu_factor(C)
                if not np.allclose(scipy.linalg.lu_solve(lu, C @ A[:, 0]), A[:, 0]):
                    errors.append("wrong")

        worker = threading.Thread(target=products)
        worker.start()
        same = []
        for _ in range(5):
            coefs = fit(n_jobs=2).coefs_
            same.append(all(np.array_equal(a, b) for a, b in zip(alone, coefs)))
        stop.set()
        worker.join()
        print(json.dumps({"same": same, "errors": errors}))
        """
    )
    assert out["same"] == [True] * 5
    assert out["errors"] == []


def test_kernel_blas_is_single_threaded_inside_and_restored_after():
    pools = _blas_pools._get_pools()
    if pools.kernel is None:
        pytest.skip("the kernels' BLAS is not a pthreads OpenBLAS")
    held = {pools.kernel.path} | {pool.path for pool in pools.openblas}

    def threads():
        return {
            path: info["num_threads"]
            for info in threadpool_info()
            if (path := os.path.realpath(info["filepath"])) in held
        }

    before = threads()
    assert set(before) == held
    with _blas_pools.kernel_blas():
        with _blas_pools.kernel_blas():  # nested (or a second fitting thread)
            assert set(threads().values()) == {1}
        assert set(threads().values()) == {1}
    assert threads() == before


@needs_openblas
@pytest.mark.parametrize("solver", ["lbfgs", "cg", "adam"])
def test_a_fit_leaves_no_pool_spinning(solver):
    # scipy's L-BFGS and CG iterate in numpy between kernel calls, and adam's
    # last-step check sums squares: with more than 10,000 parameters numpy's
    # products would start its BLAS workers, left spinning on the user's cores
    # (and on the next kernel call's) after the fit.
    out = _child(
        f"""
        fit()
        clf = fastbp.MLPClassifier((200,), solver="{solver}", max_iter=4,
                                   random_state=0).fit(X, y)
        assert sum(c.size for c in clf.coefs_ + clf.intercepts_) > 10000
        print(json.dumps({{"running": running()}}))
        """
    )
    assert not any(out["running"].values())


def _blas_threads():
    return {
        info["filepath"]: info["num_threads"]
        for info in threadpool_info()
        if info["user_api"] == "blas"
    }


def test_fit_and_predict_leave_blas_thread_counts_as_they_were():
    before = _blas_threads()
    rng = np.random.default_rng(0)
    X = rng.random((120, 5))
    y = (X[:, 0] > 0.5).astype(int)
    clf = fastbp.MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    clf.predict(X)
    assert _blas_threads() == before


@pytest.mark.parametrize("user_spincount", [None, "5"])
def test_kernel_openmp_settings_reach_numba_only(user_spincount):
    # libgomp reads OMP_WAIT_POLICY/GOMP_SPINCOUNT when it loads and prints
    # what it read with OMP_DISPLAY_ENV.  fastbp's settings reach the runtime
    # numba loads for the kernels, and nothing else: the environment is as it
    # was after the fit (child processes, runtimes loaded later), and a
    # user's own setting wins.
    env = dict(os.environ, OMP_DISPLAY_ENV="VERBOSE")
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(name, None)
    if user_spincount:
        env["GOMP_SPINCOUNT"] = user_spincount
    script = _PRELUDE + textwrap.dedent(
        """
        import os
        print("--- fit", file=sys.stderr, flush=True)
        fit()
        print("--- after", file=sys.stderr, flush=True)
        print(json.dumps({k: os.environ.get(k)
                          for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    during_fit = done.stderr.split("--- fit")[1].split("--- after")[0]
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in during_fit
    assert f"GOMP_SPINCOUNT = '{user_spincount or 10000}'" in during_fit
    after = json.loads(done.stdout.strip().splitlines()[-1])
    assert after == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": user_spincount}


def _summary(pools):
    return (
        sorted(pool.path for pool in pools.openblas),
        pools.kernel and pools.kernel.path,
        pools.limited_by_threadpoolctl is None,
    )


def test_pools_found_directly_are_those_threadpoolctl_finds(monkeypatch):
    # The direct lookup (/proc/self/maps, no threadpoolctl) must pick the same
    # pools as threadpoolctl's inspection of every loaded library.
    kernel_path = _blas_pools._kernel_blas_path()
    directly = _blas_pools._Pools()
    oracle = object.__new__(_blas_pools._Pools)
    oracle._find_with_threadpoolctl(kernel_path)
    assert _summary(directly) == _summary(oracle)
    if _blas_pools._mapped_openblas_paths() is not None and oracle.kernel is not None:
        assert directly._find_directly(kernel_path)  # not by falling back
    # Where the direct lookup finds nothing, threadpoolctl's result is used.
    monkeypatch.setattr(_blas_pools, "_mapped_openblas_paths", lambda: None)
    assert _summary(_blas_pools._Pools()) == _summary(oracle)


def test_libraries_that_cannot_be_inspected_fall_back_to_threadpoolctl(monkeypatch):
    def broken():
        raise OSError("no dladdr here")

    monkeypatch.setattr(_blas_pools, "_pools", None)
    monkeypatch.setattr(_blas_pools, "_Pools", broken)
    before = _blas_threads()
    with _blas_pools.kernel_blas():
        inside = _blas_threads()
    assert isinstance(_blas_pools._get_pools(), _blas_pools._FallbackPools)
    assert set(inside.values()) == {1}  # every BLAS held to one thread
    assert _blas_threads() == before
    assert _blas_pools.stop_spinning_pools() == 0  # and no pool is stopped
