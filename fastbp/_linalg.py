"""The three matrix products of backpropagation, on flat row-major buffers.

Every matrix the kernels touch (a layer's weights in the flat parameter
vector, a chunk's activations and deltas in its flat workspace) is a
row-major block of a 1-D array, named by the array and the offset where the
block starts.  The three products of a layer are

======  =====================  ==========================================
``op``  product                use
======  =====================  ==========================================
NN      ``C = A @ B``          forward: ``Z = A W``
TN      ``C = A.T @ B``        weight gradient: ``A.T @ delta``
NT      ``C = A @ B.T``        delta pushed down: ``delta @ W.T``
======  =====================  ==========================================

all made by :func:`product`.

Each calls BLAS ``gemm`` directly, through the ``numba_xxgemm`` helper that
``np.dot`` itself uses inside numba (scipy's BLAS), with the transposes and
leading dimensions passed as flags and the matrices as addresses: no view,
reshape, transpose or contiguity check is compiled, which keeps every kernel
that multiplies matrices small and fast to compile, and the one function
that calls BLAS (``_gemm``) is compiled once for both dtypes.

Where training runs chunks of at most ``SMALL_ROWS`` rows (online learning)
the products are plain loops instead (:func:`loop_product`): BLAS call
overhead and its skinny-shape kernels cost more than the arithmetic there.
The two are the members of the kernel table :data:`PRODUCT`; a network calls
the one its workspace needs by address, so the loops are compiled only for
configurations that run them (every first fit compiled them before: ~0.6 s).
The choice depends on the batch size only, so results never depend on the
thread count.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._jit import KernelTable, array_type, jit

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

_N = np.int8(ord("n"))
_T = np.int8(ord("t"))
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

#: Training chunks of at most this many rows multiply with loops
#: (:func:`loop_product`) rather than BLAS calls.
SMALL_ROWS = 4


@intrinsic
def _address(typingctx, array, offset):
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
def _gemm(itemsize, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):
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

    def _address(array, offset):  # noqa: F811
        return array, offset

    def _fortran(at, ld, rows, cols):
        x, x0 = at
        return x[x0 : x0 + ld * cols].reshape(cols, ld)[:, :rows].T

    def _gemm(itemsize, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):  # noqa: F811
        """The numpy stand-in for :func:`_gemm` under ``NUMBA_DISABLE_JIT=1``."""
        op_a = _fortran(a, lda, m, k) if transa == _N else _fortran(a, lda, k, m).T
        op_b = _fortran(b, ldb, k, n) if transb == _N else _fortran(b, ldb, n, k).T
        _fortran(c, ldc, m, n)[...] = op_a @ op_b


#: ``product``'s ``op``: which of the three products of a layer.
NN = 0
TN = 1
NT = 2


@jit(from_python=False)
def product(op, n, p, q, A, a0, B, b0, C, c0):
    """One of a layer's three products, on row-major blocks, chosen by ``op``.

    * ``NN``: ``C (n x q) = A (n x p) @ B (p x q)``;
    * ``TN``: ``C (p x q) = A.T @ B`` for ``A (n x p)``, ``B (n x q)``;
    * ``NT``: ``C (n x q) = A @ B.T`` for ``A (n x p)``, ``B (q x p)``.

    ``n`` is always the number of rows of the chunk.  One function for the
    three: each compiled function costs a fixed ~0.1 s however small, and
    these are compiled for every dtype.
    """
    a = _address(A, a0)
    b = _address(B, b0)
    c = _address(C, c0)
    # Row-major C = op(A) op(B) is Fortran-order C.T = op(B).T op(A).T.
    if op == NN:
        _gemm(C.itemsize, _N, _N, q, n, p, b, q, a, p, c, q)
    elif op == TN:
        _gemm(C.itemsize, _N, _T, q, p, n, b, q, a, p, c, q)
    else:
        _gemm(C.itemsize, _T, _N, q, n, p, b, p, a, p, c, q)


@jit(from_python=False)
def loop_product(op, n, p, q, A, a0, B, b0, C, c0):
    """:func:`product` as plain loops, for chunks of a few rows.

    Correct for any ``n``; faster than BLAS up to :data:`SMALL_ROWS` rows,
    where BLAS call overhead and its skinny-shape kernels cost more than the
    arithmetic.
    """
    # Slices, not offset arithmetic: indices then start at 0 and the loops
    # vectorise (numba's negative-index wraparound folds away).
    if op == NN:
        for i in range(n):
            c = C[c0 + i * q : c0 + (i + 1) * q]
            a = A[a0 + i * p : a0 + (i + 1) * p]
            c[:] = 0.0
            for r in range(p):
                b = B[b0 + r * q : b0 + (r + 1) * q]
                ar = a[r]
                for j in range(q):
                    c[j] += ar * b[j]
    elif op == TN:
        for r in range(p):
            c = C[c0 + r * q : c0 + (r + 1) * q]
            for i in range(n):
                b = B[b0 + i * q : b0 + (i + 1) * q]
                a = A[a0 + i * p + r]
                if i == 0:
                    for j in range(q):
                        c[j] = a * b[j]
                else:
                    for j in range(q):
                        c[j] += a * b[j]
    else:
        for i in range(n):
            a = A[a0 + i * p : a0 + (i + 1) * p]
            c = C[c0 + i * q : c0 + (i + 1) * q]
            for r in range(q):
                b = B[b0 + r * p : b0 + (r + 1) * p]
                acc = 0.0
                for j in range(p):
                    acc += a[j] * b[j]
                c[r] = acc


#: :data:`PRODUCT` codes.
BLAS = 0
LOOPS = 1


def _product_argtypes(dtype):
    """``(op, n, p, q, A, a0, B, b0, C, c0)``: flat arrays of ``dtype``."""
    int64 = types.int64
    vector = array_type(dtype)
    return (int64, int64, int64, int64, vector, int64, vector, int64, vector, int64)


#: The products of a layer, by code: ``BLAS`` (:func:`product`) or ``LOOPS``
#: (:func:`loop_product`).
PRODUCT = KernelTable(
    _product_argtypes, types.none, {BLAS: product, LOOPS: loop_product}
)
