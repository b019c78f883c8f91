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
"""

import math

from ._jit import jit

SQUARED_ERROR = 0
LOG_LOSS = 1
BINARY_LOG_LOSS = 2
POISSON = 3

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


@jit()
def _softplus(z):
    """``log(1 + exp(z))`` without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@jit()
def output_activation(loss_code, Z):
    """Turn output pre-activations ``Z`` into predictions ``y_hat`` in place."""
    n, m = Z.shape
    if loss_code == SQUARED_ERROR:
        return
    if loss_code == LOG_LOSS:
        for i in range(n):
            zmax = Z[i, 0]
            for j in range(1, m):
                zmax = max(zmax, Z[i, j])
            total = 0.0
            for j in range(m):
                e = math.exp(Z[i, j] - zmax)
                Z[i, j] = e
                total += e
            inv = 1.0 / total
            for j in range(m):
                Z[i, j] *= inv
    elif loss_code == BINARY_LOG_LOSS:
        for i in range(n):
            for j in range(m):
                Z[i, j] = 1.0 / (1.0 + math.exp(-Z[i, j]))
    elif loss_code == POISSON:
        for i in range(n):
            for j in range(m):
                Z[i, j] = math.exp(Z[i, j])


@jit()
def output_loss_and_delta(loss_code, Z, Y, sample_weight, rows, delta):
    """Loss and output delta of one chunk.

    Parameters
    ----------
    loss_code : int
        One of the codes in :data:`LOSSES`.
    Z : ndarray of shape (n_rows, n_outputs)
        Output pre-activations; overwritten with the predictions ``y_hat``.
    Y : ndarray of shape (n_samples, n_outputs)
        All targets; row ``rows[i]`` belongs to row ``i`` of ``Z``.
    sample_weight : ndarray of shape (n_samples,)
        All sample weights.
    rows : ndarray of int64
        Sample indices of the chunk.
    delta : ndarray of shape (n_rows, n_outputs)
        Receives ``sample_weight * (y_hat - y)``.

    Returns
    -------
    loss_sum : float
        ``sum_i sample_weight_i * loss_i`` over the chunk.

    """
    n, m = Z.shape
    loss_sum = 0.0
    for i in range(n):
        r = rows[i]
        w = sample_weight[r]
        loss_i = 0.0
        if loss_code == SQUARED_ERROR:
            for j in range(m):
                d = Z[i, j] - Y[r, j]
                loss_i += d * d
                delta[i, j] = w * d
            loss_i *= 0.5
        elif loss_code == LOG_LOSS:
            zmax = Z[i, 0]
            for j in range(1, m):
                zmax = max(zmax, Z[i, j])
            total = 0.0
            for j in range(m):
                total += math.exp(Z[i, j] - zmax)
            lse = zmax + math.log(total)
            for j in range(m):
                y = Y[r, j]
                if y != 0.0:
                    loss_i -= y * (Z[i, j] - lse)
                p = math.exp(Z[i, j] - lse)
                Z[i, j] = p
                delta[i, j] = w * (p - y)
        elif loss_code == BINARY_LOG_LOSS:
            for j in range(m):
                z = Z[i, j]
                y = Y[r, j]
                # -log(p) = sp(-z), -log(1 - p) = sp(z)
                loss_i += y * _softplus(-z) + (1.0 - y) * _softplus(z)
                p = 1.0 / (1.0 + math.exp(-z))
                Z[i, j] = p
                delta[i, j] = w * (p - y)
        else:  # POISSON
            for j in range(m):
                z = Z[i, j]
                y = Y[r, j]
                mu = math.exp(z)
                if y > 0.0:
                    loss_i += y * math.log(y)
                loss_i += mu - y * z - y
                Z[i, j] = mu
                delta[i, j] = w * (mu - y)
        loss_sum += w * loss_i
    return loss_sum
