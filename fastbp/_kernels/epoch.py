"""One compiled call per epoch of mini-batch training.

:func:`run_epoch` receives the epoch's sample order (drawn in Python from the
estimator's RandomState, as scikit-learn shuffles), walks the mini-batches
``order[0:b], order[b:2b], ...``, and for each one computes the raw chunk
gradients (:func:`fastbp._kernels.backprop.batch_gradients`), then finishes, clips
and steps in one block-wise pass (:func:`fastbp._kernels.update.finish_and_step`; two
passes when clipping).  Nothing per batch returns to the interpreter; stopping
rules, verbose output, callbacks and Ctrl-C act between calls.

A non-finite batch loss is reported through the returned status; the epoch
still runs to its end, as scikit-learn's does (with early stopping, training
goes on after a divergence and the best weights are restored).
"""

import math
from collections import namedtuple

from .._numba import ORCHESTRATOR, bundle, call_separately, jit, smaller
from .backprop import batch_gradients
from .boundary import check_epoch, checked
from .optimizers import (
    ADAM_LR_T,
    BETA_1,
    BETA_2,
    LEARNING_RATE,
    adam_learning_rate,
)
from .update import finish_and_step, inverse_weight_sum

#: The arrays of one training call that :func:`run_epoch` takes: the
#: training data, the network, the flat parameters, the chunks' workspace, the
#: parameter blocks, the optimizer, the finished-gradient scratch and the
#: per-layer gradient norms.  They stay the same from epoch to epoch; what
#: changes (the sample order, Adam's update count) comes as arguments.
EpochBundle = bundle(
    namedtuple(
        "EpochBundle",
        ["data", "net", "params", "work", "blocks", "opt", "grad",
         "layer_grad_norms"],
    )
)  # fmt: skip

#: Status codes returned by :func:`run_epoch`.
OK = 0
NON_FINITE_LOSS = 1


@checked(check_epoch)
@jit(opt=ORCHESTRATOR)
def run_epoch(
    bundle,
    order,
    batch_size,
    n_chunks,
    adam,
    sgd,
    adam_t,
    alpha,
    max_grad_norm,
    parallel_chunks,
    parallel_blocks,
    dropout,
):
    """Train one epoch in place.

    Compiled for the dtype of the bundle's float arrays (all one dtype) and
    the configuration's switches.

    Parameters
    ----------
    bundle : EpochBundle
        ``data`` (:class:`fastbp._kernels.backprop.Data`), ``net``
        (:class:`fastbp._kernels.backprop.Net`), ``params`` (the flat parameter
        vector, updated in place), ``work`` (a
        :class:`fastbp._kernels.backprop.Workspace` sized for ``n_chunks`` chunks of
        a full batch; the shorter last batch fits in it), ``blocks``
        (:class:`fastbp._kernels.update.Blocks`), ``opt``
        (:class:`fastbp._kernels.update.Optimizer`, updated in place), ``grad``
        (scratch for the finished gradient) and ``layer_grad_norms``
        (receives the sum over batches of each layer's coefficient-gradient
        L2 norm, before clipping).
    order : ndarray of int64
        The epoch's sample order; batch ``k`` is ``order[k b : (k + 1) b]``.
    batch_size : int
    n_chunks : int
        Chunks per full batch (``n_chunks_for`` in :mod:`fastbp._kernels.backprop`).
    adam, sgd : None or True
        Which optimizer: one is ``True``, the other ``None``; only that
        optimizer's code is compiled.
    adam_t : int
        Adam's update count so far.
    alpha : float
        L2 penalty.
    max_grad_norm : None or float
        Clipping threshold; ``None`` compiles and runs no clipping.
    parallel_chunks, parallel_blocks : None or True
        Whether chunks and parameter blocks run in parallel; ``None`` compiles
        and runs the serial code only.
    dropout : fastbp._kernels.backprop.Dropout or None
        Inverted dropout of the hidden layers; ``None`` compiles no dropout
        code.

    Returns
    -------
    loss_sum : float
        ``sum over batches of batch_loss * batch_length``.
    n_batches : int
        Number of batches.
    status : int
        :data:`OK`, or :data:`NON_FINITE_LOSS` if any batch loss was not
        finite.
    adam_t : int
        Adam's update counter after the epoch.

    """
    data, net, params, work, blocks, opt, grad, layer_grad_norms = bundle
    n = order.shape[0]
    layer_sq = work.layer_sq
    layer_grad_norms[:] = 0.0
    loss_sum = 0.0
    n_batches = 0
    status = OK
    for start in range(0, n, batch_size):
        stop = smaller(start + batch_size, n)
        rows = order[start:stop]
        batch_n_chunks = smaller(n_chunks, stop - start)
        if adam is not None:
            h = opt.hyper
            h[ADAM_LR_T] = adam_learning_rate(
                h[LEARNING_RATE], h[BETA_1], h[BETA_2], adam_t + 1
            )
        data_loss, sw_sum = call_separately(
            batch_gradients,
            (data, net, params, rows, work, batch_n_chunks, parallel_chunks, dropout),
        )
        if not math.isfinite(data_loss):
            status = NON_FINITE_LOSS
        inv_sw = inverse_weight_sum(sw_sum)
        if max_grad_norm is None:
            sq_w, sq_g = call_separately(
                finish_and_step,
                (None, None, adam, sgd, blocks, work.chunk_grads, batch_n_chunks,
                 params, grad, alpha, inv_sw, opt, 1.0, layer_sq, parallel_blocks),
            )  # fmt: skip
        else:
            sq_w, sq_g = call_separately(
                finish_and_step,
                (True, None, None, None, blocks, work.chunk_grads, batch_n_chunks,
                 params, grad, alpha, inv_sw, opt, 1.0, layer_sq, parallel_blocks),
            )  # fmt: skip
            # Rescale to a global L2 norm of at most max_grad_norm, then step.
            norm = math.sqrt(sq_g)
            scale = max_grad_norm / norm if norm > max_grad_norm else 1.0
            call_separately(
                finish_and_step,
                (None, True, adam, sgd, blocks, work.chunk_grads, batch_n_chunks,
                 params, grad, alpha, inv_sw, opt, scale, layer_sq, parallel_blocks),
            )  # fmt: skip
        if adam is not None:
            adam_t += 1
        # The loss is evaluated at the weights before this batch's step.
        loss_sum += (data_loss + 0.5 * alpha * sq_w) * inv_sw * (stop - start)
        for l in range(layer_sq.shape[0]):
            layer_grad_norms[l] += math.sqrt(layer_sq[l])
        n_batches += 1
    return loss_sum, n_batches, status, adam_t
