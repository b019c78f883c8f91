"""The ``linking`` internals: kernels calling kernels by symbol and by address.

Internals used (the ``"linking"`` entry of ``internals.INTERNALS``,
checked by ``check()`` before this module is imported): numba's
``CodeLibrary._reload_init`` (a cached caller loads its callees first),
``llvmlite.binding.add_symbol`` (callees bound to a process-independent
name), ``default_mangler``, the target context's calling convention and
``call_internal``, and ``cgutils``.  :mod:`.calls` chooses between these
intrinsics and numba's public path (plain calls); :mod:`.parallel` between
the one parallel launcher at the end of this module and a serial loop.
"""

import copy
import importlib

import llvmlite.binding as _llvm
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.core import errors as _numba_errors
from numba.core.funcdesc import default_mangler as _numba_mangler
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from .compile import ORCHESTRATOR, jit


def check():
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
                for name in ("call_internal", "declare_function", "get_value_type",
                             "cast", "get_dummy_value", "active_code_library"))
        and all(hasattr(cgutils, name)
                for name in ("alloca_once_value", "if_unlikely"))
    )  # fmt: skip


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


@intrinsic
def call_separately(typingctx, callee, args):
    argtypes = tuple(types.unliteral(t) for t in args)
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
    with cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return result


def kernel_address(dispatcher, argtypes, restype):
    """The entry point of ``dispatcher`` compiled for ``argtypes``, as an int.

    Compiles (or loads from the cache) first, and checks that it returns
    ``restype``.  The address is only valid in this process: it is computed
    when a call needs it and never stored on an estimator.
    """
    cres, address = _entry_point(dispatcher, tuple(argtypes))
    if cres.signature.return_type != restype:  # would be called with another ABI
        raise TypeError(
            f"{dispatcher.py_func.__name__} returns {cres.signature.return_type}, "
            f"its table's members return {restype}"
        )
    return address


@intrinsic
def call_at(typingctx, address, prototype, args):
    # Read-only arrays (a user's read-only input) have the same data model as
    # writable ones; members never write to the arrays they only read.
    argtypes = tuple(
        t.copy(readonly=False) if isinstance(t, types.Array) else t
        for t in (types.unliteral(t) for t in args)
    )
    table = prototype.dispatcher.fastbp_table
    return_type = table.restype
    expected = table.expected_argtypes(argtypes)
    if argtypes != expected:
        raise _numba_errors.TypingError(
            f"call_at({prototype.dispatcher.py_func.__name__}): arguments "
            f"{argtypes}, the table's members take {expected}"
        )

    def codegen(context, builder, signature, llargs):
        values = [builder.extract_value(llargs[2], i) for i in range(len(argtypes))]
        return call_pointer(context, builder, llargs[0], return_type, argtypes, values)

    return return_type(address, prototype, args), codegen


# The one parallel launcher (see :mod:`.parallel`).

#: The worker's signature after its tuple type: the index.
_INDEX = types.int64


@intrinsic
def _call_worker(typingctx, worker, ctx, i):
    """Call the worker at address ``worker`` with ``(ctx, i)``."""

    def codegen(context, builder, signature, llargs):
        # The worker takes a typed pointer to its tuple; any pointer has the
        # same representation, so the launcher declares a void pointer.
        pointer = builder.inttoptr(llargs[1], context.get_value_type(types.voidptr))
        call_pointer(context, builder, llargs[0], types.none,
                     (types.voidptr, _INDEX), [pointer, llargs[2]])  # fmt: skip
        return context.get_dummy_value()

    return types.none(worker, ctx, i), codegen


@jit(parallel=True, opt=ORCHESTRATOR, from_python=False)
def _launch(worker, ctx, n):
    """``worker(ctx, i)`` for ``i`` in ``range(n)``, in parallel."""
    for i in prange(n):
        _call_worker(worker, ctx, np.int64(i))


_LAUNCH_ARGTYPES = (types.int64, types.int64, types.int64)


@intrinsic
def parallel_for(typingctx, worker, args, n):
    args_type = types.unliteral(args)
    worker_argtypes = (types.CPointer(args_type), _INDEX)
    _register(worker.dispatcher, worker_argtypes)
    _register(_launch, _LAUNCH_ARGTYPES)

    def codegen(context, builder, signature, llargs):
        i64 = ir.IntType(64)
        # The tuple lives in this kernel's frame for the whole call.
        ctx = cgutils.alloca_once_value(builder, llargs[1])
        _, worker_desc = declare_callee(context, worker.dispatcher, worker_argtypes)
        worker_fn = context.declare_function(builder.module, worker_desc)
        cres, launch_desc = declare_callee(context, _launch, _LAUNCH_ARGTYPES)
        n_value = context.cast(builder, llargs[2], signature.args[2], types.int64)
        values = [builder.ptrtoint(worker_fn, i64), builder.ptrtoint(ctx, i64), n_value]
        context.call_internal(builder, launch_desc, cres.signature, values)
        return context.get_dummy_value()

    return types.none(worker, args, n), codegen


@intrinsic
def worker_args(typingctx, ctx):
    args_type = ctx.dtype

    def codegen(context, builder, signature, llargs):
        # The tuple was stored as a value (see _parallel_for), not in numba's
        # in-memory layout (which ``ctx[0]`` would read: booleans differ).
        pointer = builder.bitcast(
            llargs[0], context.get_value_type(args_type).as_pointer()
        )
        value = builder.load(pointer)
        return impl_ret_borrowed(context, builder, args_type, value)

    return args_type(ctx), codegen
