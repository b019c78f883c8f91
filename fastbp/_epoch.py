"""One compiled call per epoch of mini-batch training.

:func:`run_epoch` receives the epoch's sample order (drawn in Python from the
estimator's RandomState, as scikit-learn shuffles), walks the mini-batches
``order[0:b], order[b:2b], ...``, and for each one computes the batch gradient,
optionally clips it, and applies the optimizer step in place.  Nothing per
batch returns to the interpreter; stopping rules, verbose output, callbacks
and Ctrl-C act between calls.

Per batch, the chunks run in parallel
(:func:`fastbp._backprop.batch_raw_loss_grad`), then one block-wise pass
(:func:`fastbp._backprop.finish_and_step`) reduces and normalises their
gradients and applies the step to each block while it is in cache; clipping
needs the global norm first, so it takes a second pass.

A non-finite batch loss stops the epoch at once, before that batch's update,
and is reported through the returned status.
"""

import math

import numpy as np

from ._backprop import (
    batch_raw_loss_grad,
    finish_and_step,
    inverse_weight_sum,
)
from ._jit import jit
from ._optimizers import (
    ADAM,
    ADAM_LR_T,
    BETA_1,
    BETA_2,
    LEARNING_RATE,
    adam_learning_rate,
)

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
    hyper,
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

    ``hyper`` holds the optimizer's hyperparameters (see
    :mod:`fastbp._optimizers`); ``state_1``/``state_2`` are the SGD velocity
    (``state_2`` unused) or Adam's moments; ``adam_t`` is Adam's update count
    so far.  ``ws``/``chunk_grads``/``n_chunks`` are sized for full batches
    (the shorter last batch fits in them).  ``max_grad_norm <= 0`` disables
    clipping.  ``layer_grad_norms`` receives the sum over batches of each
    layer's coefficient-gradient L2 norm (before clipping).

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
    layer_sq = np.empty(n_layers, dtype=np.float64)
    layer_grad_norms[:] = 0.0
    loss_sum = 0.0
    n_batches = 0
    start = 0
    while start < n:
        stop = min(start + batch_size, n)
        rows = order[start:stop]
        # The last, shorter batch reuses the same chunk capacity.
        batch_n_chunks = min(n_chunks, stop - start)
        if solver == ADAM:
            t = adam_t + 1
            hyper[ADAM_LR_T] = adam_learning_rate(
                hyper[LEARNING_RATE], hyper[BETA_1], hyper[BETA_2], t
            )
        data_loss, sw_sum = batch_raw_loss_grad(
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
            ws,
            a_off,
            z_off,
            d_off,
            chunk_grads,
            chunk_losses,
            batch_n_chunks,
        )
        if not math.isfinite(data_loss):
            return loss_sum, n_batches, NON_FINITE_LOSS, adam_t
        inv_sw = inverse_weight_sum(sw_sum)
        clip = max_grad_norm > 0.0
        # Without clipping, each block is finished and stepped in one pass;
        # clipping needs the global norm first, so it takes two.
        sq_w, sq_g = finish_and_step(
            chunk_grads,
            batch_n_chunks,
            params,
            layer_units,
            coef_off,
            intercept_off,
            alpha,
            inv_sw,
            grad,
            layer_sq,
            -1 if clip else solver,
            hyper,
            state_1,
            state_2,
            1.0,
        )
        loss = (data_loss + 0.5 * alpha * sq_w) * inv_sw
        if clip:
            # Rescale to a global L2 norm of at most max_grad_norm.
            norm = math.sqrt(sq_g)
            scale = max_grad_norm / norm if norm > max_grad_norm else 1.0
            finish_and_step(
                chunk_grads,
                # No chunk sums to reduce: step along the finished grad (typed,
                # not a literal 0, which numba would compile separately).
                np.int64(0),
                params,
                layer_units,
                coef_off,
                intercept_off,
                alpha,
                inv_sw,
                grad,
                layer_sq,
                solver,
                hyper,
                state_1,
                state_2,
                scale,
            )
        if solver == ADAM:
            adam_t += 1
        loss_sum += loss * (stop - start)
        for l in range(n_layers):
            layer_grad_norms[l] += math.sqrt(layer_sq[l])
        n_batches += 1
        start = stop
    return loss_sum, n_batches, OK, adam_t
