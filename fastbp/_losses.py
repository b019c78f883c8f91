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
"""

import math

import numpy as np

from ._jit import jit

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


@jit(from_python=False)
def _softplus(z):
    """``log(1 + exp(z))`` without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@jit(from_python=False)
def _clip_probability(p, eps):
    """``p`` clipped to ``[eps, 1 - eps]`` as ``np.clip`` does (NaN stays NaN)."""
    if p < eps:
        return eps
    if p > 1.0 - eps:
        return 1.0 - eps
    return p


@jit()
def output_activation(loss_code, z, n_out):
    """Turn output pre-activations into predictions ``y_hat``, in place.

    ``z`` is a flat row-major block of rows of ``n_out`` outputs.
    """
    loss_code = loss_code % REPORTED
    if loss_code == LOG_LOSS:
        for r in range(0, z.shape[0], n_out):
            row = z[r : r + n_out]
            zmax = row[0]
            for j in range(1, n_out):
                zmax = max(zmax, row[j])
            total = 0.0
            for j in range(n_out):
                e = math.exp(row[j] - zmax)
                row[j] = e
                total += e
            inv = 1.0 / total
            for j in range(n_out):
                row[j] *= inv
    elif loss_code == BINARY_LOG_LOSS:
        for k in range(z.shape[0]):
            z[k] = 1.0 / (1.0 + math.exp(-z[k]))
    elif loss_code == POISSON:
        for k in range(z.shape[0]):
            z[k] = math.exp(z[k])
    # SQUARED_ERROR: identity


@jit()
def output_loss_and_delta(loss_code, z, n_out, Y, sample_weight, rows, delta):
    """Loss and output delta of one chunk.

    Parameters
    ----------
    loss_code : int
        One of the codes in :data:`LOSSES`, plus ``REPORTED`` for the
        value scikit-learn reports.
    z : ndarray of shape (n_rows * n_outputs,)
        Output pre-activations, row-major; overwritten with the predictions
        ``y_hat``.
    n_out : int
        Number of outputs.
    Y : ndarray of shape (n_samples, n_outputs)
        All targets; row ``rows[i]`` belongs to row ``i`` of ``z``.
    sample_weight : ndarray of shape (n_samples,)
        All sample weights.
    rows : ndarray of int64
        Sample indices of the chunk.
    delta : ndarray of shape (n_rows * n_outputs,)
        Receives ``sample_weight * (y_hat - y)``, row-major.

    Returns
    -------
    loss_sum : float
        ``sum_i sample_weight_i * loss_i`` over the chunk.

    """
    reported = loss_code >= REPORTED
    loss_code = loss_code % REPORTED
    eps = np.finfo(z.dtype).eps
    loss_sum = 0.0
    for i in range(rows.shape[0]):
        r = rows[i]
        w = sample_weight[r]
        zi = z[i * n_out : (i + 1) * n_out]
        di = delta[i * n_out : (i + 1) * n_out]
        yi = Y[r]
        loss_i = 0.0
        if loss_code == SQUARED_ERROR:
            for j in range(n_out):
                d = zi[j] - yi[j]
                loss_i += d * d
                di[j] = w * d
            loss_i *= 0.5 / n_out if reported else 0.5
        elif loss_code == LOG_LOSS:
            zmax = zi[0]
            for j in range(1, n_out):
                zmax = max(zmax, zi[j])
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
        elif loss_code == BINARY_LOG_LOSS:
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
        else:  # POISSON
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
