"""Hidden-layer activations: each forward and its derivative, side by side.

Backpropagation multiplies the incoming delta by ``f'(z)`` at every hidden
layer.  Wherever the math allows, ``f'`` is written in terms of the cached
forward *output* ``y = f(z)``, so the forward pass needs to keep nothing but
the activations it produced anyway:

==============  ===============================  ===============================
name            forward ``y = f(z)``             derivative ``f'(z)``
==============  ===============================  ===============================
identity        ``z``                            ``1``
logistic        ``1 / (1 + exp(-z))``            ``y (1 - y)``
tanh            ``tanh(z)``                      ``1 - y**2``
relu            ``max(z, 0)``                    ``[y > 0]``
leaky_relu      ``z if z > 0 else 0.01 z``       ``1 if y > 0 else 0.01``
elu             ``z if z > 0 else exp(z) - 1``   ``1 if y > 0 else y + 1``
softplus        ``log(1 + exp(z))``              ``1 - exp(-y)``
gelu            ``z Phi(z)``                     ``Phi(z) + z phi(z)`` (needs z)
==============  ===============================  ===============================

GELU is the one activation whose derivative cannot be recovered from its
output (it is not monotonic), so only GELU layers cache the pre-activation.

Each activation is a pair of small kernels, ``<name>_forward`` and
``<name>_derivative``.  :data:`HIDDEN_ACTIVATIONS` maps the public names to
integer codes, and the tables :data:`FORWARD` and :data:`DERIVATIVE` map
codes to kernels: a network holds the addresses of its layers' kernels, and
the training kernels call them through those (:class:`fastbp._numba.calls.KernelTable`),
so only the activations a process uses are ever compiled.
"""

import math

import numpy as np
from numba import types as _numba_types

from .._numba import KernelTable, array_type, jit

IDENTITY = 0
LOGISTIC = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
ELU = 5
SOFTPLUS = 6
GELU = 7

#: Public name -> kernel code, for hidden layers.
HIDDEN_ACTIVATIONS = {
    "identity": IDENTITY,
    "logistic": LOGISTIC,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "softplus": SOFTPLUS,
    "gelu": GELU,
}

#: Activations whose derivative needs the pre-activation ``z``.
NEEDS_PREACTIVATION = frozenset({"gelu"})

#: Slope of leaky_relu for negative inputs.
LEAKY_SLOPE = 0.01

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _forward_argtypes(dtype):
    """``(z, zpre)``: the flat block, the GELU pre-activation cache."""
    return (array_type(dtype), array_type(dtype))


def _derivative_argtypes(dtype):
    """``(y, zpre, delta)``: the block's outputs, GELU cache, its delta."""
    return (array_type(dtype), array_type(dtype), array_type(dtype))


# Each activation is a pair of kernels: ``*_forward(z, zpre)`` applies it to
# the flat block ``z`` in place (GELU also copies ``z`` into ``zpre``; the
# others leave the empty ``zpre`` alone), ``*_derivative(y, zpre, delta)``
# multiplies ``delta`` in place by f'(z), from the output ``y`` (GELU: from
# ``zpre``).


@jit(from_python=False)
def identity_forward(z, zpre):
    pass


@jit(from_python=False)
def identity_derivative(y, zpre, delta):
    pass  # f' = 1


@jit(from_python=False)
def logistic_forward(z, zpre):
    for k in range(z.shape[0]):
        z[k] = 1.0 / (1.0 + math.exp(-z[k]))


@jit(from_python=False)
def logistic_derivative(y, zpre, delta):
    for k in range(delta.shape[0]):
        delta[k] *= y[k] * (1.0 - y[k])


@jit(from_python=False)
def tanh_forward(z, zpre):
    for k in range(z.shape[0]):
        z[k] = math.tanh(z[k])


@jit(from_python=False)
def tanh_derivative(y, zpre, delta):
    for k in range(delta.shape[0]):
        delta[k] *= 1.0 - y[k] * y[k]


@jit(from_python=False)
def relu_forward(z, zpre):
    for k in range(z.shape[0]):
        if not z[k] > 0.0:
            z[k] = 0.0


@jit(from_python=False)
def relu_derivative(y, zpre, delta):
    for k in range(delta.shape[0]):
        if not y[k] > 0.0:
            delta[k] = 0.0


@jit(from_python=False)
def leaky_relu_forward(z, zpre):
    for k in range(z.shape[0]):
        if not z[k] > 0.0:
            z[k] *= LEAKY_SLOPE


@jit(from_python=False)
def leaky_relu_derivative(y, zpre, delta):
    for k in range(delta.shape[0]):
        if not y[k] > 0.0:
            delta[k] *= LEAKY_SLOPE


@jit(from_python=False)
def elu_forward(z, zpre):
    for k in range(z.shape[0]):
        if not z[k] > 0.0:
            z[k] = math.expm1(z[k])


@jit(from_python=False)
def elu_derivative(y, zpre, delta):
    for k in range(delta.shape[0]):
        if not y[k] > 0.0:
            delta[k] *= y[k] + 1.0


@jit(from_python=False)
def softplus_forward(z, zpre):
    for k in range(z.shape[0]):
        v = z[k]
        # log(1 + e^v) = max(v, 0) + log1p(e^-|v|), overflow-free
        z[k] = max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@jit(from_python=False)
def softplus_derivative(y, zpre, delta):
    for k in range(delta.shape[0]):
        # sigmoid(z) = 1 - e^(-softplus(z)), precise near y = 0
        delta[k] *= -math.expm1(-y[k])


@jit(from_python=False)
def gelu_forward(z, zpre):
    for k in range(z.shape[0]):
        v = z[k]
        zpre[k] = v
        z[k] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))


@jit(from_python=False)
def gelu_derivative(y, zpre, delta):
    for k in range(delta.shape[0]):
        v = zpre[k]
        cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
        pdf = _INV_SQRT_2PI * math.exp(-0.5 * v * v)
        delta[k] *= cdf + v * pdf


#: Code -> forward kernel, called by address from the training kernels.
FORWARD = KernelTable(
    _forward_argtypes,
    _numba_types.none,
    {
        IDENTITY: identity_forward,
        LOGISTIC: logistic_forward,
        TANH: tanh_forward,
        RELU: relu_forward,
        LEAKY_RELU: leaky_relu_forward,
        ELU: elu_forward,
        SOFTPLUS: softplus_forward,
        GELU: gelu_forward,
    },
)
#: Code -> derivative kernel, called by address from the training kernels.
DERIVATIVE = KernelTable(
    _derivative_argtypes,
    _numba_types.none,
    {
        IDENTITY: identity_derivative,
        LOGISTIC: logistic_derivative,
        TANH: tanh_derivative,
        RELU: relu_derivative,
        LEAKY_RELU: leaky_relu_derivative,
        ELU: elu_derivative,
        SOFTPLUS: softplus_derivative,
        GELU: gelu_derivative,
    },
)


def activation_codes(names):
    """Map a sequence of activation names to an int64 array of kernel codes."""
    return np.array([HIDDEN_ACTIVATIONS[name] for name in names], dtype=np.int64)
