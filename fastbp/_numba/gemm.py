"""BLAS ``gemm`` at raw addresses, through numba's own ``numba_xxgemm`` helper.

Internal used (the ``"blas"`` entry of :data:`.internals.INTERNALS`): the C
helper ``numba_xxgemm`` that numba's own ``np.dot`` calls, declared here with
untyped pointers so that one compiled function serves both dtypes and no
view, reshape or contiguity check is compiled into the kernels that multiply.
Without it (or with ``FASTBP_NUMBA_PUBLIC_ONLY=1``) the products are
``np.dot`` on views (:func:`fastbp._kernels.linalg.dot_product`).
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import internals
from .compile import jit

#: ``numba_xxgemm(kind, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta,
#: c, ldc)``: Fortran-order ``c = alpha op(a) op(b) + beta c``; ``kind`` is
#: ``'d'`` or ``'s'``.  Pointers are untyped so one declaration serves both
#: dtypes.
_xxgemm = types.ExternalFunction(
    "numba_xxgemm",
    types.intc(
        types.char,
        types.char,
        types.char,
        types.intp,
        types.intp,
        types.intp,
        types.voidptr,
        types.voidptr,
        types.intp,
        types.voidptr,
        types.intp,
        types.voidptr,
        types.voidptr,
        types.intp,
    ),
)

NOTRANS = np.int8(ord("n"))
TRANS = np.int8(ord("t"))
_DOUBLE = np.int8(ord("d"))
_SINGLE = np.int8(ord("s"))
#: ``alpha = 1`` and ``beta = 0`` of every product, which BLAS reads through
#: pointers, as raw bytes: the float64 pair, then the float32 pair at byte 16.
_ONE_ZERO = np.concatenate(
    [
        np.array([1.0, 0.0], dtype=np.float64).view(np.uint8),
        np.array([1.0, 0.0], dtype=np.float32).view(np.uint8),
    ]
)


@intrinsic
def address(typingctx, array, offset):
    """The address of ``array[offset]``, as an integer (no bounds check)."""

    def codegen(context, builder, signature, llargs):
        data = context.make_array(signature.args[0])(context, builder, llargs[0]).data
        return builder.ptrtoint(builder.gep(data, [llargs[1]]), ir.IntType(64))

    return types.int64(array, types.intp), codegen


@intrinsic
def _as_pointer(typingctx, address):
    """An integer address as a pointer for BLAS."""
    # Where numba's own np.dot checks for scipy's BLAS: when the caller
    # compiles.  Imported here, not at import time: numba.np.linalg pulls in
    # ~60 ms of numba modules that a process loading its kernels from the
    # cache never needs (numba's gemm helper finds scipy's BLAS itself).
    from numba.np.linalg import ensure_blas

    ensure_blas()

    def codegen(context, builder, signature, llargs):
        return builder.inttoptr(llargs[0], context.get_value_type(types.voidptr))

    return types.voidptr(address), codegen


@jit(from_python=False)
def gemm(itemsize, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):
    """Fortran-order ``c = op(a) @ op(b)`` (beta = 0) at addresses ``a, b, c``.

    ``itemsize`` (8 or 4) picks ``dgemm`` or ``sgemm``.  The matrices are
    addresses, not arrays, so this is compiled once for every dtype.
    """
    kind = _DOUBLE if itemsize == 8 else _SINGLE
    one = 0 if itemsize == 8 else 16
    _xxgemm(
        kind,
        transa,
        transb,
        m,
        n,
        k,
        _ONE_ZERO[one:].ctypes,
        _as_pointer(a),
        lda,
        _as_pointer(b),
        ldb,
        _ONE_ZERO[one + itemsize :].ctypes,
        _as_pointer(c),
        ldc,
    )


if numba.config.DISABLE_JIT:  # pure Python (coverage runs): numpy stands in

    def address(array, offset):  # noqa: F811
        return array, offset

    def _fortran(at, ld, rows, cols):
        x, x0 = at
        return x[x0 : x0 + ld * cols].reshape(cols, ld)[:, :rows].T

    def gemm(itemsize, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):  # noqa: F811
        """The numpy stand-in for :func:`gemm` under ``NUMBA_DISABLE_JIT=1``."""
        op_a = _fortran(a, lda, m, k) if transa == NOTRANS else _fortran(a, lda, k, m).T
        op_b = _fortran(b, ldb, k, n) if transb == NOTRANS else _fortran(b, ldb, n, k).T
        _fortran(c, ldc, m, n)[...] = op_a @ op_b


def _check_gemm_internal():
    """Numba's ``numba_xxgemm`` still has the signature :data:`_xxgemm` declares.

    numba declares it per dtype with typed pointers (``numba.np.linalg``);
    fastbp with untyped ones, in the same places.  Importing numba's linalg
    module here costs nothing in a process that fits: compiling or loading
    a kernel imports it anyway.
    """
    from numba.np.linalg import _BLAS

    theirs = _BLAS.numba_xxgemm(types.float64).sig
    ours = _xxgemm.sig
    if ours.return_type != theirs.return_type or len(ours.args) != len(theirs.args):
        return False
    for mine, numbas in zip(ours.args, theirs.args, strict=True):
        if mine == types.voidptr:
            if not isinstance(numbas, types.CPointer):
                return False
        elif mine != numbas:
            return False
    return True


def gemm_usable():
    """Whether :func:`gemm` may be used (else: ``np.dot`` on views)."""
    return internals.usable("blas", _check_gemm_internal)
