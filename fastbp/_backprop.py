"""Fused forward and backward passes over one batch.

Three layers, as in stumpy:

* :func:`chunk_forward` / :func:`chunk_loss_grad` -- single-threaded workers
  over one chunk of rows: the forward pass (keeping each layer's output, and
  the pre-activation of GELU layers only), the output delta of the matched
  loss, then for every layer, from the top down,

      coef_grad[l]      = A[l].T @ delta[l]
      intercept_grad[l] = sum over rows of delta[l]
      delta[l-1]        = (delta[l] @ W[l].T) * f'(from A[l])

  accumulated (unnormalised) into the chunk's own gradient buffer.
* :func:`batch_loss_grad` -- the parallel orchestrator: a batch is split into
  a number of chunks that depends on the batch size only (never on the thread
  count), chunks run in parallel, and their buffers are summed in a fixed
  order, so the gradient is bit-identical for any number of threads.  It then
  adds the L2 term ``alpha * W`` and divides by the batch's weight sum, exactly
  as scikit-learn does.
* :class:`Network` -- the Python wrapper that owns the layout and scratch
  buffers, used by the estimators, the full-batch solvers and the tests.

The first layer reads its input rows through an index array (no copy of X per
batch); a scipy CSR matrix is read directly from ``data/indices/indptr``.
"""

import numpy as np
import scipy.sparse as sp
from numba import prange

from ._activations import GELU, activation_derivative_from_output, activation_forward
from ._jit import jit
from ._losses import output_activation, output_loss_and_delta
from ._optimizers import (
    ADAM,
    adam_entry,
    adam_hyper,
    sgd_entry,
    sgd_hyper,
    step_range,
)

#: Upper bound on the number of chunks a batch is split into.
MAX_CHUNKS = 8
#: Target number of rows per chunk.
CHUNK_ROWS = 128
#: Rows per parallel task in prediction.
PREDICT_ROWS = 256
#: Largest batch evaluated in one piece; larger ones (the full batch of L-BFGS
#: and CG) are walked in sub-batches of this many rows, bounding the workspace.
SUB_BATCH_ROWS = MAX_CHUNKS * 1024


def n_chunks_for(batch_size):
    """Number of chunks for a batch: a function of the batch size alone."""
    return int(min(MAX_CHUNKS, max(1, -(-batch_size // CHUNK_ROWS))))


@jit()
def workspace_layout(layer_units, hidden_acts, max_rows, is_sparse):
    """Offsets of one chunk's scratch arrays in its flat workspace.

    Returns ``(a_off, z_off, d_off, size)``: ``a_off[l]`` starts layer ``l``'s
    output (``l = 0`` is the gathered input, empty for sparse input),
    ``z_off[l]`` the cached pre-activation (``-1`` unless layer ``l`` is GELU),
    ``d_off[0:2]`` the two ping-pong delta buffers.
    """
    n_layers = layer_units.shape[0]
    a_off = np.empty(n_layers, dtype=np.int64)
    z_off = np.full(n_layers, -1, dtype=np.int64)
    pos = 0
    for l in range(n_layers):
        a_off[l] = pos
        if not (l == 0 and is_sparse):
            pos += max_rows * layer_units[l]
    for l in range(1, n_layers - 1):
        if hidden_acts[l - 1] == GELU:
            z_off[l] = pos
            pos += max_rows * layer_units[l]
    widest = 0
    for l in range(1, n_layers):
        widest = max(widest, layer_units[l])
    d_off = np.empty(2, dtype=np.int64)
    d_off[0] = pos
    d_off[1] = pos + max_rows * widest
    pos += 2 * max_rows * widest
    return a_off, z_off, d_off, pos


@jit()
def _view(buf, start, n_rows, n_cols):
    return buf[start : start + n_rows * n_cols].reshape((n_rows, n_cols))


#: Up to this many rows, products are hand-written loops: for online learning
#: (one row) BLAS call overhead and its skinny-shape kernels cost more than the
#: arithmetic.  A function of the shapes only, so results never depend on the
#: thread count.
SMALL_ROWS = 4


@jit()
def _matmul(A, B, out):
    """``out = A @ B``."""
    n, k = A.shape
    if n > SMALL_ROWS:
        np.dot(A, B, out)
        return
    m = B.shape[1]
    for i in range(n):
        for j in range(m):
            out[i, j] = 0.0
        for c in range(k):
            a = A[i, c]
            for j in range(m):
                out[i, j] += a * B[c, j]


@jit()
def _matmul_tn(A, B, out):
    """``out = A.T @ B`` (the weight gradient: activations.T @ delta)."""
    n = A.shape[0]
    if n > SMALL_ROWS:
        np.dot(A.T, B, out)
        return
    k = A.shape[1]
    m = B.shape[1]
    for c in range(k):
        a = A[0, c]
        for j in range(m):
            out[c, j] = a * B[0, j]
        for i in range(1, n):
            a = A[i, c]
            for j in range(m):
                out[c, j] += a * B[i, j]


@jit()
def _matmul_nt(A, B, out):
    """``out = A @ B.T`` (delta pushed down through the weights)."""
    n = A.shape[0]
    if n > SMALL_ROWS:
        np.dot(A, B.T, out)
        return
    m = A.shape[1]
    k = B.shape[0]
    for i in range(n):
        for c in range(k):
            acc = 0.0
            for j in range(m):
                acc += A[i, j] * B[c, j]
            out[i, c] = acc


@jit()
def _sparse_rows_dot(data, indices, indptr, rows, W, out):
    """``out = X[rows] @ W`` for CSR ``X``, without densifying."""
    out[:] = 0.0
    n_out = W.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            v = data[p]
            for j in range(n_out):
                out[i, j] += v * W[c, j]


@jit()
def _sparse_rows_tdot(data, indices, indptr, rows, delta, G):
    """``G = X[rows].T @ delta`` for CSR ``X``, without densifying."""
    G[:] = 0.0
    n_out = delta.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            v = data[p]
            for j in range(n_out):
                G[c, j] += v * delta[i, j]


@jit()
def chunk_forward(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    rows,
    params,
    layer_units,
    coef_off,
    intercept_off,
    hidden_acts,
    ws,
    a_off,
    z_off,
):
    """Forward pass of ``rows`` up to the output pre-activation.

    Each layer's output is left in ``ws`` at ``a_off[l]``; the output layer's
    pre-activation (no output activation applied) at ``a_off[-1]``.
    """
    n = rows.shape[0]
    n_weight_layers = layer_units.shape[0] - 1
    if not is_sparse:
        A0 = _view(ws, a_off[0], n, layer_units[0])
        for i in range(n):
            row = X[rows[i]]
            for j in range(layer_units[0]):  # a loop: no broadcast check to compile
                A0[i, j] = row[j]
    empty = ws[0:0].reshape((0, 0))
    for l in range(n_weight_layers):
        fi = layer_units[l]
        fo = layer_units[l + 1]
        W = _view(params, coef_off[l], fi, fo)
        b = params[intercept_off[l] : intercept_off[l] + fo]
        Z = _view(ws, a_off[l + 1], n, fo)
        if l == 0 and is_sparse:
            _sparse_rows_dot(X_data, X_indices, X_indptr, rows, W, Z)
        else:
            _matmul(_view(ws, a_off[l], n, fi), W, Z)
        for i in range(n):
            for j in range(fo):
                Z[i, j] += b[j]
        if l < n_weight_layers - 1:
            code = hidden_acts[l]
            if z_off[l + 1] >= 0:
                activation_forward(code, Z, _view(ws, z_off[l + 1], n, fo))
            else:
                activation_forward(code, Z, empty)


@jit()
def backward_layer(
    l,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    rows,
    params,
    layer_units,
    coef_off,
    intercept_off,
    hidden_acts,
    ws,
    a_off,
    z_off,
    d_off,
    cur,
    grad,
):
    """Backward step through weight layer ``l`` of one chunk.

    The delta of layer ``l``'s output is in delta buffer ``cur``.  Writes the
    unnormalised ``coef_grad[l] = A[l].T @ delta`` and ``intercept_grad[l] =
    sum_rows delta`` into ``grad``; for ``l > 0`` pushes the delta down, using
    the weights *before* any update, into the other buffer, whose index is
    returned.
    """
    n = rows.shape[0]
    fi = layer_units[l]
    fo = layer_units[l + 1]
    delta = _view(ws, d_off[cur], n, fo)
    G = _view(grad, coef_off[l], fi, fo)
    if l == 0 and is_sparse:
        _sparse_rows_tdot(X_data, X_indices, X_indptr, rows, delta, G)
    else:
        _matmul_tn(_view(ws, a_off[l], n, fi), delta, G)
    gb = grad[intercept_off[l] : intercept_off[l] + fo]
    gb[:] = 0.0
    for i in range(n):
        for j in range(fo):
            gb[j] += delta[i, j]
    if l == 0:
        return cur
    # Chain rule: push delta through W[l], then through f' of layer l.
    below = 1 - cur
    delta_below = _view(ws, d_off[below], n, fi)
    _matmul_nt(delta, _view(params, coef_off[l], fi, fo), delta_below)
    Y_l = _view(ws, a_off[l], n, fi)
    if z_off[l] >= 0:
        Z_l = _view(ws, z_off[l], n, fi)
    else:
        Z_l = ws[0:0].reshape((0, 0))
    activation_derivative_from_output(hidden_acts[l - 1], Y_l, Z_l, delta_below)
    return below


@jit()
def chunk_loss_grad(
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
    grad,
):
    """Forward and backward pass of one chunk.

    Writes the chunk's *unnormalised* gradient ``sum_i w_i dloss_i/dparams``
    into ``grad`` (every entry is overwritten) and returns ``sum_i w_i loss_i``.
    """
    loss_sum = chunk_forward_loss(
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
    )
    cur = np.int64(0)  # typed, not a literal: one compiled backward_layer
    for l in range(layer_units.shape[0] - 2, -1, -1):
        cur = backward_layer(
            l,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            rows,
            params,
            layer_units,
            coef_off,
            intercept_off,
            hidden_acts,
            ws,
            a_off,
            z_off,
            d_off,
            cur,
            grad,
        )
    return loss_sum


@jit()
def chunk_forward_loss(
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
):
    """Forward pass and output delta (into delta buffer 0) of one chunk.

    Returns ``sum_i w_i loss_i``; the matched loss/activation pair gives the
    output delta ``w_i * (y_hat_i - y_i)``.
    """
    chunk_forward(
        X,
        X_data,
        X_indices,
        X_indptr,
        is_sparse,
        rows,
        params,
        layer_units,
        coef_off,
        intercept_off,
        hidden_acts,
        ws,
        a_off,
        z_off,
    )
    n = rows.shape[0]
    L = layer_units.shape[0] - 1
    n_out = layer_units[L]
    return output_loss_and_delta(
        loss_code,
        _view(ws, a_off[L], n, n_out),
        Y,
        sample_weight,
        rows,
        _view(ws, d_off[0], n, n_out),
    )


@jit(parallel=True)
def _chunks_in_parallel(
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
    n_chunks,
):
    n = rows.shape[0]
    for c in prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        chunk_losses[c] = chunk_loss_grad(
            X,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            Y,
            sample_weight,
            rows[lo:hi],
            params,
            layer_units,
            coef_off,
            intercept_off,
            hidden_acts,
            loss_code,
            ws[c],
            a_off,
            z_off,
            d_off,
            chunk_grads[c],
        )


@jit()
def batch_raw_loss_grad(
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
    n_chunks,
):
    """Per-chunk unnormalised gradients of a batch, in ``chunk_grads[:n_chunks]``.

    Returns ``(sum_i w_i loss_i, sum_i w_i)`` over the batch.
    """
    if n_chunks == 1:
        loss_sum = chunk_loss_grad(
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
            ws[0],
            a_off,
            z_off,
            d_off,
            chunk_grads[0],
        )
    else:
        _chunks_in_parallel(
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
            n_chunks,
        )
        loss_sum = 0.0
        for c in range(n_chunks):
            loss_sum += chunk_losses[c]
    return loss_sum, weight_sum(sample_weight, rows)


@jit()
def weight_sum(sample_weight, rows):
    """``sum_i sample_weight[rows[i]]``, in row order."""
    total = 0.0
    for i in range(rows.shape[0]):
        total += sample_weight[rows[i]]
    return total


@jit()
def inverse_weight_sum(sw_sum):
    """``1 / sw_sum``; a batch whose weights are all zero contributes nothing."""
    return 1.0 / sw_sum if sw_sum > 0.0 else 0.0


@jit()
def finish_range(chunk_grads, n_chunks, params, lo, hi, is_coef, alpha, inv_sw, grad):
    """Normalise the gradient entries ``lo:hi`` as scikit-learn does.

    ``grad[k] = (sum_c chunk_grads[c, k] + alpha * params[k]) / sw_sum`` for
    coefficients, without the L2 term for intercepts; the chunks are summed in
    fixed order.  ``chunk_grads[0]`` may be ``grad`` itself.  Returns the sums
    of ``params[k]**2`` (coefficients only) and of ``grad[k]**2``.
    """
    # Work on slices: loops over range(lo, hi) would keep numba's negative-index
    # wraparound and not vectorise.  Chunks are summed entry-innermost.
    g = grad[lo:hi]
    w = params[lo:hi]
    m = hi - lo
    first = chunk_grads[0, lo:hi]
    for k in range(m):
        g[k] = first[k]
    for c in range(1, n_chunks):
        other = chunk_grads[c, lo:hi]
        for k in range(m):
            g[k] += other[k]
    sq_w = 0.0
    sq_g = 0.0
    if is_coef:
        for k in range(m):
            sq_w += w[k] * w[k]
            gk = (g[k] + alpha * w[k]) * inv_sw
            sq_g += gk * gk
            g[k] = gk
    else:
        for k in range(m):
            gk = g[k] * inv_sw
            sq_g += gk * gk
            g[k] = gk
    return sq_w, sq_g


@jit()
def finish_step_range(
    chunk_grads,
    n_chunks,
    params,
    lo,
    hi,
    is_coef,
    alpha,
    inv_sw,
    grad,
    solver,
    hyper,
    state_1,
    state_2,
):
    """:func:`finish_range` and the optimizer step fused into one pass.

    The same arithmetic as ``finish_range`` followed by
    :func:`fastbp._optimizers.step_range` with ``scale = 1``, reading and
    writing each entry once (an online step is dominated by these passes).
    """
    m = hi - lo
    if n_chunks == 1:
        raw = chunk_grads[0, lo:hi]
    else:
        raw = grad[lo:hi]
        first = chunk_grads[0, lo:hi]
        for k in range(m):
            raw[k] = first[k]
        for c in range(1, n_chunks):
            other = chunk_grads[c, lo:hi]
            for k in range(m):
                raw[k] += other[k]
    w = params[lo:hi]
    g = grad[lo:hi]
    s1 = state_1[lo:hi]
    a = alpha if is_coef else 0.0  # intercepts are not penalised
    sq_w = 0.0
    sq_g = 0.0
    if solver == ADAM:
        s2 = state_2[lo:hi]
        lr_t, b1, b2, eps = adam_hyper(hyper)
        for k in range(m):
            wk = w[k]
            gk = (raw[k] + a * wk) * inv_sw
            sq_w += wk * wk
            sq_g += gk * gk
            g[k] = gk
            w[k], s1[k], s2[k] = adam_entry(wk, s1[k], s2[k], gk, lr_t, b1, b2, eps)
    else:
        lr, mu, nesterov = sgd_hyper(hyper)
        for k in range(m):
            wk = w[k]
            gk = (raw[k] + a * wk) * inv_sw
            sq_w += wk * wk
            sq_g += gk * gk
            g[k] = gk
            w[k], s1[k] = sgd_entry(wk, s1[k], gk, lr, mu, nesterov)
    return (sq_w if is_coef else 0.0), sq_g


#: Entries per block of the finishing pass; blocks never straddle layers.
FINISH_BLOCK = 16384
#: From this many parameters on, the finishing pass runs in parallel.
PARALLEL_FINISH_MIN = 131072


@jit()
def finish_blocks(layer_units, coef_off, intercept_off):
    """Split the parameter vector into blocks that never straddle a layer.

    Returns ``(start, stop, layer, is_coef)`` arrays, one entry per block.
    """
    L = layer_units.shape[0] - 1
    n_blocks = 0
    for l in range(L):
        n_blocks += (
            layer_units[l] * layer_units[l + 1] + FINISH_BLOCK - 1
        ) // FINISH_BLOCK
        n_blocks += (layer_units[l + 1] + FINISH_BLOCK - 1) // FINISH_BLOCK
    start = np.empty(n_blocks, dtype=np.int64)
    stop = np.empty(n_blocks, dtype=np.int64)
    layer = np.empty(n_blocks, dtype=np.int64)
    is_coef = np.empty(n_blocks, dtype=np.bool_)
    b = 0
    for coef in (True, False):
        for l in range(L):
            lo = coef_off[l] if coef else intercept_off[l]
            size = layer_units[l] * layer_units[l + 1] if coef else layer_units[l + 1]
            for s in range(lo, lo + size, FINISH_BLOCK):
                start[b] = s
                stop[b] = min(s + FINISH_BLOCK, lo + size)
                layer[b] = l
                is_coef[b] = coef
                b += 1
    return start, stop, layer, is_coef


@jit()
def _finish_step_block(
    b,
    start,
    stop,
    is_coef,
    chunk_grads,
    n_chunks,
    params,
    alpha,
    inv_sw,
    grad,
    partial,
    do_finish,
    solver,
    hyper,
    state_1,
    state_2,
    scale,
):
    if do_finish and solver >= 0 and scale == 1.0:
        sq_w, sq_g = finish_step_range(
            chunk_grads,
            n_chunks,
            params,
            start[b],
            stop[b],
            is_coef[b],
            alpha,
            inv_sw,
            grad,
            solver,
            hyper,
            state_1,
            state_2,
        )
        partial[b, 0] = sq_w
        partial[b, 1] = sq_g
        return
    if do_finish:
        sq_w, sq_g = finish_range(
            chunk_grads,
            n_chunks,
            params,
            start[b],
            stop[b],
            is_coef[b],
            alpha,
            inv_sw,
            grad,
        )
        partial[b, 0] = sq_w
        partial[b, 1] = sq_g
    if solver >= 0:
        step_range(
            params, grad, start[b], stop[b], solver, hyper, state_1, state_2, scale
        )


@jit(parallel=True)
def _finish_step_parallel(
    start,
    stop,
    is_coef,
    chunk_grads,
    n_chunks,
    params,
    alpha,
    inv_sw,
    grad,
    partial,
    do_finish,
    solver,
    hyper,
    state_1,
    state_2,
    scale,
):
    for b in prange(start.shape[0]):
        _finish_step_block(
            np.int64(b),  # prange's index is unsigned: reuse the serial version
            start,
            stop,
            is_coef,
            chunk_grads,
            n_chunks,
            params,
            alpha,
            inv_sw,
            grad,
            partial,
            do_finish,
            solver,
            hyper,
            state_1,
            state_2,
            scale,
        )


@jit()
def finish_and_step(
    chunk_grads,
    n_chunks,
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
):
    """Block-wise pass over the parameters: finish the gradient, then step.

    With ``n_chunks > 0``, reduces the chunk gradients into the normalised
    ``grad`` (:func:`finish_range`); ``layer_sq[l]`` receives the squared L2
    norm of layer ``l``'s coefficient gradient, and ``(||W||^2, ||grad||^2)``
    is returned.  With ``solver >= 0``, then applies the optimizer step with
    gradient ``scale * grad`` to the same block while it is in cache.  Blocks
    run in parallel for large networks; every sum is formed in the same fixed
    order either way, so results never depend on the thread count.
    ``n_chunks == 0`` (the second pass of clipping) only steps, along the
    already finished ``grad``.
    """
    # A runtime value, not a literal flag: numba compiles one specialisation
    # per literal bool, and this function (with its parallel region) is costly
    # to compile.
    do_finish = n_chunks > 0
    start, stop, layer, is_coef = finish_blocks(layer_units, coef_off, intercept_off)
    partial = np.zeros((start.shape[0], 2), dtype=np.float64)
    if params.shape[0] >= PARALLEL_FINISH_MIN:
        _finish_step_parallel(
            start,
            stop,
            is_coef,
            chunk_grads,
            n_chunks,
            params,
            alpha,
            inv_sw,
            grad,
            partial,
            do_finish,
            solver,
            hyper,
            state_1,
            state_2,
            scale,
        )
    else:
        for b in range(start.shape[0]):
            _finish_step_block(
                b,
                start,
                stop,
                is_coef,
                chunk_grads,
                n_chunks,
                params,
                alpha,
                inv_sw,
                grad,
                partial,
                do_finish,
                solver,
                hyper,
                state_1,
                state_2,
                scale,
            )
    sq_w = 0.0
    sq_g = 0.0
    if do_finish:
        layer_sq[:] = 0.0
        for b in range(start.shape[0]):
            sq_w += partial[b, 0]
            sq_g += partial[b, 1]
            if is_coef[b]:
                layer_sq[layer[b]] += partial[b, 1]
    return sq_w, sq_g


@jit()
def batch_loss_grad(
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
    n_chunks,
    grad,
    layer_sq,
    sub_rows,
):
    """Loss and gradient of one batch, normalised as scikit-learn does.

    ``loss = (sum_i w_i loss_i + alpha/2 ||W||^2) / sum_i w_i`` and
    ``grad = (sum_i w_i dloss_i + alpha W) / sum_i w_i`` (intercepts are not
    penalised).  ``rows`` are the batch's sample indices, split into
    ``n_chunks`` chunks; ``ws`` and ``chunk_grads`` hold one row per chunk.
    ``layer_sq`` receives each layer's squared coefficient-gradient norm.

    A batch of more than ``sub_rows`` rows (the full batch of L-BFGS and CG)
    is walked in sub-batches of ``sub_rows`` rows whose raw sums are added up
    in order, so the workspace (and the rows gathered into it) stays bounded:
    X is never copied whole.
    """
    # Chunk sums are added up in fixed order, starting from exact zeros: for a
    # batch of one sub-batch this is the order finish_range would use.
    n = rows.shape[0]
    sums = np.zeros((1, params.shape[0]), dtype=params.dtype)
    loss_sum = 0.0
    sw_sum = 0.0
    for start in range(0, n, sub_rows):
        sub = rows[start : min(start + sub_rows, n)]
        sub_chunks = min(n_chunks, sub.shape[0])
        sub_loss, sub_sw = batch_raw_loss_grad(
            X,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            Y,
            sample_weight,
            sub,
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
            sub_chunks,
        )
        loss_sum += sub_loss
        sw_sum += sub_sw
        total = sums[0]
        for c in range(sub_chunks):  # fixed order: thread-count independent
            part = chunk_grads[c]
            for k in range(total.shape[0]):
                total[k] += part[k]
    inv_sw = inverse_weight_sum(sw_sum)
    no_state = params[:0]
    sq_w, _ = finish_and_step(
        sums,
        np.int64(1),  # typed, not a literal: the epoch's compiled version
        params,
        layer_units,
        coef_off,
        intercept_off,
        alpha,
        inv_sw,
        grad,
        layer_sq,
        -1,
        np.empty(0),
        no_state,
        no_state,
        1.0,
    )
    return (loss_sum + 0.5 * alpha * sq_w) * inv_sw


@jit(parallel=True)
def forward_predict(
    X,
    X_data,
    X_indices,
    X_indptr,
    is_sparse,
    params,
    layer_units,
    coef_off,
    intercept_off,
    hidden_acts,
    loss_code,
    chunk_rows,
    out,
):
    """Predictions ``y_hat`` for every row of X, in parallel blocks of rows."""
    n = out.shape[0]
    n_out = out.shape[1]
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    a_off, z_off, d_off, size = workspace_layout(
        layer_units, hidden_acts, chunk_rows, is_sparse
    )
    L = layer_units.shape[0] - 1
    for c in prange(n_chunks):
        lo = c * chunk_rows
        hi = min(lo + chunk_rows, n)
        rows = np.arange(lo, hi)
        ws = np.empty(size, dtype=params.dtype)
        chunk_forward(
            X,
            X_data,
            X_indices,
            X_indptr,
            is_sparse,
            rows,
            params,
            layer_units,
            coef_off,
            intercept_off,
            hidden_acts,
            ws,
            a_off,
            z_off,
        )
        Z = _view(ws, a_off[L], hi - lo, n_out)
        output_activation(loss_code, Z)
        for i in range(hi - lo):
            for j in range(n_out):
                out[lo + i, j] = Z[i, j]


def kernel_input(X, dtype):
    """Return the ``(X, data, indices, indptr, is_sparse)`` tuple kernels take.

    Dense input must already be validated; it is made C-contiguous in
    ``dtype``.  Sparse input is converted to CSR (CSC is transposed once, never
    densified); a dense placeholder of shape ``(0, n_features)`` is passed in
    its place so that both cases share one compiled signature.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=dtype)
        if not X.has_sorted_indices:
            # A sorted copy: csr_matrix may share the caller's arrays, which
            # an in-place sort would modify.
            X = X.sorted_indices()
        placeholder = np.empty((0, X.shape[1]), dtype=dtype)
        return (
            placeholder,
            np.ascontiguousarray(X.data, dtype=dtype),
            np.ascontiguousarray(X.indices, dtype=np.int64),
            np.ascontiguousarray(X.indptr, dtype=np.int64),
            True,
        )
    empty_int = np.empty(0, dtype=np.int64)
    return (
        np.ascontiguousarray(X, dtype=dtype),
        np.empty(0, dtype=dtype),
        empty_int,
        empty_int,
        False,
    )


class Network:
    """A network's structure and scratch space, as seen by the kernels.

    Holds arrays and plain values only.

    Parameters
    ----------
    layout : ParamLayout
    hidden_codes : ndarray of int64
        Activation code of each hidden layer.
    loss_code : int
        Loss code (which fixes the output activation).

    """

    def __init__(self, layout, hidden_codes, loss_code):
        self.layout = layout
        self.hidden_codes = np.ascontiguousarray(hidden_codes, dtype=np.int64)
        self.loss_code = int(loss_code)
        self._scratch = {}

    def scratch(self, batch_size, dtype, is_sparse):
        """Return (cached) scratch buffers for batches of ``batch_size`` rows."""
        key = (int(batch_size), np.dtype(dtype).str, bool(is_sparse))
        if key not in self._scratch:
            n_chunks = n_chunks_for(batch_size)
            max_rows = -(-batch_size // n_chunks)
            a_off, z_off, d_off, size = workspace_layout(
                self.layout.layer_units, self.hidden_codes, max_rows, is_sparse
            )
            self._scratch[key] = (
                np.empty((n_chunks, size), dtype=dtype),
                a_off,
                z_off,
                d_off,
                np.empty((n_chunks, self.layout.n_params), dtype=dtype),
                np.empty(n_chunks, dtype=np.float64),
                n_chunks,
            )
        return self._scratch[key]

    def loss_grad(self, Xk, Y, sample_weight, params, alpha, grad, rows=None):
        """Loss and gradient (into ``grad``) of the batch ``rows`` (default: all).

        ``Xk`` is the tuple from :func:`kernel_input`.
        """
        n_samples = Y.shape[0]
        if rows is None:
            rows = np.arange(n_samples, dtype=np.int64)
        ws, a_off, z_off, d_off, chunk_grads, chunk_losses, n_chunks = self.scratch(
            min(rows.shape[0], SUB_BATCH_ROWS), params.dtype, Xk[4]
        )
        lay = self.layout
        layer_sq = np.empty(lay.n_layers, dtype=np.float64)
        return batch_loss_grad(
            *Xk,
            Y,
            sample_weight,
            rows,
            params,
            lay.layer_units,
            lay.coef_offsets,
            lay.intercept_offsets,
            self.hidden_codes,
            self.loss_code,
            float(alpha),
            ws,
            a_off,
            z_off,
            d_off,
            chunk_grads,
            chunk_losses,
            n_chunks,
            grad,
            layer_sq,
            SUB_BATCH_ROWS,
        )

    def predict(self, Xk, params):
        """Return ``y_hat`` (after the output activation) for every row."""
        n_samples = Xk[3].shape[0] - 1 if Xk[4] else Xk[0].shape[0]
        lay = self.layout
        out = np.empty((n_samples, int(lay.layer_units[-1])), dtype=params.dtype)
        if n_samples:
            forward_predict(
                *Xk,
                params,
                lay.layer_units,
                lay.coef_offsets,
                lay.intercept_offsets,
                self.hidden_codes,
                self.loss_code,
                PREDICT_ROWS,
                out,
            )
        return out
