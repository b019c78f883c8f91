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

#: Upper bound on the number of chunks a batch is split into.
MAX_CHUNKS = 8
#: Target number of rows per chunk.
CHUNK_ROWS = 64
#: Rows per parallel task in prediction.
PREDICT_ROWS = 256


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
            A0[i, :] = X[rows[i]]
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
            np.dot(_view(ws, a_off[l], n, fi), W, Z)
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
    n = rows.shape[0]
    L = layer_units.shape[0] - 1
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
    # Output delta: the matched loss/activation pair gives w * (y_hat - y).
    n_out = layer_units[L]
    delta = _view(ws, d_off[0], n, n_out)
    loss_sum = output_loss_and_delta(
        loss_code, _view(ws, a_off[L], n, n_out), Y, sample_weight, rows, delta
    )
    empty = ws[0:0].reshape((0, 0))
    cur = 0
    for l in range(L - 1, -1, -1):
        fi = layer_units[l]
        fo = layer_units[l + 1]
        G = _view(grad, coef_off[l], fi, fo)
        if l == 0 and is_sparse:
            _sparse_rows_tdot(X_data, X_indices, X_indptr, rows, delta, G)
        else:
            np.dot(_view(ws, a_off[l], n, fi).T, delta, G)
        gb = grad[intercept_off[l] : intercept_off[l] + fo]
        gb[:] = 0.0
        for i in range(n):
            for j in range(fo):
                gb[j] += delta[i, j]
        if l > 0:
            # Chain rule: push delta through W[l], then through f' of layer l.
            W = _view(params, coef_off[l], fi, fo)
            cur = 1 - cur
            delta_below = _view(ws, d_off[cur], n, fi)
            np.dot(delta, W.T, delta_below)
            Y_l = _view(ws, a_off[l], n, fi)
            if z_off[l] >= 0:
                activation_derivative_from_output(
                    hidden_acts[l - 1], Y_l, _view(ws, z_off[l], n, fi), delta_below
                )
            else:
                activation_derivative_from_output(
                    hidden_acts[l - 1], Y_l, empty, delta_below
                )
            delta = delta_below
    return loss_sum


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


@jit(parallel=True)
def _reduce_chunks(chunk_grads, n_chunks, grad):
    """``grad = sum_c chunk_grads[c]``, summed in fixed order per entry."""
    n_params = grad.shape[0]
    block = 4096
    n_blocks = (n_params + block - 1) // block
    for bi in prange(n_blocks):
        lo = bi * block
        hi = min(lo + block, n_params)
        for k in range(lo, hi):
            grad[k] = chunk_grads[0, k]
        for c in range(1, n_chunks):
            for k in range(lo, hi):
                grad[k] += chunk_grads[c, k]


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
):
    """Loss and gradient of one batch, normalised as scikit-learn does.

    ``loss = (sum_i w_i loss_i + alpha/2 ||W||^2) / sum_i w_i`` and
    ``grad = (sum_i w_i dloss_i + alpha W) / sum_i w_i`` (intercepts are not
    penalised).  ``rows`` are the batch's sample indices, split into
    ``n_chunks`` chunks; ``ws`` and ``chunk_grads`` hold one row per chunk.
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
            grad,
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
        _reduce_chunks(chunk_grads, n_chunks, grad)
        loss_sum = 0.0
        for c in range(n_chunks):
            loss_sum += chunk_losses[c]
    sw_sum = 0.0
    for i in range(rows.shape[0]):
        sw_sum += sample_weight[rows[i]]
    inv_sw_sum = 1.0 / sw_sum
    # L2 penalty on coefficients only; intercepts are not penalised.
    n_coefs = intercept_off[0]
    sq = 0.0
    for k in range(n_coefs):
        w = params[k]
        sq += w * w
        grad[k] = (grad[k] + alpha * w) * inv_sw_sum
    for k in range(n_coefs, grad.shape[0]):
        grad[k] *= inv_sw_sum
    return (loss_sum + 0.5 * alpha * sq) * inv_sw_sum


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
        out[lo:hi, :] = Z


def kernel_input(X, dtype):
    """Return the ``(X, data, indices, indptr, is_sparse)`` tuple kernels take.

    Dense input must already be validated; it is made C-contiguous in
    ``dtype``.  Sparse input is converted to CSR (CSC is transposed once, never
    densified); a dense placeholder of shape ``(0, n_features)`` is passed in
    its place so that both cases share one compiled signature.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=dtype)
        X.sort_indices()
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
            rows.shape[0], params.dtype, Xk[4]
        )
        lay = self.layout
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
