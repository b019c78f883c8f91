"""Kernel threads: numba's pool started with fastbp's wait policy, n_jobs, BLAS."""

import os
import threading
from contextlib import contextmanager

import numba

from .blas_pools import kernel_blas


def max_threads():
    """Return the largest number of threads the kernels may use."""
    return numba.config.NUMBA_NUM_THREADS


def resolve_n_jobs(n_jobs):
    """Translate a scikit-learn style ``n_jobs`` into a kernel thread count.

    ``None`` means all threads numba was started with (as numba's default),
    negative values count back from that number as in joblib.
    """
    n_max = max_threads()
    if n_jobs is None:
        return n_max
    if n_jobs < 0:
        return max(1, n_max + 1 + n_jobs)
    return max(1, min(int(n_jobs), n_max))


#: How numba's OpenMP workers (GNU libgomp) wait between parallel regions.  By
#: default they spin for a long time, which on a shared, loaded machine makes
#: parallel regions 10-100x slower; fully passive workers instead sleep at once
#: and cost ~50-100 us to wake for every mini-batch.  A short spin (~10-30 us)
#: keeps them warm between the batches of an epoch without hogging the cores.
_KERNEL_OMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}
_kernel_threads_launched = False


def _launch_kernel_threads():
    """Start numba's thread pool with :data:`_KERNEL_OMP_ENV`, once.

    libgomp reads these variables when it loads, so they are set only while
    numba loads its threading layer and restored at once: an OpenMP runtime
    loaded later (scikit-learn's, another library's, a child process) keeps
    its own defaults.  A user's own settings win, and a pool the user's own
    numba code already started is left as it is.
    """
    global _kernel_threads_launched
    if _kernel_threads_launched:
        return
    saved = {name: os.environ.get(name) for name in _KERNEL_OMP_ENV}
    try:
        for name, value in _KERNEL_OMP_ENV.items():
            os.environ.setdefault(name, value)
        numba.get_num_threads()  # launches numba's pool (public API)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
        _kernel_threads_launched = True


@contextmanager
def kernel_threads(n_jobs):
    """Run a block with ``n_jobs`` kernel threads and a single BLAS thread.

    Parallelism comes from fastbp's fixed chunks; BLAS calls inside the kernels
    stay single-threaded so the two do not oversubscribe the cores, and other
    BLAS pools stop spinning on the cores the kernels need (see
    :mod:`.blas_pools`).  The numba thread count is thread-local and is restored
    on exit.
    """
    _launch_kernel_threads()
    with _one_at_a_time_on_workqueue():
        previous = numba.get_num_threads()
        numba.set_num_threads(resolve_n_jobs(n_jobs))
        try:
            with kernel_blas():
                yield
        finally:
            numba.set_num_threads(previous)


#: Held by fastbp's kernel calls when numba runs on its ``workqueue`` layer.
_WORKQUEUE_LOCK = threading.RLock()


@contextmanager
def _one_at_a_time_on_workqueue():
    """Serialise fastbp's parallel calls where numba's threading layer needs it.

    numba's ``workqueue`` layer aborts the process when two threads enter
    parallel regions at once (``tbb`` and ``omp`` do not).  numba picks the
    layer itself (tbb, then omp, then workqueue, or the user's
    ``NUMBA_THREADING_LAYER``); fastbp does not change that choice for the
    process, and on ``workqueue`` its own calls take turns instead.
    """
    if numba.threading_layer() != "workqueue":
        yield
        return
    with _WORKQUEUE_LOCK:
        yield
