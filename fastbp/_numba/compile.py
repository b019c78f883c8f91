"""The one place where fastbp's JIT policy is decided: :func:`jit`.

Every compiled kernel in fastbp is made by :func:`jit`, so that caching, the
error model and the floating-point flags are the same everywhere:

* cached on disk, as with numba's ``cache=True`` (see :mod:`.cache`), from a
  kernel's first compilation on, so that a second process loads instead of
  recompiling; where no cache directory is usable, in memory, with one
  ``RuntimeWarning``;
* ``error_model="numpy"``: division does not check for zero, which lets
  division loops vectorise (Adam's update is ~4x faster);
* ``fastmath=FASTMATH``: every LLVM fast-math flag *except* ``nnan`` and
  ``ninf``.  Those two would let LLVM delete ``isfinite`` checks, and fastbp
  relies on them to detect divergence inside the epoch kernel;
* ``nogil=True``: two Python threads may train two models at once.

Internals used (the ``"compile_policy"`` entry of
:data:`.internals.INTERNALS`): the CPU target options ``_nrt``,
``no_cpython_wrapper`` and ``no_cfunc_wrapper`` (no reference counting, no
entry wrappers a kernel never needs), ``config._OptLevel`` (an optimisation
level per kernel) and the dispatcher's ``compile`` method, wrapped to attach
the cache, switch the level and pause the garbage collector for the
compilation.  Without them (or with ``FASTBP_NUMBA_PUBLIC_ONLY=1``) a kernel
is ``numba.njit(cache=True, ...)`` with public options only.
"""

import gc
import signal
import threading
import time
from contextlib import contextmanager

import numba
import numba.core.event as _numba_event
from numba.core import config as _numba_config
from numba.core.compiler_lock import global_compiler_lock

from . import internals
from .cache import attach_cache, warn_no_cache


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
      (:func:`.cache.attach_cache`).
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
                attach_cache(dispatcher)
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
        :func:`fastbp._numba.parallel.parallel_for` uses it.
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
    # No reference counting (numba's NRT) where a kernel allocates nothing:
    # an atomic incref/decref for every array slice made was ~10% of an
    # online (batch_size=1) epoch.  Set either way: a kernel that does not
    # set it inherits its caller's (a plain call from a kernel without NRT
    # would compile an allocating callee without it, which numba refuses).
    options.update(_nrt=allocates)

    if not internals.usable("compile_policy", _check_compile_internals):
        return _public_njit(options)

    def decorate(func):
        # Cached (cache=True's cache) from its first compilation on.
        return _with_compile_policy(numba.njit(**options)(func), opt)

    return decorate


#: The target options of :func:`jit` that numba does not document.
_PRIVATE_OPTIONS = ("_nrt", "no_cpython_wrapper", "no_cfunc_wrapper")


def _check_compile_internals():
    """Numba's private target options, ``_OptLevel`` and ``compile`` still exist."""
    from numba.core.cpu import CPUTargetOptions
    from numba.core.registry import CPUDispatcher

    return (
        all(hasattr(CPUTargetOptions, name) for name in _PRIVATE_OPTIONS)
        and isinstance(_numba_config.OPT, _numba_config._OptLevel)
        and callable(getattr(CPUDispatcher, "compile", None))
    )


def _public_njit(options):
    """``numba.njit(cache=True, ...)`` with the documented options only."""
    options = {k: v for k, v in options.items() if k not in _PRIVATE_OPTIONS}

    def decorate(func):
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError as exc:  # numba found no usable cache directory
            warn_no_cache(exc)
            return numba.njit(**options)(func)

    return decorate


@jit(inline=True)
def smaller(a, b):
    """``min(a, b)`` for kernels, as Python picks it (``a`` unless ``b < a``).

    numba compiles its own ``min`` as a function of its own, one more
    compilation of a first fit; this one is copied into its callers.
    """
    return b if b < a else a


class _InterruptsHeld(_numba_event.Listener):
    """Hold Ctrl-C while numba compiles one of fastbp's kernels; deliver it after.

    LLVM calls back into Python while it compiles (llvmlite's object cache
    notification is a ctypes callback); a ``KeyboardInterrupt`` raised there
    is printed and dropped by ctypes, and the half-stored object surfaced as
    ``RuntimeError: no compiled object yet`` (or the interrupt was lost and
    the fit went on).  While the outermost compilation of a fastbp kernel runs
    in the main thread, SIGINT only sets a flag; when it ends, the previous
    handler is put back and the signal sent again, so the user's own handler
    (``KeyboardInterrupt`` by default) runs then.  Other code's compilations,
    and other threads, are left alone.
    """

    def __init__(self):
        self.depth = 0
        self.previous = None
        self.pending = False

    @staticmethod
    def _ours(event):
        if threading.current_thread() is not threading.main_thread():
            return False
        dispatcher = (event.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", None)
        return (module or "").startswith("fastbp.")

    def _hold(self, signum, frame):
        self.pending = True

    def on_start(self, event):
        if not self._ours(event):
            return
        self.depth += 1
        if self.depth == 1:
            previous = signal.getsignal(signal.SIGINT)
            # None: a handler installed from C, which Python cannot put back.
            if previous is not None:
                self.previous = previous
                signal.signal(signal.SIGINT, self._hold)

    def on_end(self, event):
        if not self._ours(event):
            return
        self.depth -= 1
        if self.depth == 0 and self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
            if self.pending:
                self.pending = False
                signal.raise_signal(signal.SIGINT)


_numba_event.register("numba:compile", _InterruptsHeld())


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
