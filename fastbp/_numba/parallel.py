"""One parallel region for every kernel set: ``parallel_for``.

numba builds a ``prange`` loop into a parallel region of its own (a gufunc,
its wrapper and the scheduling code) for every dtype and input kind a kernel
is compiled for, and that region carries every variable the loop body
reads.  It was the most expensive part of a first fit's compilation (~1 s per
kernel set, ``python -m bench.compile_profile``).

:func:`parallel_for` instead runs ``worker(ctx, i)`` for ``i`` in
``range(n)`` through one launcher, ``_launch``, compiled once per
process (or loaded from the cache) whatever the worker and its data:

* the caller's arguments travel as one tuple copied to the caller's stack,
  and the launcher sees its address only (``ctx``, an integer);
* the worker, a small kernel compiled for the tuple's type, receives the
  tuple's address typed as a pointer (:func:`worker_args` reads the tuple
  back) and the index, and is called by address.

The loop's iterations and what each writes are the caller's business, as
with ``prange``: fastbp's workers write chunk ``i``'s own buffers only, so
results never depend on which thread runs an iteration.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from .calls import _register, call_pointer, declare_callee
from .compile import ORCHESTRATOR, jit

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
def _parallel_for(typingctx, worker, args, n):
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
def _worker_args(typingctx, ctx):
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


def parallel_for(worker, args, n):
    """Run ``worker(ctx, i)`` for ``i`` in ``range(n)``, in parallel, from a kernel.

    ``args`` is a tuple; inside ``worker`` (a kernel made by
    ``jit(from_python=False)``), ``worker_args(ctx)`` gives it back.
    Iterations may run in any order on any thread: each must write only its
    own outputs.  The caller compiles no parallel region of its own (see the
    module docstring).

    Under ``NUMBA_DISABLE_JIT=1`` the iterations run in order in Python.
    """
    for i in range(n):
        worker(args, i)


def worker_args(ctx):
    """The tuple :func:`parallel_for` passed, inside its worker."""
    return ctx


if not numba.config.DISABLE_JIT:
    _parallel_for.__doc__ = parallel_for.__doc__
    _worker_args.__doc__ = worker_args.__doc__
    parallel_for = _parallel_for  # noqa: F811
    worker_args = _worker_args  # noqa: F811
