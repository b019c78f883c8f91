"""The update stage: finish a batch's gradient, clip it, step the optimizer.

After :func:`fastbp._kernels.backprop.batch_gradients`, each chunk of the batch has
left its raw gradient ``sum_i w_i dloss_i/dparams`` in its own buffer.  One
pass over the flat parameter vector, in blocks that never straddle a layer,

* sums the chunk buffers in a fixed order (so the result never depends on the
  thread count),
* adds the L2 term ``alpha * W`` (coefficients only) and multiplies by the
  reciprocal of the batch's weight sum, as scikit-learn normalises::

      grad = (sum_c chunk_grad_c + alpha * W) * (1 / sum_i w_i)

* and applies the optimizer step (:mod:`fastbp._kernels.optimizers`) to the same
  block while it is in cache.

Gradient clipping rescales the whole batch gradient to a global L2 norm of at
most ``max_grad_norm``; it needs that norm before any step, so a clipped batch
takes two passes (finish, then step along ``scale * grad``).  Large networks
run the blocks in parallel; each block's partial sums are then added in block
order, so results are the same either way.
"""

from collections import namedtuple

import numpy as np

from .._numba import (
    ORCHESTRATOR,
    bundle,
    call_separately,
    jit,
    parallel_for,
    worker_args,
)
from .optimizers import adam_entry, adam_hyper, sgd_entry, sgd_hyper

#: The optimizer's numbers as the kernels see them: its hyperparameters
#: (``hyper``, indexed by :data:`fastbp._kernels.optimizers.LEARNING_RATE` etc.) and
#: its state vectors (SGD's velocity, ``state_2`` unused; Adam's two moments).
#: Which optimizer it is travels as two switches of its own (``adam`` and
#: ``sgd``, one ``True`` and the other ``None``), so that only that
#: optimizer's loops are compiled.
Optimizer = bundle(namedtuple("Optimizer", ["hyper", "state_1", "state_2"]))

#: The parameter vector split into blocks: ``start``, ``stop``, the weight
#: layer and whether the block holds coefficients, one entry per block;
#: ``partial`` receives each block's ``(||W||^2, ||grad||^2)``.
Blocks = bundle(namedtuple("Blocks", ["start", "stop", "layer", "is_coef", "partial"]))

#: Entries per block; blocks never straddle layers.
BLOCK_SIZE = 16384
#: From this many parameters on, blocks are processed in parallel.
PARALLEL_MIN_PARAMS = 131072


def parameter_blocks(layer_units, coef_off, intercept_off):
    """Split the flat parameter vector into :class:`Blocks`."""
    spans = []
    for is_coef, offsets in ((True, coef_off), (False, intercept_off)):
        for l in range(len(layer_units) - 1):
            lo = int(offsets[l])
            size = int(layer_units[l + 1]) * (int(layer_units[l]) if is_coef else 1)
            for s in range(lo, lo + size, BLOCK_SIZE):
                spans.append((s, min(s + BLOCK_SIZE, lo + size), l, is_coef))
    start, stop, layer, is_coef = (np.array(v) for v in zip(*spans, strict=True))
    return Blocks(
        start.astype(np.int64),
        stop.astype(np.int64),
        layer.astype(np.int64),
        is_coef.astype(np.bool_),
        np.zeros((len(spans), 2), dtype=np.float64),
    )


@jit(from_python=False)
def _update_block(b, finish_only, step_only, adam, sgd, blocks, chunk_grads,
                  n_chunks, params, grad, alpha, inv_sw, opt, scale):  # fmt: skip
    """Finish and/or step block ``b``; its partial sums go to ``blocks.partial[b]``.

    The switches are ``True`` or ``None`` (see :func:`finish_and_step`); numba
    prunes the branches of those that are ``None``, so a configuration
    compiles only its own statements of the loop.
    """
    lo = blocks.start[b]
    hi = blocks.stop[b]
    m = hi - lo
    w = params[lo:hi]
    g = grad[lo:hi]
    # Raw gradient: the chunk sums, added in chunk order.  One chunk is read in
    # place; ``chunk_grads[0]`` may be ``grad`` itself.
    raw = chunk_grads[0, lo:hi]
    if step_only is None:
        if n_chunks > 1:
            raw = g
            first = chunk_grads[0, lo:hi]
            for k in range(m):
                g[k] = first[k]
            for c in range(1, n_chunks):
                other = chunk_grads[c, lo:hi]
                for k in range(m):
                    g[k] += other[k]
    a = alpha if blocks.is_coef[b] else 0.0  # intercepts are not penalised
    sq_w = 0.0
    sq_g = 0.0
    s1 = opt.state_1[lo:hi]
    if adam is not None:
        s2 = opt.state_2[lo:hi]
        lr_t, b1, b2, eps = adam_hyper(opt.hyper)
    if sgd is not None:
        lr, mu, nesterov = sgd_hyper(opt.hyper)
    # One loop for every mode: each entry is read and written once (a fused
    # pass does not store the finished gradient; ``grad`` is scratch there).
    for k in range(m):
        wk = w[k]
        if step_only is not None:  # along scale * grad, finished before
            gk = scale * g[k]
        else:
            gk = (raw[k] + a * wk) * inv_sw
            sq_w += wk * wk
            sq_g += gk * gk
        if finish_only is not None:
            g[k] = gk
        if adam is not None:
            w[k], s1[k], s2[k] = adam_entry(wk, s1[k], s2[k], gk, lr_t, b1, b2, eps)
        if sgd is not None:
            w[k], s1[k] = sgd_entry(wk, s1[k], gk, lr, mu, nesterov)
    blocks.partial[b, 0] = sq_w if blocks.is_coef[b] else 0.0
    blocks.partial[b, 1] = sq_g


@jit(from_python=False)
def _block(ctx, b):
    """Block ``b`` of :func:`finish_and_step`'s parallel pass.

    A worker of :func:`fastbp._numba.parallel.parallel_for`: ``ctx`` holds the
    pass's arguments; the block writes its own entries and partial sums.
    """
    (finish_only, step_only, adam, sgd, blocks, chunk_grads, n_chunks, params,
     grad, alpha, inv_sw, opt, scale) = worker_args(ctx)  # fmt: skip
    call_separately(
        _update_block,
        (b, finish_only, step_only, adam, sgd, blocks, chunk_grads, n_chunks,
         params, grad, alpha, inv_sw, opt, scale),
    )  # fmt: skip


@jit(opt=ORCHESTRATOR, from_python=False)
def finish_and_step(finish_only, step_only, adam, sgd, blocks, chunk_grads,
                    n_chunks, params, grad, alpha, inv_sw, opt, scale, layer_sq,
                    parallel):  # fmt: skip
    """One block-wise pass over the parameters: finish the gradient and/or step.

    What the pass does is chosen by switches, each ``True`` or ``None``, and
    a configuration compiles only the code its switches leave in: numba
    prunes a branch ``if switch is not None:`` before compiling when the
    switch is ``None`` (a ``True`` prunes nothing, so each alternative has a
    switch of its own).  At most one of

    * ``finish_only``: ``grad`` receives the normalised gradient of the
      ``n_chunks`` raw gradients in ``chunk_grads``;
    * ``step_only``: step along ``scale * grad``;

    is ``True``; with both ``None`` the pass finishes and steps, fused (each
    entry read and written once; ``grad`` is then scratch).  When stepping,
    one of ``adam`` and ``sgd`` is ``True`` (both ``None`` with
    ``finish_only``).  ``parallel`` runs the blocks in parallel (only
    networks large enough to gain use it).  Unless ``step_only``,
    ``layer_sq[l]`` then holds the squared L2 norm of layer ``l``'s
    coefficient gradient and ``(||W||^2, ||grad||^2)`` is returned.

    Each block is :func:`_update_block`, compiled on its own (at -O3) for the
    dtype and the switches.
    """
    n_blocks = blocks.start.shape[0]
    if parallel is None:
        for b in range(n_blocks):
            call_separately(
                _update_block,
                (b, finish_only, step_only, adam, sgd, blocks, chunk_grads,
                 n_chunks, params, grad, alpha, inv_sw, opt, scale),
            )  # fmt: skip
    else:
        parallel_for(
            _block,
            (finish_only, step_only, adam, sgd, blocks, chunk_grads, n_chunks,
             params, grad, alpha, inv_sw, opt, scale),
            n_blocks,
        )  # fmt: skip
    sq_w = 0.0
    sq_g = 0.0
    if step_only is None:
        layer_sq[:] = 0.0
        for b in range(n_blocks):
            sq_w += blocks.partial[b, 0]
            sq_g += blocks.partial[b, 1]
            if blocks.is_coef[b]:
                layer_sq[blocks.layer[b]] += blocks.partial[b, 1]
    return sq_w, sq_g


@jit(inline=True)
def inverse_weight_sum(sw_sum):
    """``1 / sw_sum``; a batch whose weights are all zero contributes nothing."""
    return 1.0 / sw_sum if sw_sum > 0.0 else 0.0
