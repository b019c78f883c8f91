"""The one place where fastbp's JIT policy is decided.

Every compiled kernel in fastbp is made by :func:`jit`, so that caching, the
error model and the floating-point flags are the same everywhere:

* cached (numba's ``cache=True`` cache, attached at a kernel's first
  compilation): compiled machine code is written to ``__pycache__`` (or, when
  the package directory is read-only, to numba's user-wide fallback or
  ``NUMBA_CACHE_DIR``) so that a second process loads instead of recompiling.
* ``error_model="numpy"``: division does not check for zero, which lets
  division loops vectorise (Adam's update is ~4x faster).
* ``fastmath=FASTMATH``: every LLVM fast-math flag *except* ``nnan`` and
  ``ninf``.  Those two would let LLVM delete ``isfinite`` checks, and fastbp
  relies on them to detect divergence inside the epoch kernel.
* ``nogil=True``: two Python threads may train two models at once.
* no reference counting (numba's NRT) unless a kernel allocates (none
  does): kernels work in memory passed in from Python, and NRT makes every
  array slice an atomic increment and decrement.

Where numba finds no writable cache location at all, kernels are compiled in
memory instead (with one ``RuntimeWarning``), so fastbp still imports.

Two weaknesses of numba's on-disk cache are closed here, and one cost is
avoided (:func:`_harden_cache`):

* numba keys each cache file on the source file of the function alone, but a
  kernel's machine code includes the kernels it calls from other files; fastbp
  keys every kernel on a hash of all its kernel modules instead, so an edit
  anywhere invalidates everything that may have inlined it;
* two processes compiling different signatures at once (GridSearchCV workers,
  dask workers, parallel test runs on a cold cache) can both pick the same data
  file number and leave an index entry pointing at the other's machine code,
  which crashes the next process that loads it.  fastbp saves cache entries
  under an inter-process file lock, re-reading the index inside it;
* before loading a cached kernel numba installs every typing and lowering
  registry it has (importing a few dozen of its modules), which only a
  compilation needs: in a process that loads all its kernels from the cache
  that was ~0.25 s of the first fit and ~27k objects the interpreter's
  garbage collector then walks until exit.  fastbp's kernels load with only
  numba's runtime initialised; a kernel that must be compiled still gets the
  full refresh (numba's compiler does it first).
"""

import copy
import functools
import gc
import hashlib
import importlib
import itertools
import os
import threading
import time
import warnings
from contextlib import contextmanager

import llvmlite.binding as _llvm
import numba
import numba.core.event as _numba_event
import numba.extending as _numba_extending
import numpy as np
from numba.core import cgutils as _numba_cgutils
from numba.core import config as _numba_config
from numba.core import errors as _numba_errors
from numba.core import types as _numba_types
from numba.core.caching import IndexDataCacheFile
from numba.core.compiler_lock import global_compiler_lock
from numba.core.funcdesc import default_mangler as _numba_mangler
from numba.core.runtime import rtsys as _nrt_runtime
from numba.np.numpy_support import as_dtype as _numba_as_dtype

from ._blas_pools import kernel_blas


@contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector for the block (nests).

    A compilation allocates ~500k objects per kernel set (numba's IR, types
    and LLVM wrappers): the collector ran ~700 times during a first fit and
    took ~0.8 s of its ~8 s, mostly re-walking objects still in use.  Paused,
    the compilation's cyclic garbage waits for the next collection after it.
    The collector's state is restored on exit: a collector the user disabled
    stays disabled.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


try:  # POSIX advisory locks; elsewhere saves are unlocked (numba's default)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _kernel_modules():
    """The package's modules that define kernels (derived, never hand-kept).

    A module defines kernels when its source applies this module's
    decorator; its compiled code may end up inside any other kernel.
    """
    names = []
    for name in sorted(os.listdir(_PACKAGE_DIR)):
        if name.endswith(".py"):
            with open(os.path.join(_PACKAGE_DIR, name), encoding="utf-8") as f:
                if "@jit(" in f.read() or name == "_jit.py":
                    names.append(name)
    return tuple(names)


#: Modules whose compiled code can end up inside another kernel.
_KERNEL_MODULES = _kernel_modules()


def _kernel_source_stamp():
    digest = hashlib.sha256()
    for name in _KERNEL_MODULES:
        with open(os.path.join(_PACKAGE_DIR, name), "rb") as f:
            digest.update(f.read())
    return ("fastbp", digest.hexdigest())


_SOURCE_STAMP = _kernel_source_stamp()


class _LockedIndexDataCacheFile(IndexDataCacheFile):
    """numba's cache index, saved under an exclusive inter-process lock."""

    def save(self, key, data):
        if fcntl is None:  # pragma: no cover
            return super().save(key, data)
        lock_path = os.path.join(self._cache_path, self._index_name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # The parent re-reads the index, so the data-file number it
                # picks is not taken by a concurrent writer.
                return super().save(key, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _load_overload(self, sig, target_context):
    """Numba's ``Cache.load_overload`` minus the registry refresh.

    Loading machine code needs numba's runtime (NRT) symbols only; the typing
    and lowering registries matter to a compilation, and numba's compiler
    refreshes them itself before it compiles anything.
    """
    if getattr(self, "_fastbp_nrt", True):
        # numba compiles its runtime's module (~40 ms) the first time; code
        # compiled without reference counting never calls it.
        _nrt_runtime.initialize(target_context)
    with self._guard_against_spurious_io_errors():
        return self._load_overload(sig, target_context)
    # None when the guard swallowed an I/O error: numba then compiles


@functools.cache
def _light_cache_class(cls):
    return type(cls.__name__, (cls,), {"load_overload": _load_overload})


def _harden_cache(dispatcher):
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if isinstance(cache_file, IndexDataCacheFile):
        cache_file.__class__ = _LockedIndexDataCacheFile
        cache_file._source_stamp = _SOURCE_STAMP
        if hasattr(cache, "_load_overload"):
            cache.__class__ = _light_cache_class(type(cache))
            cache._fastbp_nrt = dispatcher.targetoptions.get("_nrt", True)
    return dispatcher


def _attach_cache(dispatcher):
    """Give ``dispatcher`` its on-disk cache, hardened (at its first compile).

    numba's ``cache=True`` sets a kernel's cache up when the kernel is
    defined: ~0.12 ms and a dozen objects per kernel, a temporary file
    created in the cache directory to check that it is writable included,
    for all of fastbp's 54 kernels at import where a fit uses 15.
    """
    try:
        dispatcher.enable_caching()
    except RuntimeError as exc:
        # numba found no writable cache directory at all (package
        # directory, user cache and NUMBA_CACHE_DIR): compile in memory.
        if "no locator available" not in str(exc):
            raise
        _warn_no_cache(exc)
        return
    _harden_cache(dispatcher)


#: numba's parallel options for kernels with ``prange`` loops: explicit
#: ``prange`` loops only, none of the automatic parallelisation of array
#: expressions (which fastbp's kernels do not use, and whose analysis passes
#: cost compile time).
_PRANGE_ONLY = dict(
    prange=True,
    comprehension=False,
    reduction=False,
    inplace_binop=False,
    setitem=False,
    numpy=False,
    stencil=False,
    fusion=False,
)


#: LLVM fast-math flags used by every kernel: all but ``nnan`` and ``ninf``.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


#: LLVM optimisation level of leaves: small kernels with the hot elementwise
#: loops, which LLVM vectorises at -O3.
LEAF = 3
#: LLVM optimisation level of orchestrators: kernels that mostly call leaves.
#: numba links every callee's code into its caller and optimises the whole
#: module again, so re-optimising at -O3 the leaves already optimised at -O3
#: is where most compile time went; -O1 keeps the leaves' code as it is.
ORCHESTRATOR = 1


def _with_compile_policy(dispatcher, level):
    """Route ``dispatcher``'s compilations (and cache loads) through fastbp's policy.

    * Its first compilation or cache load attaches its on-disk cache
      (:func:`_attach_cache`).
    * New signatures compile at LLVM level ``level``.  numba reads its
      optimisation level (``NUMBA_OPT``) from a global when it builds the
      pass managers for a compilation; the level is switched only for the
      duration of this kernel's own compilation, under numba's global
      compiler lock (which every compilation holds), so code compiled
      outside fastbp's kernels, the user's own included, keeps its level.
    * Python's garbage collector is paused for the compilation
      (:func:`_collector_paused`).
    """
    compile_signature = getattr(dispatcher, "compile", None)
    if compile_signature is None:  # NUMBA_DISABLE_JIT=1: a plain function
        return dispatcher
    cache_attached = False

    def compile(sig):
        nonlocal cache_attached
        with global_compiler_lock, _collector_paused():
            if not cache_attached:
                cache_attached = True  # once, even where no location is writable
                _attach_cache(dispatcher)
            saved = _numba_config.OPT
            _numba_config.OPT = _numba_config._OptLevel(level)
            try:
                return compile_signature(sig)
            finally:
                _numba_config.OPT = saved

    dispatcher.compile = compile
    return dispatcher


def jit(*, parallel=False, opt=LEAF, from_python=True, allocates=False, inline=False):
    """Return numba's ``njit`` decorator configured with fastbp's policy.

    Parameters
    ----------
    parallel : bool, default=False
        Compile ``prange`` loops as parallel regions.  Only the launcher of
        :func:`fastbp._parallel.parallel_for` uses it.
    opt : {LEAF, ORCHESTRATOR}, default=LEAF
        LLVM optimisation level of the kernel's compilation (see
        :data:`LEAF`, :data:`ORCHESTRATOR`).
    from_python : bool, default=True
        Whether Python may call the kernel.  A kernel only ever called from
        other kernels passes ``False``: numba then compiles no Python (and no
        C) entry wrapper for it, which for a kernel taking bundles of arrays
        is a large share of its compile time.
    allocates : bool, default=False
        Whether the kernel allocates arrays.  Kernels work in memory that
        Python allocated and passed in, so by default they are compiled
        without numba's reference counting (NRT): every array slice would
        otherwise cost an atomic increment and decrement, and a process whose
        kernels all load from the cache never compiles numba's runtime module
        (~40 ms of its first fit).  Only kernels that allocate keep it
        (``parallel`` regions do not need it: numba's scheduler allocates
        their schedules itself).
    inline : bool, default=False
        For small scalar helpers (an optimizer's update of one entry, a
        probability clip): numba copies the helper's code into each kernel
        that calls it before typing that kernel, so the helper is never
        compiled as a function of its own.  Every separate compilation costs
        ~0.05-0.25 s however small the function; inlined, the helpers of a
        first fit cost nothing.  Not for functions with loops: their code
        would be typed and optimised once per caller.

    Returns
    -------
    decorator : callable
        ``numba.njit`` with ``nogil=True``, ``error_model="numpy"`` and
        :data:`FASTMATH`, cached as with ``cache=True``.

    """
    options = dict(
        nogil=True,
        error_model="numpy",
        fastmath=set(FASTMATH),
        parallel=_PRANGE_ONLY.copy() if parallel else False,
        # The C entry wrapper serves ``numba.cfunc`` and first-class function
        # values, which fastbp never makes of its kernels (it calls them by
        # address with numba's own calling convention, see :func:`call_at`).
        no_cfunc_wrapper=True,
    )
    if not from_python or inline:
        options.update(no_cpython_wrapper=True)
    if inline:
        options.update(inline="always")
    if not allocates:
        # No reference counting (numba's NRT): a kernel that allocates nothing
        # needs none, and an atomic incref/decref for every array slice made
        # was ~10% of an online (batch_size=1) epoch.
        options.update(_nrt=False)

    def decorate(func):
        # Cached (cache=True's cache) from its first compilation on.
        return _with_compile_policy(numba.njit(**options)(func), opt)

    return decorate


_warned_no_cache = False


def _warn_no_cache(exc):
    global _warned_no_cache
    if not _warned_no_cache:
        _warned_no_cache = True
        warnings.warn(
            f"fastbp: no writable location for numba's compile cache ({exc}); "
            "kernels will be compiled in every process. Set NUMBA_CACHE_DIR to "
            "a writable directory to keep them between processes.",
            RuntimeWarning,
            stacklevel=3,
        )


@jit(inline=True)
def smaller(a, b):
    """``min(a, b)`` for kernels, as Python picks it (``a`` unless ``b < a``).

    numba compiles its own ``min`` as a function of its own, one more
    compilation of a first fit; this one is copied into its callers.
    """
    return b if b < a else a


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
    from numba.np.ufunc import parallel

    saved = {name: os.environ.get(name) for name in _KERNEL_OMP_ENV}
    try:
        for name, value in _KERNEL_OMP_ENV.items():
            os.environ.setdefault(name, value)
        parallel._launch_threads()
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
    ``_blas_pools``).  The numba thread count is thread-local and is restored
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


class _CompileCounter(_numba_event.Listener):
    """Counts and times numba compilations (outermost ones for the time).

    With ``announce``, says so when the first compilation starts.
    """

    def __init__(self, announce=False):
        self.announce = announce
        self.depth = 0
        self.count = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_start(self, event):
        if self.depth == 0:
            if self.count == 0 and self.announce:
                print(
                    "fastbp: compiling kernels for this configuration (first use "
                    "with this numba cache; later processes load them)...",
                    flush=True,
                )
            self._start = time.perf_counter()
        self.depth += 1
        self.count += 1

    def on_end(self, event):
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.perf_counter() - self._start


@contextmanager
def counting_compiles(announce=False):
    """Count (``.count``) and time (``.seconds``) the compilations of a block."""
    counter = _CompileCounter(announce)
    _numba_event.register("numba:compile", counter)
    try:
        yield counter
    finally:
        _numba_event.unregister("numba:compile", counter)


@contextmanager
def compile_report(verbose):
    """Say when a block compiles kernels, and how long it took (if ``verbose``).

    Prints nothing when every kernel the block runs is already compiled or
    loads from the cache.
    """
    if not verbose:
        yield
        return
    with counting_compiles(announce=True) as counter:
        try:
            yield
        finally:
            if counter.count:
                print(
                    f"fastbp: compiled {counter.count} functions in "
                    f"{counter.seconds:.1f} s.",
                    flush=True,
                )


def _call_name(dispatcher, argtypes):
    """The symbol callers use for ``dispatcher`` compiled for ``argtypes``.

    numba's own symbol for a compiled function carries a per-process counter,
    so a callee compiled again in another process (two processes filling an
    empty cache at once, e.g. joblib workers) gets another name than the one
    a cached caller was linked against: loading that caller then aborts the
    process ("LLVM ERROR: Symbol not found").  Callers therefore call a name
    that depends only on the function and its argument types, and every
    process binds it to whichever compiled callee it has.
    """
    func = dispatcher.py_func
    name = f"fastbp_call.{func.__module__}.{func.__qualname__}"
    return _numba_mangler(name, argtypes)


def _register(dispatcher, argtypes):
    """Compile (or load from the cache) ``dispatcher`` for ``argtypes``.

    Its entry point is then made known to LLVM's linker under
    :func:`_call_name`, so that callers compiled before, or loaded from the
    cache (by any process), resolve it.
    """
    cres, address = _entry_point(dispatcher, argtypes)
    _llvm.add_symbol(_call_name(dispatcher, argtypes), address)
    return cres


def _entry_point(dispatcher, argtypes):
    """``(compile result, entry address)`` of ``dispatcher`` for ``argtypes``.

    Compiles it, or loads it from the cache, first.
    """
    dispatcher.compile(argtypes)
    cres = dispatcher.overloads[argtypes]
    return cres, cres.library.get_pointer_to_function(cres.fndesc.mangled_name)


class _Callee:
    """Ensures a separately compiled callee is ready before its caller loads.

    Stored in the caller's compile result (numba's ``reload_init`` hooks, which
    a process loading the caller from the cache runs first): compiles or loads
    the callee and registers its entry point.  Picklable, and equal by value.
    """

    def __init__(self, module, name, argtypes):
        self.key = (module, name, argtypes)

    def __eq__(self, other):
        return isinstance(other, _Callee) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __call__(self):
        module, name, argtypes = self.key
        _register(getattr(importlib.import_module(module), name), argtypes)


@_numba_extending.intrinsic
def _call_separately(typingctx, callee, args):
    argtypes = tuple(_numba_types.unliteral(t) for t in args)
    return_type = _register(callee.dispatcher, argtypes).signature.return_type

    def codegen(context, builder, signature, llargs):
        cres, fndesc = declare_callee(context, callee.dispatcher, argtypes)
        values = [
            context.cast(builder, builder.extract_value(llargs[1], i), t, u)
            for i, (t, u) in enumerate(zip(args, argtypes, strict=True))
        ]
        # Calls the callee by its process-independent name (exceptions
        # propagate as for any call), without linking its code into this
        # kernel.
        return context.call_internal(builder, fndesc, cres.signature, values)

    return return_type(callee, args), codegen


def declare_callee(context, dispatcher, argtypes):
    """Make ``dispatcher``'s code for ``argtypes`` callable from the kernel lowered.

    For intrinsics' codegen.  The callee is compiled (or loaded) on its own
    and recorded in the caller's cache entry (loaded first by a process that
    loads the caller, see :class:`_Callee`).  Returns ``(compile result,
    function descriptor)``, the descriptor naming the callee by
    :func:`_call_name`, for ``context.call_internal`` or
    ``context.declare_function``.
    """
    cres = _register(dispatcher, argtypes)
    func = dispatcher.py_func
    context.active_code_library._reload_init.add(
        _Callee(func.__module__, func.__name__, argtypes)
    )
    fndesc = copy.copy(cres.fndesc)
    fndesc.mangled_name = _call_name(dispatcher, argtypes)
    return cres, fndesc


def call_pointer(context, builder, address, return_type, argtypes, values):
    """Emit a call through the integer ``address`` with numba's calling convention.

    For intrinsics' codegen.  An exception raised by the callee propagates to
    the caller, as for a plain call.  Returns the callee's result.
    """
    fnty = context.call_conv.get_function_type(return_type, argtypes)
    callee = builder.inttoptr(address, fnty.as_pointer())
    status, result = context.call_conv.call_function(
        builder, callee, return_type, argtypes, values
    )
    with _numba_cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return result


def call_separately(kernel, args):
    """Call ``kernel(*args)`` from a kernel without compiling it into the caller.

    numba links the code of every function a kernel calls into the kernel and
    has LLVM optimise and emit all of it again, so a function called from
    three levels up is compiled four times.  ``call_separately`` instead calls
    the callee's own compiled code through its symbol: each kernel's code is
    optimised and emitted once (a first fit compiled ~35% faster, see
    ``python -m bench.compile_profile``).  The callee is compiled for the
    argument types (literals are passed as their plain types), exceptions
    propagate as for a plain call, and the caller's cache entry records the
    callee so that a process loading the caller from the cache loads the
    callee first.  The price is a call LLVM cannot inline: use it between
    kernels that do real work, not for scalar helpers.

    Under ``NUMBA_DISABLE_JIT=1`` it is a plain call.
    """
    return kernel(*args)


if not numba.config.DISABLE_JIT:
    call_separately = _call_separately  # noqa: F811


def bundle(cls):
    """Register the named tuple class ``cls`` as an argument type of kernels.

    numba types an argument by dispatching on its class.  A named tuple class
    has no rule of its own, so the first value of each made numba test the
    class against every numba type class it knows (~130 abstract base
    classes): 0.3-1.3 ms per class, and ~270 objects (a weak reference and
    its callback in each of their negative caches) that the collector then
    walks until the process exits; a fit used seven such classes.
    Registered, ``cls`` goes straight to numba's own rule for tuples: the
    types are the same.  Returns ``cls``.
    """
    _numba_extending.typeof_impl.register(cls)(
        _numba_extending.typeof_impl.dispatch(tuple)
    )
    return cls


def array_type(dtype, ndim=1):
    """Numba's type of a C-contiguous ``ndim``-d array of numpy ``dtype``."""
    return _numba_types.Array(numba.from_dtype(np.dtype(dtype)), ndim, "C")


class KernelTable:
    """Kernels of one signature, one per code, chosen by a network at run time.

    The activation of each hidden layer and the loss are data of the network,
    not of the kernels: the kernels that run a network call the chosen member
    through its address (:func:`call_at`), so that one compiled epoch serves
    every activation and loss, and a process compiles only the members its
    networks use (a kernel holding every member's loops behind a run-time
    switch compiled them all: ~1-2 s of each first fit of a dtype).

    Parameters
    ----------
    argtypes : callable
        ``argtypes(dtype)``: the numba argument types of every member for a
        float dtype; callers pass exactly these types.
    restype : numba type
        What every member returns.
    kernels : dict
        Code -> kernel made by ``jit(from_python=False)``.  The
        member of the smallest code is the table's ``prototype``: callers
        name it to :func:`call_at`, which types the call by the table's
        signature (nothing is compiled for it).

    """

    def __init__(self, argtypes, restype, kernels):
        self.argtypes = argtypes
        self.restype = restype
        self.kernels = dict(kernels)
        self.prototype = self.kernels[min(self.kernels)]
        self.prototype.fastbp_signature = (argtypes, restype)
        # (code, dtype) -> address: a fit makes a new network, and asking
        # numba again for an entry point (signature lookup, compiler lock)
        # was ~1 ms of every fit.  Addresses stay valid for the process.
        self._addresses = {}

    def address(self, code, dtype):
        """Address of member ``code`` compiled (or loaded) for ``dtype``."""
        key = (int(code), np.dtype(dtype).str)
        address = self._addresses.get(key)
        if address is None:
            kernel = self.kernels[key[0]]
            address = kernel_address(kernel, self.argtypes(dtype), self.restype)
            self._addresses[key] = address
        return address

    def compile_all(self, dtype):
        """Compile (or load) every member for ``dtype`` (:func:`fastbp.warm_cache`)."""
        for code in self.kernels:
            self.address(code, dtype)


#: Under NUMBA_DISABLE_JIT=1 an "address" indexes this list of plain functions.
_PYTHON_KERNELS = []


def kernel_address(dispatcher, argtypes, restype):
    """The entry point of ``dispatcher`` compiled for ``argtypes``, as an int.

    Compiles (or loads from the cache) first, and checks that it returns
    ``restype``.  The address is only valid in this process: it is computed
    when a call needs it and never stored on an estimator.
    """
    if not hasattr(dispatcher, "compile"):  # NUMBA_DISABLE_JIT=1: a plain function
        if dispatcher not in _PYTHON_KERNELS:
            _PYTHON_KERNELS.append(dispatcher)
        return _PYTHON_KERNELS.index(dispatcher)
    cres, address = _entry_point(dispatcher, tuple(argtypes))
    if cres.signature.return_type != restype:  # would be called with another ABI
        raise TypeError(
            f"{dispatcher.py_func.__name__} returns {cres.signature.return_type}, "
            f"its table's members return {restype}"
        )
    return address


@_numba_extending.intrinsic
def _call_at(typingctx, address, prototype, args):
    # Read-only arrays (a user's read-only input) have the same data model as
    # writable ones; members never write to the arrays they only read.
    argtypes = tuple(
        t.copy(readonly=False) if isinstance(t, _numba_types.Array) else t
        for t in (_numba_types.unliteral(t) for t in args)
    )
    table_argtypes, return_type = prototype.dispatcher.fastbp_signature
    # The members' float dtype is the one of the first array passed.
    first = next(t for t in argtypes if isinstance(t, _numba_types.Array))
    expected = tuple(table_argtypes(_numba_as_dtype(first.dtype)))
    if argtypes != expected:
        raise _numba_errors.TypingError(
            f"call_at({prototype.dispatcher.py_func.__name__}): arguments "
            f"{argtypes}, the table's members take {expected}"
        )

    def codegen(context, builder, signature, llargs):
        values = [builder.extract_value(llargs[2], i) for i in range(len(argtypes))]
        return call_pointer(context, builder, llargs[0], return_type, argtypes, values)

    return return_type(address, prototype, args), codegen


def call_at(address, prototype, args):
    """Call the kernel at ``address`` (from :class:`KernelTable`) with ``args``.

    ``prototype`` is the table's prototype; ``args`` must have exactly the
    table's argument types (checked when the caller compiles).  Nothing of
    the callee is compiled into the caller, and the caller's cached machine
    code does not depend on which member it calls.  Under
    ``NUMBA_DISABLE_JIT=1`` it is a plain call.
    """
    return _PYTHON_KERNELS[address](*args)


if not numba.config.DISABLE_JIT:
    call_at = _call_at  # noqa: F811


# ----------------------------------------------------------------------------
# Calls across the dtype boundary.
#
# A kernel that only passes its float arrays on (the epoch loop) does not need
# to know their dtype: it takes them as bytes (``array.view(np.uint8)``, see
# :func:`as_bytes`), so it is compiled once for float64 and float32, and calls
# the kernels that do the arithmetic by address (:func:`call_erased`), which
# hands them their arrays back as arrays of the dtype.


def as_bytes(array):
    """A C-contiguous float array as its bytes (``uint8``, last axis in bytes)."""
    return array.view(np.uint8)


#: Bytes per element -> the float dtype (``NUMBA_DISABLE_JIT=1`` stand-in).
_FLOAT_OF_SIZE = {8: np.float64, 4: np.float32}


def _from_bytes_python(value, itemsize):
    if isinstance(value, np.ndarray) and value.dtype == np.uint8:
        return value.view(_FLOAT_OF_SIZE[int(itemsize)])
    if isinstance(value, tuple):
        items = [_from_bytes_python(v, itemsize) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


def _from_bytes(context, builder, typ, value, itemsize):
    """``value`` of numba type ``typ`` with every ``uint8`` array re-typed.

    A byte array's struct becomes that of the array of ``itemsize``-byte
    elements over the same memory (last axis length and stride, item count
    and item size); tuples are rebuilt member by member.  The struct's LLVM
    type is unchanged: only the callee reads it as floats.
    """
    if isinstance(typ, _numba_types.Array) and typ.dtype == _numba_types.uint8:
        src = context.make_array(typ)(context, builder, value)
        shape = _numba_cgutils.unpack_tuple(builder, src.shape, typ.ndim)
        strides = _numba_cgutils.unpack_tuple(builder, src.strides, typ.ndim)
        shape[-1] = builder.sdiv(shape[-1], itemsize)
        strides[-1] = itemsize
        out = context.make_array(typ)(context, builder)
        out.meminfo = src.meminfo
        out.parent = src.parent
        out.nitems = builder.sdiv(src.nitems, itemsize)
        out.itemsize = itemsize
        out.data = src.data
        out.shape = _numba_cgutils.pack_array(builder, shape)
        out.strides = _numba_cgutils.pack_array(builder, strides)
        return out._getvalue()
    if isinstance(typ, _numba_types.BaseTuple):
        for i, member in enumerate(typ.types):
            item = builder.extract_value(value, i)
            value = builder.insert_value(
                value, _from_bytes(context, builder, member, item, itemsize), i
            )
    return value


@_numba_extending.intrinsic
def _call_erased(typingctx, address, itemsize, result, args):
    argtypes = tuple(_numba_types.unliteral(t) for t in args)
    return_type = _numba_types.unliteral(result)

    def codegen(context, builder, signature, llargs):
        size = context.cast(builder, llargs[1], signature.args[1], _numba_types.intp)
        values = [
            _from_bytes(context, builder, t, builder.extract_value(llargs[3], i), size)
            for i, t in enumerate(argtypes)
        ]
        return call_pointer(context, builder, llargs[0], return_type, argtypes, values)

    return return_type(address, itemsize, result, args), codegen


#: ``call_erased``'s ``result`` for a callee that returns a float64, and for
#: one that returns nothing: only their types matter.
RETURNS_FLOAT = 0.0
RETURNS_NOTHING = None


def call_erased(address, itemsize, result, args):
    """Call the kernel at ``address`` with ``args``, byte arrays as float arrays.

    Every ``uint8`` array in ``args`` (also inside tuples) reaches the callee
    as the array of ``itemsize``-byte floats over the same memory; the callee
    (compiled for those float arrays, its address from
    :func:`kernel_address`) returns a value of ``result``'s type (``result``
    itself is not used; :data:`RETURNS_FLOAT`, :data:`RETURNS_NOTHING`).
    The caller's machine code is the same for every dtype.  Nothing checks
    that the callee takes these types: the caller's Python side computes the
    address for exactly them.  Under ``NUMBA_DISABLE_JIT=1`` it is a plain
    call on numpy views.
    """
    return _PYTHON_KERNELS[address](*_from_bytes_python(tuple(args), itemsize))


if not numba.config.DISABLE_JIT:
    call_erased = _call_erased  # noqa: F811


# ----------------------------------------------------------------------------
# Bundles of arrays across the Python boundary.
#
# numba compiles a Python entry wrapper for every kernel Python calls, and the
# wrapper unboxes every array of every argument, named tuples included, with
# code of its own for each (~10 ms of compilation per array).  The epoch loop
# takes some thirty arrays: its wrapper was three quarters of its code.  The
# kernels Python calls take their bundles packed instead: one int64 array of
# the arrays' addresses, shapes and strides (:func:`pack`), from which
# :func:`unpack` rebuilds the bundle inside the kernel in a few instructions
# per array.


def _word(value):
    """A number as the int64 word :func:`unpack` reads it from."""
    if isinstance(value, (float, np.floating)):
        return int(np.float64(value).view(np.int64))
    if type(value) is int and not -(1 << 63) <= value < (1 << 63):
        # numba would type it uint64 (or fail) while its key says int.
        raise ValueError(f"pack: {value} is outside int64; pass an np.uint64")
    value = int(value)
    return value - (1 << 64) if value >= (1 << 63) else value  # uint64 bits


def _pack_into(value, words, key):
    if isinstance(value, np.ndarray):
        flags = value.flags
        key.append((value.dtype.str, value.ndim, flags.c_contiguous,
                    flags.f_contiguous, flags.writeable, flags.aligned))  # fmt: skip
        words.append(value.ctypes.data)
        words.extend(value.shape)
        words.extend(value.strides)
    elif isinstance(value, tuple):
        key.append(type(value))
        for item in value:
            _pack_into(item, words, key)
        key.append(len(value))
    elif value is None:
        key.append(None)
    elif isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        key.append(type(value))
        words.append(_word(value))
    else:
        raise TypeError(f"pack: {type(value).__name__} is not an array or a number")


class _BundleRef(_numba_types.TypeRef):
    """A reference to a packed bundle's numba type, passed to kernels as is.

    numba types the value as itself, and hashes it at every call (the
    dispatcher records each argument's type in a set): this reference
    computes its hash once, where numba's hashes the whole nested type again
    (~25 us a call for the epoch's bundle).
    """

    def __init__(self, instance_type):
        super().__init__(instance_type)
        self._hash = hash(instance_type)

    def __hash__(self):
        return self._hash

    def __reduce__(self):
        # Rebuilt, with a fresh hash, where numba unpickles a cache index.
        return _BundleRef, (self.instance_type,)


_numba_extending.register_model(_BundleRef)(_numba_extending.models.OpaqueModel)
_numba_extending.typeof_impl.register(_BundleRef)(lambda value, context: value)


#: What fixes the numba type of a packed bundle -> a :class:`_BundleRef` to it.
_BUNDLE_TYPES = {}


def pack(bundle):
    """``(words, types)``: the nested tuple ``bundle`` packed for a kernel.

    ``bundle`` holds arrays, numbers and ``None``, in (named) tuples.
    ``words`` (int64) holds each array's address, shape and strides and each
    number's bits, in order; ``types`` is ``bundle``'s numba type, which the
    kernel receives as a type reference and hands to :func:`unpack`.  The
    words hold addresses, not references: the caller keeps ``bundle`` alive
    for as long as a kernel may use them.  Under ``NUMBA_DISABLE_JIT=1``
    ``words`` is ``bundle`` itself.
    """
    words, key = [], []
    _pack_into(bundle, words, key)
    if numba.config.DISABLE_JIT:
        return bundle, None
    key = tuple(key)
    types = _BUNDLE_TYPES.get(key)
    if types is None:
        types = _BUNDLE_TYPES[key] = _BundleRef(numba.typeof(bundle))
    return np.array(words, dtype=np.int64), types


@_numba_extending.intrinsic
def _unpack(typingctx, words, types):
    bundle_type = types.instance_type
    intp, float64 = _numba_types.intp, _numba_types.float64

    def codegen(context, builder, signature, llargs):
        data = context.make_array(signature.args[0])(context, builder, llargs[0]).data
        position = itertools.count()

        def word():
            index = context.get_constant(intp, next(position))
            return builder.load(builder.gep(data, [index]))

        def build(typ):
            if isinstance(typ, _numba_types.Array):
                array = context.make_array(typ)(context, builder)
                address = word()
                shape = [word() for _ in range(typ.ndim)]
                strides = [word() for _ in range(typ.ndim)]
                nitems = shape[0]
                for extent in shape[1:]:
                    nitems = builder.mul(nitems, extent)
                itemsize = context.get_abi_sizeof(context.get_data_type(typ.dtype))
                # No meminfo: the kernel does not own or count the memory.
                array.meminfo = _numba_cgutils.get_null_value(array.meminfo.type)
                array.parent = _numba_cgutils.get_null_value(array.parent.type)
                array.nitems = nitems
                array.itemsize = context.get_constant(intp, itemsize)
                array.data = builder.inttoptr(address, array.data.type)
                array.shape = _numba_cgutils.pack_array(builder, shape)
                array.strides = _numba_cgutils.pack_array(builder, strides)
                return array._getvalue()
            if isinstance(typ, _numba_types.BaseTuple):
                items = [build(member) for member in typ.types]
                return context.make_tuple(builder, typ, items)
            if isinstance(typ, _numba_types.NoneType):
                return context.get_dummy_value()
            if isinstance(typ, _numba_types.Float):
                bits = builder.bitcast(word(), context.get_value_type(float64))
                return context.cast(builder, bits, float64, typ)
            return context.cast(builder, word(), _numba_types.int64, typ)

        return build(bundle_type)

    return bundle_type(words, types), codegen


def unpack(words, types):
    """The bundle :func:`pack` packed into ``words``, inside a kernel.

    ``types`` is the type :func:`pack` returned, passed to the kernel as an
    argument.  Arrays come back as arrays over the caller's memory (no
    reference counting); numbers as their types.  Under
    ``NUMBA_DISABLE_JIT=1`` ``words`` is the bundle and is returned.
    """
    return words


if not numba.config.DISABLE_JIT:
    unpack = _unpack  # noqa: F811
