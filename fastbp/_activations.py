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
def activation_forward(code, Z, Zpre):
    """Apply the activation ``code`` to ``Z`` in place.

    ``Zpre`` receives a copy of the pre-activation for GELU layers and is not
    touched otherwise (pass an empty array).
    """
    n, m = Z.shape
    if code == IDENTITY:
        return
    if code == LOGISTIC:
        for i in range(n):
            for j in range(m):
                Z[i, j] = 1.0 / (1.0 + math.exp(-Z[i, j]))
    elif code == TANH:
        for i in range(n):
            for j in range(m):
                Z[i, j] = math.tanh(Z[i, j])
    elif code == RELU:
        for i in range(n):
            for j in range(m):
                if not Z[i, j] > 0.0:
                    Z[i, j] = 0.0
    elif code == LEAKY_RELU:
        for i in range(n):
            for j in range(m):
                if not Z[i, j] > 0.0:
                    Z[i, j] *= LEAKY_SLOPE
    elif code == ELU:
        for i in range(n):
            for j in range(m):
                if not Z[i, j] > 0.0:
                    Z[i, j] = math.expm1(Z[i, j])
    elif code == SOFTPLUS:
        for i in range(n):
            for j in range(m):
                z = Z[i, j]
                # log(1 + e^z) = max(z, 0) + log1p(e^-|z|), overflow-free
                Z[i, j] = max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    elif code == GELU:
        for i in range(n):
            for j in range(m):
                z = Z[i, j]
                Zpre[i, j] = z
                Z[i, j] = 0.5 * z * (1.0 + math.erf(z * _INV_SQRT2))


@jit()
def activation_derivative_from_output(code, Y, Zpre, delta):
    """Multiply ``delta`` in place by ``f'(z)``, computed from the output ``Y``.

    ``Zpre`` is read for GELU only.
    """
    n, m = delta.shape
    if code == IDENTITY:
        return
    if code == LOGISTIC:
        for i in range(n):
            for j in range(m):
                y = Y[i, j]
                delta[i, j] *= y * (1.0 - y)
    elif code == TANH:
        for i in range(n):
            for j in range(m):
                y = Y[i, j]
                delta[i, j] *= 1.0 - y * y
    elif code == RELU:
        for i in range(n):
            for j in range(m):
                if not Y[i, j] > 0.0:
                    delta[i, j] = 0.0
    elif code == LEAKY_RELU:
        for i in range(n):
            for j in range(m):
                if not Y[i, j] > 0.0:
                    delta[i, j] *= LEAKY_SLOPE
    elif code == ELU:
        for i in range(n):
            for j in range(m):
                y = Y[i, j]
                if not y > 0.0:
                    delta[i, j] *= y + 1.0
    elif code == SOFTPLUS:
        for i in range(n):
            for j in range(m):
                # sigmoid(z) = 1 - e^(-softplus(z)), precise near y = 0
                delta[i, j] *= -math.expm1(-Y[i, j])
    elif code == GELU:
        for i in range(n):
            for j in range(m):
                z = Zpre[i, j]
                cdf = 0.5 * (1.0 + math.erf(z * _INV_SQRT2))
                pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
                delta[i, j] *= cdf + z * pdf


def activation_codes(names):
    """Map a sequence of activation names to an int64 array of kernel codes."""
    return np.array([HIDDEN_ACTIVATIONS[name] for name in names], dtype=np.int64)
