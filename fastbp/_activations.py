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

The kernels dispatch on an integer code per layer; :data:`HIDDEN_ACTIVATIONS`
maps the public names to those codes.
"""

import math

import numpy as np

from ._jit import jit

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


@jit()
def activation_forward(code, z, zpre):
    """Apply the activation ``code`` to the flat block ``z`` in place.

    ``zpre`` receives a copy of the pre-activation for GELU layers and is not
    touched otherwise (pass an empty array).
    """
    m = z.shape[0]
    if code == LOGISTIC:
        for k in range(m):
            z[k] = 1.0 / (1.0 + math.exp(-z[k]))
    elif code == TANH:
        for k in range(m):
            z[k] = math.tanh(z[k])
    elif code == RELU:
        for k in range(m):
            if not z[k] > 0.0:
                z[k] = 0.0
    elif code == LEAKY_RELU:
        for k in range(m):
            if not z[k] > 0.0:
                z[k] *= LEAKY_SLOPE
    elif code == ELU:
        for k in range(m):
            if not z[k] > 0.0:
                z[k] = math.expm1(z[k])
    elif code == SOFTPLUS:
        for k in range(m):
            v = z[k]
            # log(1 + e^v) = max(v, 0) + log1p(e^-|v|), overflow-free
            z[k] = max(v, 0.0) + math.log1p(math.exp(-abs(v)))
    elif code == GELU:
        for k in range(m):
            v = z[k]
            zpre[k] = v
            z[k] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))
    # IDENTITY: nothing to do


@jit()
def activation_derivative_from_output(code, y, zpre, delta):
    """Multiply the flat block ``delta`` in place by ``f'(z)``, from the output ``y``.

    ``zpre`` is read for GELU only.
    """
    m = delta.shape[0]
    if code == LOGISTIC:
        for k in range(m):
            delta[k] *= y[k] * (1.0 - y[k])
    elif code == TANH:
        for k in range(m):
            delta[k] *= 1.0 - y[k] * y[k]
    elif code == RELU:
        for k in range(m):
            if not y[k] > 0.0:
                delta[k] = 0.0
    elif code == LEAKY_RELU:
        for k in range(m):
            if not y[k] > 0.0:
                delta[k] *= LEAKY_SLOPE
    elif code == ELU:
        for k in range(m):
            if not y[k] > 0.0:
                delta[k] *= y[k] + 1.0
    elif code == SOFTPLUS:
        for k in range(m):
            # sigmoid(z) = 1 - e^(-softplus(z)), precise near y = 0
            delta[k] *= -math.expm1(-y[k])
    elif code == GELU:
        for k in range(m):
            v = zpre[k]
            cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * v * v)
            delta[k] *= cdf + v * pdf
    # IDENTITY: f' = 1


def activation_codes(names):
    """Map a sequence of activation names to an int64 array of kernel codes."""
    return np.array([HIDDEN_ACTIVATIONS[name] for name in names], dtype=np.int64)
