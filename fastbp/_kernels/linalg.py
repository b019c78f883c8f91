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
that calls BLAS (``_numba.gemm``) is compiled once for both dtypes.

Where training runs chunks of at most ``SMALL_ROWS`` rows (online learning)
the products are plain loops instead (:func:`loop_product`): BLAS call
overhead and its skinny-shape kernels cost more than the arithmetic there.
The two are the members of the kernel table :data:`PRODUCT`; a network calls
the one its workspace needs by address, so the loops are compiled only for
configurations that run them (every first fit compiled them before: ~0.6 s).
The choice depends on the batch size only, so results never depend on the
thread count.
"""

import numpy as np
from numba import types

from .._numba import KernelTable, array_type, jit
from .._numba.gemm import NOTRANS, TRANS, address, gemm, gemm_usable

#: Training chunks of at most this many rows multiply with loops
#: (:func:`loop_product`) rather than BLAS calls.
SMALL_ROWS = 4


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
    a = address(A, a0)
    b = address(B, b0)
    c = address(C, c0)
    # Row-major C = op(A) op(B) is Fortran-order C.T = op(B).T op(A).T.
    if op == NN:
        gemm(C.itemsize, NOTRANS, NOTRANS, q, n, p, b, q, a, p, c, q)
    elif op == TN:
        gemm(C.itemsize, NOTRANS, TRANS, q, p, n, b, q, a, p, c, q)
    else:
        gemm(C.itemsize, TRANS, NOTRANS, q, n, p, b, p, a, p, c, q)


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


@jit(from_python=False, allocates=True)
def dot_product(op, n, p, q, A, a0, B, b0, C, c0):
    """:func:`product` through ``np.dot`` on views of the blocks.

    numba's public path to BLAS, compiled once per dtype (``allocates``:
    numba's ``np.dot(a, b, out)`` returns ``out`` counted).  Used where
    ``fastbp._numba.gemm``'s internal is not usable.
    """
    if op == NN:
        np.dot(A[a0 : a0 + n * p].reshape((n, p)), B[b0 : b0 + p * q].reshape((p, q)),
               C[c0 : c0 + n * q].reshape((n, q)))  # fmt: skip
    elif op == TN:
        np.dot(A[a0 : a0 + n * p].reshape((n, p)).T,
               B[b0 : b0 + n * q].reshape((n, q)),
               C[c0 : c0 + p * q].reshape((p, q)))  # fmt: skip
    else:
        np.dot(A[a0 : a0 + n * p].reshape((n, p)),
               B[b0 : b0 + q * p].reshape((q, p)).T,
               C[c0 : c0 + n * q].reshape((n, q)))  # fmt: skip


#: :data:`PRODUCT` codes.
BLAS = 0
LOOPS = 1


def _product_argtypes(dtype):
    """``(op, n, p, q, A, a0, B, b0, C, c0)``: flat arrays of ``dtype``."""
    int64 = types.int64
    vector = array_type(dtype)
    return (int64, int64, int64, int64, vector, int64, vector, int64, vector, int64)


#: The products of a layer, by code: ``BLAS`` (:func:`product`, or
#: :func:`dot_product` without numba's gemm helper) or ``LOOPS``
#: (:func:`loop_product`).
PRODUCT = KernelTable(
    _product_argtypes,
    types.none,
    {BLAS: product if gemm_usable() else dot_product, LOOPS: loop_product},
)
