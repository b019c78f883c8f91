"""One compiled call per epoch of mini-batch training.

:func:`run_epoch` receives the epoch's sample order (drawn in Python from the
estimator's RandomState, as scikit-learn shuffles), walks the mini-batches
``order[0:b], order[b:2b], ...``, and for each one computes the batch gradient
(:func:`fastbp._backprop.batch_loss_grad`), optionally clips it, and applies
the optimizer step in place.  Nothing per batch returns to the interpreter;
stopping rules, verbose output, callbacks and Ctrl-C act between calls.

A non-finite batch loss stops the epoch at once, before that batch's update,
and is reported through the returned status.
"""

import math

from ._backprop import batch_loss_grad
from ._jit import jit
from ._optimizers import ADAM, adam_step, clip_grad_norm, sgd_step

#: Status codes returned by :func:`run_epoch`.
OK = 0
NON_FINITE_LOSS = 1


@jit()
def run_epoch(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    Y,
    sample_weight,
    order,
    batch_size,
    params,
    layer_units,
    coef_off,
    intercept_off,
    hidden_acts,
    loss_code,
    alpha,
    solver,
    learning_rate,
    momentum,
    nesterov,
    beta_1,
    beta_2,
    epsilon,
    adam_t,
    state_1,
    state_2,
    max_grad_norm,
    grad,
    ws,
    a_off,
    z_off,
    d_off,
    chunk_grads,
    chunk_losses,
    n_chunks,
    layer_grad_norms,
):
    """Train one epoch in place.

    ``state_1``/``state_2`` are the SGD velocity (``state_2`` unused) or Adam's
    first and second moments.  ``ws``/``chunk_grads``/``n_chunks`` are sized
    for full batches (the shorter last batch fits in them).
    ``layer_grad_norms`` receives the sum over batches of each layer's
    coefficient-gradient L2 norm (before clipping).

    Returns
    -------
    loss_sum : float
        ``sum over batches of batch_loss * batch_length``.
    n_batches : int
        Number of batches whose update was applied.
    status : int
        :data:`OK` or :data:`NON_FINITE_LOSS`.
    adam_t : int
        Adam's update counter after the epoch.
    """
    n = order.shape[0]
    n_layers = layer_units.shape[0] - 1
    layer_grad_norms[:] = 0.0
    loss_sum = 0.0
    n_batches = 0
    start = 0
    while start < n:
        stop = min(start + batch_size, n)
        rows = order[start:stop]
        # The last, shorter batch reuses the same chunk capacity.
        batch_n_chunks = min(n_chunks, stop - start)
        loss = batch_loss_grad(
            X,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            Y,
            sample_weight,
            rows,
            params,
            layer_units,
            coef_off,
            intercept_off,
            hidden_acts,
            loss_code,
            alpha,
            ws,
            a_off,
            z_off,
            d_off,
            chunk_grads,
            chunk_losses,
            batch_n_chunks,
            grad,
        )
        if not math.isfinite(loss):
            return loss_sum, n_batches, NON_FINITE_LOSS, adam_t
        loss_sum += loss * (stop - start)
        for l in range(n_layers):
            sq = 0.0
            lo = coef_off[l]
            hi = lo + layer_units[l] * layer_units[l + 1]
            for k in range(lo, hi):
                sq += grad[k] * grad[k]
            layer_grad_norms[l] += math.sqrt(sq)
        if max_grad_norm > 0.0:
            clip_grad_norm(grad, max_grad_norm)
        if solver == ADAM:
            adam_t += 1
            adam_step(
                params, grad, state_1, state_2, adam_t, learning_rate, beta_1, beta_2, epsilon
            )
        else:
            sgd_step(params, grad, state_1, learning_rate, momentum, nesterov)
        n_batches += 1
        start = stop
    return loss_sum, n_batches, OK, adam_t
