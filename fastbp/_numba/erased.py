"""Calls across the dtype boundary: float arrays passed as their bytes."""

import numba
import numba.extending as _numba_extending
import numpy as np
from numba.core import cgutils as _numba_cgutils
from numba.core import types as _numba_types

from .calls import _PYTHON_KERNELS, call_pointer

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
