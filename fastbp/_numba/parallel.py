"""One parallel region for every kernel set: :func:`parallel_for`.

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

The launcher and its intrinsics are :mod:`.linking`'s (the ``"linking"``
internals).  On numba's public path the iterations run one after another in
the caller (same results, no parallel speed-up): a kernel that calls a
``parallel=True`` kernel cannot be cached by numba ("uses dynamic globals"),
so a public parallel launcher would make every process compile the whole
epoch again.
"""

import numba
import numba.extending as _numba_extending
import numpy as np

from .calls import LINKED, linking


def parallel_for(worker, args, n):
    """Run ``worker(ctx, i)`` for ``i`` in ``range(n)``, in parallel, from a kernel.

    ``args`` is a tuple; inside ``worker`` (a kernel made by
    ``jit(from_python=False)``), ``worker_args(ctx)`` gives it back.
    Iterations may run in any order on any thread: each must write only its
    own outputs.  The caller compiles no parallel region of its own (see the
    module docstring).

    On numba's public path, and under ``NUMBA_DISABLE_JIT=1``, the iterations
    run in order.
    """
    for i in range(n):
        worker(args, i)


def worker_args(ctx):
    """The tuple :func:`parallel_for` passed, inside its worker."""
    return ctx


if LINKED:
    linking.parallel_for.__doc__ = parallel_for.__doc__
    linking.worker_args.__doc__ = worker_args.__doc__
    parallel_for = linking.parallel_for  # noqa: F811
    worker_args = linking.worker_args  # noqa: F811
elif not numba.config.DISABLE_JIT:
    # Inlined: the worker is then a constant of the call, never a function
    # value passed to a compiled call (see calls.py).
    @_numba_extending.overload(parallel_for, inline="always")
    def _parallel_for_public(worker, args, n):
        run = worker.dispatcher  # a constant of the call (see calls.py)

        def in_order(worker, args, n):
            for i in range(n):
                run(args, np.int64(i))

        return in_order

    @_numba_extending.overload(worker_args)
    def _worker_args_public(ctx):
        def same(ctx):
            return ctx

        return same
