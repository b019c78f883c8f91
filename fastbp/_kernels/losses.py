"""Losses paired with their output activations.

Each loss is matched with the output activation that makes it the canonical
link, so that the derivative of the loss with respect to the output
*pre-activation* collapses to

    delta = y_hat - y

for every pair below.  The loss values are computed from the pre-activation
``z`` in a numerically stable way (log-sum-exp, softplus), and each value is
exactly the function whose gradient the kernels return.

=================  ==================  ============================================
loss               output activation   per-sample value
=================  ==================  ============================================
squared_error      identity            ``0.5 * sum_k (y_hat_k - y_k)**2``
log_loss           softmax             ``-sum_k y_k log softmax(z)_k``
binary_log_loss    logistic            ``sum_k y_k sp(-z_k) + (1 - y_k) sp(z_k)``
poisson            exp                 ``sum_k y_k log(y_k) - y_k z_k - y_k + e^z_k``
=================  ==================  ============================================

(``sp`` is softplus; ``y log y`` is 0 at ``y = 0``; the last row is half the
Poisson deviance, as in scikit-learn.)  The data loss of a batch is the
``sample_weight``-weighted mean of the per-sample values.

The value scikit-learn *reports* differs in two places: squared error is
averaged over the outputs (``0.5 * mean_k``), and the log-losses are taken of
probabilities clipped to ``[eps, 1 - eps]`` of the dtype (``LOSS_FUNCTIONS``
in ``sklearn/neural_network/_base.py``).  Its stopping rule, adaptive learning
rate and L-BFGS line search decide on that value, so the estimators train with
the reported variant ``code + REPORTED`` of each loss: the same prediction and
the same delta ``y_hat - y`` (scikit-learn's gradient), with scikit-learn's
value.  ``loss_and_gradients`` uses the plain codes, whose value is the
function the delta is the gradient of.

Each loss is a pair of kernels, ``<loss>_output`` and ``<loss>_delta``; the
tables :data:`OUTPUT` and :data:`DELTA` map codes to them, and the training
kernels call a network's pair by address (:class:`fastbp._numba.calls.KernelTable`).
"""

import math

import numpy as np
from numba import types as _numba_types

from .._numba import KernelTable, array_type, jit

SQUARED_ERROR = 0
LOG_LOSS = 1
BINARY_LOG_LOSS = 2
POISSON = 3
#: Added to a loss code: the value scikit-learn reports (same y_hat and delta).
REPORTED = 4

#: Public name -> kernel code.
LOSSES = {
    "squared_error": SQUARED_ERROR,
    "log_loss": LOG_LOSS,
    "binary_log_loss": BINARY_LOG_LOSS,
    "poisson": POISSON,
}

#: The output activation matched to each loss (scikit-learn's names).
OUTPUT_ACTIVATION = {
    "squared_error": "identity",
    "log_loss": "softmax",
    "binary_log_loss": "logistic",
    "poisson": "exp",
}


@jit(inline=True)
def _softplus(z):
    """``log(1 + exp(z))`` without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


#: ``np.finfo(dtype).eps`` of float32 and float64, which scikit-learn clips
#: probabilities to.  The kernels take the one of their dtype as
#: ``z.dtype.type(...)``: ``np.finfo`` inside a kernel compiles two of numba's
#: helper functions per dtype (~0.1 s of a first fit).
_EPS_32 = float(np.finfo(np.float32).eps)
_EPS_64 = float(np.finfo(np.float64).eps)


@jit(inline=True)
def _clip_probability(p, eps):
    """``p`` clipped to ``[eps, 1 - eps]`` as ``np.clip`` does (NaN stays NaN)."""
    if p < eps:
        return eps
    if p > 1.0 - eps:
        return 1.0 - eps
    return p


def _output_argtypes(dtype):
    """``(z, n_out)``: a flat row-major block of output pre-activations."""
    return (array_type(dtype), _numba_types.int64)


def _delta_argtypes(dtype):
    """``(z, n_out, Y, sample_weight, rows, delta, reported)``."""
    return (
        array_type(dtype),
        _numba_types.int64,
        array_type(dtype, 2),
        array_type(dtype),
        array_type(np.int64),
        array_type(dtype),
        _numba_types.boolean,
    )


# Each loss is a pair of kernels.  ``<loss>_output(z, n_out)`` turns the
# output pre-activations ``z`` (a flat row-major block of rows of ``n_out``)
# into predictions ``y_hat`` in place.  ``<loss>_delta(z, n_out, Y,
# sample_weight, rows, delta, reported)`` does the same for one chunk and
# writes ``delta = sample_weight * (y_hat - y)`` (row-major), where row ``i``
# of ``z`` is sample ``rows[i]`` of ``Y`` and ``sample_weight``; it returns
# ``sum_i sample_weight_i * loss_i``, the value scikit-learn reports when
# ``reported`` (see the module docstring).


@jit(inline=True)
def _row(z, n_out, Y, sample_weight, rows, delta, i):
    """Row ``i`` of a chunk: its weight and its slices of ``z``, ``delta``, ``Y``."""
    r = rows[i]
    lo = i * n_out
    return sample_weight[r], z[lo : lo + n_out], delta[lo : lo + n_out], Y[r]


@jit(from_python=False)
def squared_error_output(z, n_out):
    pass  # identity


@jit(from_python=False)
def squared_error_delta(z, n_out, Y, sample_weight, rows, delta, reported):
    loss_sum = 0.0
    for i in range(rows.shape[0]):
        w, zi, di, yi = _row(z, n_out, Y, sample_weight, rows, delta, i)
        loss_i = 0.0
        for j in range(n_out):
            d = zi[j] - yi[j]
            loss_i += d * d
            di[j] = w * d
        loss_i *= 0.5 / n_out if reported else 0.5
        loss_sum += w * loss_i
    return loss_sum


@jit(from_python=False)
def log_loss_output(z, n_out):
    for r in range(0, z.shape[0], n_out):
        row = z[r : r + n_out]
        zmax = row[0]
        for j in range(1, n_out):
            if row[j] > zmax:  # max() is a function of its own in numba
                zmax = row[j]
        total = 0.0
        for j in range(n_out):
            e = math.exp(row[j] - zmax)
            row[j] = e
            total += e
        inv = 1.0 / total
        for j in range(n_out):
            row[j] *= inv


@jit(from_python=False)
def log_loss_delta(z, n_out, Y, sample_weight, rows, delta, reported):
    eps = z.dtype.type(_EPS_32 if z.itemsize == 4 else _EPS_64)
    loss_sum = 0.0
    for i in range(rows.shape[0]):
        w, zi, di, yi = _row(z, n_out, Y, sample_weight, rows, delta, i)
        loss_i = 0.0
        zmax = zi[0]
        for j in range(1, n_out):
            if zi[j] > zmax:
                zmax = zi[j]
        total = 0.0
        for j in range(n_out):
            total += math.exp(zi[j] - zmax)
        lse = zmax + math.log(total)
        for j in range(n_out):
            y = yi[j]
            if y != 0.0 and reported:
                p = _clip_probability(math.exp(zi[j] - zmax) / total, eps)
                loss_i -= y * math.log(p)
            elif y != 0.0:
                loss_i -= y * (zi[j] - lse)
            p = math.exp(zi[j] - lse)
            zi[j] = p
            di[j] = w * (p - y)
        loss_sum += w * loss_i
    return loss_sum


@jit(from_python=False)
def binary_log_loss_output(z, n_out):
    for k in range(z.shape[0]):
        z[k] = 1.0 / (1.0 + math.exp(-z[k]))


@jit(from_python=False)
def binary_log_loss_delta(z, n_out, Y, sample_weight, rows, delta, reported):
    eps = z.dtype.type(_EPS_32 if z.itemsize == 4 else _EPS_64)
    loss_sum = 0.0
    for i in range(rows.shape[0]):
        w, zi, di, yi = _row(z, n_out, Y, sample_weight, rows, delta, i)
        loss_i = 0.0
        for j in range(n_out):
            v = zi[j]
            y = yi[j]
            p = 1.0 / (1.0 + math.exp(-v))
            if reported:
                q = _clip_probability(p, eps)
                if y != 0.0:
                    loss_i -= y * math.log(q)
                if y != 1.0:
                    loss_i -= (1.0 - y) * math.log(1.0 - q)
            else:
                # -log(p) = sp(-v), -log(1 - p) = sp(v)
                loss_i += y * _softplus(-v) + (1.0 - y) * _softplus(v)
            zi[j] = p
            di[j] = w * (p - y)
        loss_sum += w * loss_i
    return loss_sum


@jit(from_python=False)
def poisson_output(z, n_out):
    for k in range(z.shape[0]):
        z[k] = math.exp(z[k])


@jit(from_python=False)
def poisson_delta(z, n_out, Y, sample_weight, rows, delta, reported):
    loss_sum = 0.0
    for i in range(rows.shape[0]):
        w, zi, di, yi = _row(z, n_out, Y, sample_weight, rows, delta, i)
        loss_i = 0.0
        for j in range(n_out):
            v = zi[j]
            y = yi[j]
            mu = math.exp(v)
            if reported:  # scikit-learn's xlogy(y, y / mu) - y + mu
                if y != 0.0:
                    loss_i += y * math.log(y / mu)
                loss_i += mu - y
            else:
                if y > 0.0:
                    loss_i += y * math.log(y)
                loss_i += mu - y * v - y
            zi[j] = mu
            di[j] = w * (mu - y)
        loss_sum += w * loss_i
    return loss_sum


#: Loss code -> output kernel (prediction), called by address.
OUTPUT = KernelTable(
    _output_argtypes,
    _numba_types.none,
    {
        SQUARED_ERROR: squared_error_output,
        LOG_LOSS: log_loss_output,
        BINARY_LOG_LOSS: binary_log_loss_output,
        POISSON: poisson_output,
    },
)
#: Loss code -> loss-and-delta kernel (training), called by address.
DELTA = KernelTable(
    _delta_argtypes,
    _numba_types.float64,
    {
        SQUARED_ERROR: squared_error_delta,
        LOG_LOSS: log_loss_delta,
        BINARY_LOG_LOSS: binary_log_loss_delta,
        POISSON: poisson_delta,
    },
)
