"""Slow, obvious numpy references for every formula the kernels compute.

Every test that needs an oracle imports it from here (as stumpy's
``tests/naive.py``): activations and their derivatives (from ``z``, not from
the output, so they are independent of the kernels' trick), the full-batch
objective and its gradient, the optimizer steps in closed form, and one
central-difference helper.
"""

import numpy as np
from scipy.special import erf


def ref_act(name, z):
    return {
        "identity": lambda: z,
        "logistic": lambda: 1 / (1 + np.exp(-z)),
        "tanh": lambda: np.tanh(z),
        "relu": lambda: np.maximum(z, 0),
        "leaky_relu": lambda: np.where(z > 0, z, 0.01 * z),
        "elu": lambda: np.where(z > 0, z, np.expm1(z)),
        "softplus": lambda: np.logaddexp(0, z),
        "gelu": lambda: 0.5 * z * (1 + erf(z / np.sqrt(2))),
    }[name]()


def ref_dact(name, z):
    """Derivative from z (not from the output): an independent oracle."""
    s = 1 / (1 + np.exp(-z))
    return {
        "identity": lambda: np.ones_like(z),
        "logistic": lambda: s * (1 - s),
        "tanh": lambda: 1 / np.cosh(z) ** 2,
        "relu": lambda: (z > 0).astype(z.dtype),
        "leaky_relu": lambda: np.where(z > 0, 1.0, 0.01).astype(z.dtype),
        "elu": lambda: np.where(z > 0, 1.0, np.exp(z)).astype(z.dtype),
        "softplus": lambda: s,
        "gelu": lambda: (
            0.5 * (1 + erf(z / np.sqrt(2)))
            + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
        ),
    }[name]()


_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def ref_dropout_scale(seed, epoch, n_samples, layer, n_units, rate):
    """Inverted-dropout multipliers (0 or ``1 / (1 - rate)``) of one layer.

    Row ``i`` is sample ``i``; the same splitmix64 hash of (seed, epoch,
    sample, layer, unit) as the kernels, written out in numpy (uint64 wraps).
    """
    sample = np.arange(n_samples, dtype=np.uint64)[:, None]
    unit = np.arange(n_units, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        h = _mix64(np.uint64(seed) ^ (np.uint64(epoch) + _GOLDEN))
        h = _mix64(h ^ (sample + _GOLDEN))
        h = _mix64(h ^ (np.uint64(layer) + _GOLDEN))
        h = _mix64(h ^ (unit + _GOLDEN))
    u = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.where(u >= rate, 1.0 / (1.0 - rate), 0.0)


def ref_loss_grad(X, Y, sw, coefs, intercepts, acts, loss, alpha, scales=None):
    """Objective and gradient; ``scales[i]``: dropout multipliers of hidden
    layer ``i`` (rows x units), or None."""
    A = [X]
    Z = []
    for i, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
        z = A[-1] @ W + b
        Z.append(z)
        if i < len(coefs) - 1:
            a = ref_act(acts[i], z)
            A.append(a if scales is None else a * scales[i])
        else:
            A.append(z)
    z = Z[-1]
    if loss == "squared_error":
        yhat = z
        per = 0.5 * ((yhat - Y) ** 2).sum(1)
    elif loss == "log_loss":
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
        lse = lse + z.max(1, keepdims=True)
        yhat = np.exp(z - lse)
        per = -(Y * (z - lse)).sum(1)
    elif loss == "binary_log_loss":
        yhat = 1 / (1 + np.exp(-z))
        per = -(Y * np.log(yhat) + (1 - Y) * np.log(1 - yhat)).sum(1)
    else:
        yhat = np.exp(z)
        ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0)
        per = (ylogy - Y * z - Y + yhat).sum(1)
    swsum = sw.sum()
    value = (sw @ per + 0.5 * alpha * sum((W**2).sum() for W in coefs)) / swsum
    delta = (yhat - Y) * sw[:, None]
    cg, ig = [None] * len(coefs), [None] * len(coefs)
    for i in range(len(coefs) - 1, -1, -1):
        cg[i] = (A[i].T @ delta + alpha * coefs[i]) / swsum
        ig[i] = delta.sum(0) / swsum
        if i:
            delta = (delta @ coefs[i].T) * ref_dact(acts[i - 1], Z[i - 1])
            if scales is not None:
                delta = delta * scales[i - 1]
    return value, cg, ig


def central_differences(f, x, h=1e-6):
    """``df/dx`` of a scalar function of the 1-D float array ``x``, in place-safe.

    Each entry is perturbed by ``+h`` and ``-h`` in turn and restored, so ``f``
    may read ``x`` itself (e.g. a view into a model's weights).
    """
    grad = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        old = x[k]
        x[k] = old + h
        up = f(x)
        x[k] = old - h
        down = f(x)
        x[k] = old
        grad[k] = (up - down) / (2 * h)
    return grad


def sgd_step(p, g, v, lr, momentum, nesterov):
    """scikit-learn's SGD update in float64: returns ``(p, v)``."""
    v = momentum * v.astype(float) - lr * g
    if nesterov:
        return p + momentum * v - lr * g, v
    return p + v, v


def adam_step(p, g, m, v, t, lr, beta_1, beta_2, epsilon):
    """scikit-learn's Adam update at step ``t`` in float64: returns ``(p, m, v)``."""
    m = beta_1 * m.astype(float) + (1 - beta_1) * g
    v = beta_2 * v.astype(float) + (1 - beta_2) * g.astype(float) ** 2
    lr_t = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    return p - lr_t * m / (np.sqrt(v) + epsilon), m, v
