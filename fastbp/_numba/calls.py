"""How kernels call kernels: by symbol (call_separately) and by address (call_at).

Internals used (the ``"linking"`` entry of :data:`.internals.INTERNALS`,
checked at import by :func:`_check_linking_internals`): numba's
``CodeLibrary._reload_init`` (a cached caller loads its callees first),
``llvmlite.binding.add_symbol`` (callees bound to a process-independent
name), ``default_mangler``, the target context's calling convention and
``call_internal``, and ``cgutils``.  fastbp has no public path for them yet;
the plain typed kernels of the foundation issue replace them.
"""

import copy
import importlib

import llvmlite.binding as _llvm
import numba
import numba.extending as _numba_extending
import numpy as np
from numba.core import cgutils as _numba_cgutils
from numba.core import errors as _numba_errors
from numba.core import types as _numba_types
from numba.core.funcdesc import default_mangler as _numba_mangler
from numba.np.numpy_support import as_dtype as _numba_as_dtype

from . import internals


def _check_linking_internals():
    """The numba internals this module and its users generate code with exist."""
    from numba.core.base import BaseContext
    from numba.core.codegen import JITCodeLibrary

    inits = [vars(cls)["__init__"] for cls in JITCodeLibrary.__mro__
             if "__init__" in vars(cls)]  # fmt: skip
    return (
        # set by CodeLibrary (numba >= 0.64) or CPUCodeLibrary (0.63)
        any("_reload_init" in init.__code__.co_names for init in inits)
        and callable(getattr(_llvm, "add_symbol", None))
        and all(hasattr(BaseContext, name)
                for name in ("call_internal", "declare_function", "make_array",
                             "get_value_type", "cast", "make_tuple"))
        and all(hasattr(_numba_cgutils, name)
                for name in ("pack_array", "unpack_tuple", "alloca_once_value",
                             "get_null_value", "if_unlikely"))
    )  # fmt: skip


internals.require("linking", _check_linking_internals)


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

    def code_of(self, address, dtype):
        """The code whose address for ``dtype`` this table handed out, else None."""
        dtype = np.dtype(dtype).str
        for (code, member_dtype), value in self._addresses.items():
            if value == address and member_dtype == dtype:
                return code
        return None

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
