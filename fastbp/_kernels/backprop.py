"""Fused forward and backward passes: the raw gradient of one batch.

Three layers, as in stumpy:

* :func:`forward` and :func:`chunk_loss_grad` -- single-threaded workers over
  one chunk of rows: the forward pass (keeping each layer's output, and the
  pre-activation of GELU layers only), the output delta of the matched loss,
  then for every layer, from the top down,

      coef_grad[l]      = A[l].T @ delta[l]
      intercept_grad[l] = sum over rows of delta[l]
      delta[l-1]        = (delta[l] @ W[l].T) * f'(from A[l])

  accumulated (unnormalised) into the chunk's own gradient buffer.
* :func:`batch_gradients` -- the orchestrator: a batch is split into a number
  of chunks that depends on the batch size only (never on the thread count),
  and the chunks run in parallel or, for a batch of one chunk, directly.
  Each chunk writes its own buffer; the update layer (:mod:`fastbp._kernels.update`)
  sums them in a fixed order, so the gradient is
  bit-identical for any number of threads.
* :class:`fastbp._network.Network` -- the Python side that owns the layout and
  the scratch buffers.

Every matrix is a row-major block of a flat array (the parameter vector, a
chunk's workspace) named by its offset, and the products go straight to BLAS
(or, for chunks of a few rows, to loops; :data:`fastbp._kernels.linalg.PRODUCT`, called
by address): no views or reshapes are compiled.  The first layer
reads its input rows through an index array (no copy of X per batch); a scipy
CSR matrix is read directly from ``data/indices/indptr``.

Arguments that travel together are bundled in named tuples (:class:`Data`,
:class:`Net`, :class:`Workspace`).  Choices that change which code runs
(parallel or not) are passed as ``None`` or a value: numba prunes the branch
that ``None`` rules out before compiling, so a configuration compiles only the
kernels it runs.
"""

from collections import namedtuple

import numpy as np

from .._numba import (
    ORCHESTRATOR,
    bundle,
    call_at,
    call_separately,
    jit,
    parallel_for,
    smaller,
    worker_args,
)
from .activations import DERIVATIVE, FORWARD, GELU
from .boundary import check_predict, checked
from .linalg import NN, NT, PRODUCT, TN
from .losses import DELTA, OUTPUT

#: The training data as the kernels read it.  Dense input is ``X`` (C order)
#: and ``is_sparse`` is ``None``; sparse CSR input is
#: ``X_data/X_indices/X_indptr`` with ``X`` an empty ``(0, n_features)``
#: placeholder and ``is_sparse`` ``True``.  Kernels that branch on it take it
#: as an argument of its own, so that numba prunes the other branch.
Data = bundle(
    namedtuple(
        "Data",
        ["X", "X_data", "X_indices", "X_indptr", "is_sparse", "Y", "sample_weight"],
    )
)

#: A network as the kernels see it, for one dtype: ``layer_units``
#: (``[n_features, *hidden, n_out]``), the offsets of each layer's
#: coefficients and intercepts in the flat parameter vector, the addresses of
#: each hidden layer's activation kernels (``act_forward``,
#: ``act_derivative``: :data:`fastbp._kernels.activations.FORWARD` and ``DERIVATIVE``)
#: and of the loss's kernels (``loss_output``, ``loss_delta``:
#: :data:`fastbp._kernels.losses.OUTPUT` and ``DELTA``), whether the loss value is
#: the one scikit-learn reports (``reported``), and the address of the
#: matrix product the layers use (``product``: :data:`fastbp._kernels.linalg.PRODUCT`;
#: BLAS, or loops where training runs chunks of a few rows).  Addresses are
#: valid in this process only: :class:`fastbp._network.Network` makes a
#: ``Net`` when a call needs one.
Net = bundle(
    namedtuple(
        "Net",
        [
            "layer_units",
            "coef_off",
            "intercept_off",
            "act_forward",
            "act_derivative",
            "loss_output",
            "loss_delta",
            "reported",
            "product",
        ],
    )
)

#: Scratch space for the chunks of one batch: one flat workspace row per chunk
#: (``ws``; the offsets of each layer's output, GELU pre-activation and the two
#: ping-pong delta buffers in it), one raw gradient row per chunk, one loss
#: per chunk, and one squared gradient norm per layer (``layer_sq``).
Workspace = bundle(
    namedtuple(
        "Workspace",
        ["ws", "a_off", "z_off", "d_off", "chunk_grads", "chunk_losses", "layer_sq"],
    )
)

#: Inverted dropout of the hidden layers at training time: ``rates[l]`` is the
#: rate of layer ``l`` (``layer_units`` indexing; 0 for the input and output
#: layers and for hidden layers without dropout), ``seed`` (uint64) drawn from
#: the estimator's RandomState at the start of each fit/partial_fit call, and
#: ``epoch`` the epoch's key: the samples seen before it (``t_``), unique
#: across epochs and calls.  Kernels take ``None`` instead when no layer drops
#: units, which prunes the dropout code.
Dropout = bundle(namedtuple("Dropout", ["rates", "seed", "epoch"]))

# The prototypes the kernels name to call a network's activation and loss
# kernels by address (numba resolves module globals, not attributes).
_FORWARD_CALL = FORWARD.prototype
_DERIVATIVE_CALL = DERIVATIVE.prototype
_DELTA_CALL = DELTA.prototype
_OUTPUT_CALL = OUTPUT.prototype
_PRODUCT_CALL = PRODUCT.prototype

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@jit(inline=True)
def _mix64(z):
    """splitmix64's finaliser: a bijective avalanche of a uint64."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@jit(inline=True)
def dropout_keep(seed, epoch, sample, layer, unit, rate):
    """Whether ``unit`` of ``layer`` is kept for ``sample`` in ``epoch``.

    A counter-based draw: a uniform ``u`` in [0, 1) from the 53 high bits of
    nested splitmix64 mixes of (seed, epoch, sample, layer, unit), so a mask
    depends on these keys only (never on chunks or threads); kept iff
    ``u >= rate``.
    """
    h = _mix64(seed ^ (np.uint64(epoch) + _GOLDEN))
    h = _mix64(h ^ (np.uint64(sample) + _GOLDEN))
    h = _mix64(h ^ (np.uint64(layer) + _GOLDEN))
    h = _mix64(h ^ (np.uint64(unit) + _GOLDEN))
    u = np.float64(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return u >= rate


#: Upper bound on the number of chunks a batch is split into.
MAX_CHUNKS = 8
#: Target number of rows per chunk.
CHUNK_ROWS = 128


def n_chunks_for(batch_size):
    """Number of chunks for a batch: a function of the batch size alone."""
    return int(min(MAX_CHUNKS, max(1, -(-batch_size // CHUNK_ROWS))))


def workspace_layout(layer_units, hidden_acts, max_rows, is_sparse):
    """Offsets of one chunk's scratch arrays in its flat workspace.

    Returns ``(a_off, z_off, d_off, size)``: ``a_off[l]`` starts layer ``l``'s
    output (``l = 0`` is the gathered input, empty for sparse input),
    ``z_off[l]`` the cached pre-activation (``-1`` unless layer ``l`` is GELU),
    ``d_off[0:2]`` the two ping-pong delta buffers.
    """
    units = [int(u) for u in layer_units]
    a_off = np.empty(len(units), dtype=np.int64)
    z_off = np.full(len(units), -1, dtype=np.int64)
    pos = 0
    for l, width in enumerate(units):
        a_off[l] = pos
        if not (l == 0 and is_sparse):
            pos += max_rows * width
    for l in range(1, len(units) - 1):
        if hidden_acts[l - 1] == GELU:
            z_off[l] = pos
            pos += max_rows * units[l]
    widest = max(units[1:])
    d_off = np.array([pos, pos + max_rows * widest], dtype=np.int64)
    return a_off, z_off, d_off, pos + 2 * max_rows * widest


@jit(from_python=False)
def _sparse_rows_dot(data, rows, W, w0, n_out, out, o0):
    """``out = X[rows] @ W`` for CSR ``X``, without densifying."""
    n = rows.shape[0]
    out[o0 : o0 + n * n_out] = 0.0
    for i in range(n):
        r = rows[i]
        o = out[o0 + i * n_out : o0 + (i + 1) * n_out]
        for p in range(data.X_indptr[r], data.X_indptr[r + 1]):
            c = data.X_indices[p]
            v = data.X_data[p]
            w = W[w0 + c * n_out : w0 + (c + 1) * n_out]
            for j in range(n_out):
                o[j] += v * w[j]


@jit(from_python=False)
def _sparse_rows_tdot(data, rows, delta, d0, n_out, G, g0, n_features):
    """``G = X[rows].T @ delta`` for CSR ``X``, without densifying."""
    G[g0 : g0 + n_features * n_out] = 0.0
    for i in range(rows.shape[0]):
        r = rows[i]
        d = delta[d0 + i * n_out : d0 + (i + 1) * n_out]
        for p in range(data.X_indptr[r], data.X_indptr[r + 1]):
            c = data.X_indices[p]
            v = data.X_data[p]
            g = G[g0 + c * n_out : g0 + (c + 1) * n_out]
            for j in range(n_out):
                g[j] += v * d[j]


@jit(opt=ORCHESTRATOR, from_python=False)
def forward(data, net, params, rows, ws, a_off, z_off, sparse, dropout):
    """Forward pass of ``rows`` up to the output pre-activation.

    Layer ``l``'s output ``A[l]`` (rows of ``layer_units[l]``) is left in
    ``ws`` at ``a_off[l]``; the last block holds the output layer's
    pre-activation ``Z[L]``, with no output activation applied.  ``sparse``
    is ``data.is_sparse``.  ``dropout`` (a :class:`Dropout`, or ``None``)
    zeroes each hidden unit dropped for a row and scales the kept ones by
    ``1 / (1 - rate)`` (inverted dropout), in ``A[l]`` itself.
    """
    n = rows.shape[0]
    units = net.layer_units
    L = units.shape[0] - 1
    if sparse is None:
        f0 = units[0]
        for i in range(n):
            row = data.X[rows[i]]
            a = ws[a_off[0] + i * f0 : a_off[0] + (i + 1) * f0]
            for j in range(f0):
                a[j] = row[j]
    for l in range(L):
        fi = units[l]
        fo = units[l + 1]
        out = a_off[l + 1]
        # Z = A W + b
        if sparse is not None and l == 0:
            call_separately(
                _sparse_rows_dot, (data, rows, params, net.coef_off[0], fo, ws, out)
            )
        else:
            call_at(
                net.product,
                _PRODUCT_CALL,
                (NN, n, fi, fo, ws, a_off[l], params, net.coef_off[l], ws, out),
            )
        b = params[net.intercept_off[l] : net.intercept_off[l] + fo]
        for i in range(n):
            z = ws[out + i * fo : out + (i + 1) * fo]
            for j in range(fo):
                z[j] += b[j]
        if l < L - 1:
            zpre = ws[0:0]
            if z_off[l + 1] >= 0:
                zpre = ws[z_off[l + 1] : z_off[l + 1] + n * fo]
            call_at(net.act_forward[l], _FORWARD_CALL, (ws[out : out + n * fo], zpre))
            if dropout is not None:
                rate = dropout.rates[l + 1]
                if rate > 0.0:
                    scale = 1.0 / (1.0 - rate)
                    for i in range(n):
                        z = ws[out + i * fo : out + (i + 1) * fo]
                        for j in range(fo):
                            if dropout_keep(dropout.seed, dropout.epoch, rows[i],
                                            l + 1, j, rate):  # fmt: skip
                                z[j] *= scale
                            else:
                                z[j] = 0.0


@jit(opt=ORCHESTRATOR, from_python=False)
def chunk_loss_grad(
    data, net, params, rows, ws, a_off, z_off, d_off, grad, sparse, dropout
):
    """Forward and backward pass of one chunk.

    Writes the chunk's *unnormalised* gradient ``sum_i w_i dloss_i/dparams``
    into ``grad`` (every entry is overwritten) and returns ``sum_i w_i loss_i``.
    The matched loss/activation pair gives the output delta
    ``w_i * (y_hat_i - y_i)`` (the network's ``loss_delta`` kernel).
    ``sparse`` is ``data.is_sparse``.  With ``dropout`` (a :class:`Dropout`,
    else ``None``) the gradient is that of the thinned network: the chain
    rule multiplies each hidden delta by the unit's mask times
    ``1 / (1 - rate)``, and the activation derivative is taken at the
    undropped output (recovered as ``A / scale``, to rounding; dropped units
    get a zero delta whatever it is).
    """
    call_separately(
        forward, (data, net, params, rows, ws, a_off, z_off, sparse, dropout)
    )
    n = rows.shape[0]
    units = net.layer_units
    L = units.shape[0] - 1
    n_out = units[L]
    out = a_off[L]
    loss_sum = call_at(
        net.loss_delta,
        _DELTA_CALL,
        (
            ws[out : out + n * n_out],
            n_out,
            data.Y,
            data.sample_weight,
            rows,
            ws[d_off[0] : d_off[0] + n * n_out],
            net.reported,
        ),
    )
    cur = 0
    for l in range(L - 1, -1, -1):
        fi = units[l]
        fo = units[l + 1]
        d = d_off[cur]
        # coef_grad[l] = A[l].T @ delta[l]
        if sparse is not None and l == 0:
            call_separately(
                _sparse_rows_tdot, (data, rows, ws, d, fo, grad, net.coef_off[0], fi)
            )
        else:
            call_at(
                net.product,
                _PRODUCT_CALL,
                (TN, n, fi, fo, ws, a_off[l], ws, d, grad, net.coef_off[l]),
            )
        # intercept_grad[l] = sum over rows of delta[l]
        gb = grad[net.intercept_off[l] : net.intercept_off[l] + fo]
        gb[:] = 0.0
        for i in range(n):
            di = ws[d + i * fo : d + (i + 1) * fo]
            for j in range(fo):
                gb[j] += di[j]
        if l == 0:
            break
        # Chain rule: delta[l-1] = (delta[l] @ W[l].T) * f'(A[l]), with the
        # weights before any update.
        below = d_off[1 - cur]
        call_at(
            net.product,
            _PRODUCT_CALL,
            (NT, n, fo, fi, ws, d, params, net.coef_off[l], ws, below),
        )
        zpre = ws[0:0]
        if z_off[l] >= 0:
            zpre = ws[z_off[l] : z_off[l] + n * fi]
        rate = 0.0
        if dropout is not None:
            rate = dropout.rates[l]
            if rate > 0.0:
                # A[l] is no longer needed dropped (its coef_grad is done):
                # back to the activation's output for the derivative.
                keep = 1.0 - rate
                for i in range(n):
                    a = ws[a_off[l] + i * fi : a_off[l] + (i + 1) * fi]
                    for j in range(fi):
                        a[j] *= keep
        call_at(
            net.act_derivative[l - 1],
            _DERIVATIVE_CALL,
            (ws[a_off[l] : a_off[l] + n * fi], zpre, ws[below : below + n * fi]),
        )
        if dropout is not None:
            if rate > 0.0:
                scale = 1.0 / (1.0 - rate)
                for i in range(n):
                    db = ws[below + i * fi : below + (i + 1) * fi]
                    for j in range(fi):
                        if dropout_keep(dropout.seed, dropout.epoch, rows[i], l, j,
                                        rate):  # fmt: skip
                            db[j] *= scale
                        else:
                            db[j] = 0.0
        cur = 1 - cur
    return loss_sum


@jit(opt=ORCHESTRATOR, from_python=False)
def weight_sum(sample_weight, rows):
    """``sum_i sample_weight[rows[i]]``, in row order (a per-dtype leaf).

    At the orchestrators' LLVM level, as when this loop was inside
    :func:`batch_gradients`: -O3 would vectorise the sum and change its
    rounding.
    """
    sw_sum = 0.0
    for i in range(rows.shape[0]):
        sw_sum += sample_weight[rows[i]]
    return sw_sum


@jit(from_python=False)
def _chunk(ctx, c):
    """Chunk ``c`` of a batch that :func:`batch_gradients` runs in parallel.

    A worker of :func:`fastbp._numba.parallel.parallel_for`: ``ctx`` holds the
    batch's arguments; the chunk writes its own loss and gradient buffers.
    """
    data, net, params, rows, work, n_chunks, dropout = worker_args(ctx)
    n = rows.shape[0]
    lo = c * n // n_chunks
    hi = (c + 1) * n // n_chunks
    work.chunk_losses[c] = call_separately(
        chunk_loss_grad,
        (data, net, params, rows[lo:hi], work.ws[c], work.a_off, work.z_off,
         work.d_off, work.chunk_grads[c], data.is_sparse, dropout),
    )  # fmt: skip


@jit(opt=ORCHESTRATOR, from_python=False)
def batch_gradients(data, net, params, rows, work, n_chunks, parallel, dropout):
    """Per-chunk unnormalised gradients of a batch, in ``work.chunk_grads[:n_chunks]``.

    Chunk ``c`` is rows ``rows[c n / n_chunks : (c + 1) n / n_chunks]``.
    ``parallel`` is ``None`` for batches of one chunk (run here, directly)
    and ``True`` otherwise (the chunks run in parallel, through
    :func:`fastbp._numba.parallel.parallel_for`); ``dropout`` a :class:`Dropout` or
    ``None`` (no dropout code compiled).  Returns
    ``(sum_i w_i loss_i, sum_i w_i)`` over the batch, summed in chunk order.
    """
    if parallel is None:
        loss_sum = call_separately(
            chunk_loss_grad,
            (data, net, params, rows, work.ws[0], work.a_off, work.z_off,
             work.d_off, work.chunk_grads[0], data.is_sparse, dropout),
        )  # fmt: skip
    else:
        args = (data, net, params, rows, work, np.int64(n_chunks), dropout)
        parallel_for(_chunk, args, n_chunks)
        loss_sum = 0.0
        for c in range(n_chunks):  # fixed order: thread-count independent
            loss_sum += work.chunk_losses[c]
    sw_sum = call_separately(weight_sum, (data.sample_weight, rows))
    return loss_sum, sw_sum


@checked(check_predict)
@jit(opt=ORCHESTRATOR)
def predict_rows(data, net, params, index, lo, hi, block_rows, ws, a_off, z_off, out):
    """Predictions ``y_hat`` (after the output activation) of rows ``lo:hi``.

    Rows are processed in blocks of ``block_rows`` starting at ``lo`` (the
    workspace holds one block) and written to ``out[lo:hi]``; ``index`` is
    ``arange(n_rows)``, sliced to name each block's rows.
    Single-threaded and free of the GIL: callers split large inputs over
    Python threads, each with its own workspace.
    """
    L = net.layer_units.shape[0] - 1
    n_out = net.layer_units[L]
    z0 = a_off[L]
    for start in range(lo, hi, block_rows):
        rows = index[start : smaller(start + block_rows, hi)]
        n = rows.shape[0]
        call_separately(
            forward, (data, net, params, rows, ws, a_off, z_off, data.is_sparse, None)
        )
        z = ws[z0 : z0 + n * n_out]
        call_at(net.loss_output, _OUTPUT_CALL, (z, n_out))
        for i in range(n):
            o = out[start + i]
            zi = z[i * n_out : (i + 1) * n_out]
            for j in range(n_out):
                o[j] = zi[j]
