"""Bundles of arrays across the Python boundary: pack and unpack."""

import itertools

import numba
import numba.extending as _numba_extending
import numpy as np
from numba.core import cgutils as _numba_cgutils
from numba.core import types as _numba_types

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
