"""Other BLAS thread pools while fastbp's kernels run: who gets the cores.

Two OpenBLAS libraries are usually loaded: numpy's, which scikit-learn and the
user's own matrix products use, and scipy's, which njit's ``np.dot`` and
scipy.linalg use.  After every multithreaded call an OpenBLAS (pthreads build)
worker busy-waits for about ``2**28`` cycles (~0.1 s here) before it sleeps,
and on x86-64 the wait loop is bare ``nop``s: it never yields.  A fit started
right after a 300x300 ``A @ A`` therefore shares a core with a spinning thread
and runs its first ~0.1 s at a third of its speed (digits: 7.0 instead of 3.0
ms/epoch).  ``threadpoolctl`` cannot help: lowering a pool's thread count does
not stop workers that are already spinning, and on a pool that has been shut
down it starts new ones (which spin).

So, before a kernel runs, :func:`kernel_blas` (a context manager)

* makes the BLAS library the kernels call single-threaded by setting its
  thread count directly (``blas_cpu_number``, what ``openblas_set_num_threads``
  sets, without that function's side effect of starting the pool): the
  kernels' parallelism comes from their own fixed chunks.  Every other
  OpenBLAS pool is held to one thread the same way until the block ends, so
  that numpy's products between two kernel calls of one fit (scipy's L-BFGS
  and CG iterations, a callback) do not start workers that would spin on the
  cores the next call needs;
* stops the worker threads of every OpenBLAS pool that has them with
  ``blas_thread_shutdown_``, the function OpenBLAS itself calls before every
  ``fork``.  OpenBLAS starts the pool again by itself at its next
  multithreaded call (measured: a few hundred microseconds, once).

Stopping a pool while another thread is inside one of its calls would hang
it, so pools are stopped only when every other Python thread is provably
outside BLAS: parked in a known wait (a lock, a queue, a selector) of the
standard library, of joblib/loky, or of a Jupyter kernel.  The GIL is held
from that check through the shutdown, so no thread can start a call in
between.  Where that cannot be shown, nothing is stopped and a fit may run
slower for its first ~0.1 s, as before.

The pools are found once per process.  On Linux the loaded libraries named
like OpenBLAS are read from ``/proc/self/maps`` and each is asked for its
threading layer (a few milliseconds); a ``threadpoolctl.ThreadpoolController``
inspects every one of the ~250 libraries a scikit-learn process has loaded
(~30 ms, paid again by every loky worker) and is used only where that direct
lookup does not find the kernels' library.  Other BLAS libraries (MKL, BLIS,
an OpenMP build of OpenBLAS) are limited through threadpoolctl, as before,
and not stopped.
"""

import ctypes
import os
import sys
import threading
from contextlib import contextmanager

from . import internals


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _library_of(function):
    """Real path of the shared library that defines a ctypes function."""
    info = _DlInfo()
    try:
        found = ctypes.CDLL(None).dladdr(
            ctypes.cast(function, ctypes.c_void_p), ctypes.byref(info)
        )
    except (AttributeError, OSError):  # no dladdr (not glibc/musl/macOS)
        return None
    return os.path.realpath(os.fsdecode(info.dli_fname)) if found else None


def _kernel_blas_path():
    """The library njit's ``np.dot`` ends up in (through scipy's cython_blas)."""
    import scipy.linalg.cython_blas as cython_blas

    wrapper = ctypes.CDLL(cython_blas.__file__)
    for name in ("scipy_dgemm_", "dgemm_", "scipy_dgemm_64_", "dgemm_64_", "dgemm"):
        function = getattr(wrapper, name, None)  # dlsym searches dependencies
        if function is not None:
            return _library_of(function)
    return None


class _OpenBLAS:
    """The few exported symbols of one loaded pthreads OpenBLAS we use."""

    def __init__(self, path):
        # PyDLL: calls keep the GIL, so no Python thread starts a BLAS call
        # while a pool is being stopped.
        lib = ctypes.PyDLL(path)
        self.path = path
        self.threads = ctypes.c_int.in_dll(lib, "blas_cpu_number")
        self.running = ctypes.c_int.in_dll(lib, "blas_server_avail")
        self.shutdown = lib.blas_thread_shutdown_
        self.shutdown.restype = ctypes.c_int
        self.shutdown.argtypes = []


#: How threadpoolctl recognises an OpenBLAS by its file name and symbols.
_OPENBLAS_PREFIXES = (b"libopenblas", b"libblas", b"libscipy_openblas")
_OPENBLAS_AFFIXES = [("", ""), ("", "64_"), ("", "_64")]
_OPENBLAS_AFFIXES += [("scipy_", suffix) for _, suffix in _OPENBLAS_AFFIXES]


def _mapped_openblas_paths():
    """Real paths of the loaded libraries named like OpenBLAS, or None.

    Linux only (``/proc/self/maps``, which threadpoolctl reads too): a
    ``ThreadpoolController`` inspects every one of the ~250 libraries a
    scikit-learn process has loaded, ~30 ms of every process's first fit.
    """
    try:
        with open("/proc/self/maps", "rb") as f:
            maps = f.read()
    except OSError:
        return None
    mapped = set()  # a library is mapped in several segments: one line each
    for line in maps.splitlines():
        if b"blas" in line:  # every prefix has it; skips ~1,000 other lines
            path = line.partition(b" /")[2]
            name = path.rpartition(b"/")[2]
            if name.startswith(_OPENBLAS_PREFIXES) and b".so" in name:
                mapped.add(path)
    return sorted({os.path.realpath(os.fsdecode(b"/" + path)) for path in mapped})


def _pthreads_openblas(path):
    """``_OpenBLAS(path)`` if ``path`` is an OpenBLAS built with pthreads, else None."""
    try:
        lib = ctypes.CDLL(path)
        for prefix, suffix in _OPENBLAS_AFFIXES:
            get_parallel = getattr(lib, f"{prefix}openblas_get_parallel{suffix}", None)
            if get_parallel is not None:
                # 0: single-threaded build, 1: pthreads, 2: OpenMP.
                return _OpenBLAS(path) if get_parallel() == 1 else None
    except (OSError, AttributeError, ValueError):
        pass
    return None


class _Pools:
    """What :func:`kernel_blas` acts on, found once per process."""

    def __init__(self):
        kernel_path = _kernel_blas_path()
        if kernel_path is None:  # _FallbackPools then limits every BLAS
            raise LookupError("the kernels' BLAS library was not found")
        if not self._find_directly(kernel_path):
            self._find_with_threadpoolctl(kernel_path)

    def _find_directly(self, kernel_path):
        """Find the pools without threadpoolctl (Linux, OpenBLAS: the usual case).

        Returns False, having set nothing, unless the kernels' library is a
        pthreads OpenBLAS found this way.
        """
        paths = _mapped_openblas_paths()
        if not paths or kernel_path not in paths:
            return False
        pools = [pool for pool in map(_pthreads_openblas, paths) if pool is not None]
        kernel = [pool for pool in pools if pool.path == kernel_path]
        if not kernel:
            return False
        self.openblas, self.kernel = pools, kernel[0]
        self.limited_by_threadpoolctl = None
        return True

    def _find_with_threadpoolctl(self, kernel_path):
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        self.openblas = []  # pthreads OpenBLAS pools we can stop
        self.kernel = None  # the kernels' library, if an OpenBLAS we can set
        others = []  # the kernels' library otherwise
        for lib in controller.select(user_api="blas").lib_controllers:
            path = os.path.realpath(lib.filepath)
            pool = None
            if lib.internal_api == "openblas" and lib.threading_layer == "pthreads":
                try:
                    pool = _OpenBLAS(path)
                except (OSError, AttributeError, ValueError):
                    pool = None
            if pool is not None:
                self.openblas.append(pool)
            if path == kernel_path:
                if pool is not None:
                    self.kernel = pool
                else:
                    others.append(lib.filepath)  # as threadpoolctl names it
        # Libraries we cannot set directly are limited by threadpoolctl.
        self.limited_by_threadpoolctl = (
            controller.select(filepath=others) if others else None
        )


_pools = None
_lock = threading.Lock()
_depth = 0
_saved_threads = None
_threadpoolctl_limit = None

# Where a thread's innermost Python frame shows it blocked in a wait, not in
# a call that could reach BLAS: (path ending, function names).  A frame that
# calls an arbitrary target (``Thread.run``, a pool's worker loop) is not here.
_WAITS = {
    "threading.py": {"wait", "wait_for", "_wait_for_tstate_lock", "join", "acquire"},
    "queue.py": {"get", "put", "join"},
    "selectors.py": {"select"},
    "socket.py": {"accept", "readinto"},
    os.path.join("multiprocessing", "connection.py"): {
        "wait",
        "poll",
        "_poll",
        "recv",
        "recv_bytes",
        "_recv",
        "_recv_bytes",
        "send",
        "send_bytes",
        "_send",
        "_send_bytes",
        "accept",
    },
    os.path.join("concurrent", "futures", "thread.py"): {"_worker"},
    os.path.join("zmq", "sugar", "poll.py"): {"poll"},
    os.path.join("ipykernel", "heartbeat.py"): {"run"},
    os.path.join("ipykernel", "parentpoller.py"): {"run"},
}


def _waiting(frame):
    code = frame.f_code
    return any(
        code.co_filename.endswith(os.sep + path) and code.co_name in names
        for path, names in _WAITS.items()
    )


def _others_outside_blas():
    """Whether every other Python thread is parked in a known wait."""
    me = threading.get_ident()
    return all(
        _waiting(frame) for ident, frame in sys._current_frames().items() if ident != me
    )


def stop_spinning_pools():
    """Stop the workers of every OpenBLAS pool that has them, if that is safe.

    Returns the number of pools stopped.
    """
    pools = _get_pools()
    running = [pool for pool in pools.openblas if pool.running.value]
    if not running or not _others_outside_blas():
        return 0
    for pool in running:
        pool.shutdown()
    return len(running)


class _FallbackPools:
    """Where the libraries cannot be inspected: limit every BLAS, stop none."""

    def __init__(self):
        from threadpoolctl import ThreadpoolController

        self.openblas = []
        self.kernel = None
        self.limited_by_threadpoolctl = ThreadpoolController().select(user_api="blas")


def _get_pools():
    """The pools, found once (the ``"openblas"`` entry of ``internals.INTERNALS``).

    OpenBLAS's symbols are used only where the libraries are found and look
    as expected; any other BLAS, loader or build (and
    ``FASTBP_NUMBA_PUBLIC_ONLY``) gets threadpoolctl's limits instead.
    """
    global _pools
    if _pools is None:
        if internals.forced("openblas"):
            _pools = _FallbackPools()
        else:
            try:
                _pools = _Pools()
            except Exception:  # an unusual loader or BLAS build
                _pools = _FallbackPools()
    return _pools


@contextmanager
def kernel_blas():
    """Run a block with single-threaded BLAS and no spinning pools.

    Nested and concurrent uses (fits in several Python threads) share one
    limit, set by the first to enter and restored by the last to leave.
    """
    global _depth, _saved_threads, _threadpoolctl_limit
    pools = _get_pools()
    with _lock:
        if _depth == 0:
            _saved_threads = [(pool, pool.threads.value) for pool in _held(pools)]
            for pool, _ in _saved_threads:
                pool.threads.value = 1
            if pools.limited_by_threadpoolctl is not None:
                _threadpoolctl_limit = pools.limited_by_threadpoolctl.limit(limits=1)
        _depth += 1
        stop_spinning_pools()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for pool, threads in _saved_threads:
                    pool.threads.value = threads
                _saved_threads = None
                if _threadpoolctl_limit is not None:
                    _threadpoolctl_limit.restore_original_limits()
                    _threadpoolctl_limit = None


def _held(pools):
    """The OpenBLAS pools held to one thread inside :func:`kernel_blas`.

    The kernels' own library, and every other pthreads OpenBLAS: numpy's
    products inside a fit (scipy's L-BFGS and CG iterations, a user's
    callback) would otherwise start its workers, which then spin on the cores
    the next kernel call needs.
    """
    held = list(pools.openblas)
    if pools.kernel is not None and pools.kernel not in held:
        held.append(pools.kernel)
    return held
