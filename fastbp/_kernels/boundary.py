"""What every compiled entry checks in Python before any compiled code runs.

Compiled code does no bounds checks: an array of another dtype, a shape that
does not match the network, a non-contiguous view, an out-of-range row index
or a kernel address the process never handed out would be read as garbage or
crash the process.  The three kernels Python calls
(:func:`fastbp._kernels.epoch.run_epoch`,
:func:`fastbp._kernels.full_batch.loss_grad`,
:func:`fastbp._kernels.backprop.predict_rows`) are therefore wrapped by
:func:`checked`, which runs their argument check first; a check raises
``TypeError`` (a wrong type or dtype) or ``ValueError`` (a wrong shape,
layout or value) and costs microseconds per call (one epoch, or one share of
a prediction), plus one pass over a sparse input's indices.
"""

import functools

import numpy as np

from .activations import DERIVATIVE, FORWARD, GELU
from .linalg import PRODUCT
from .losses import DELTA, OUTPUT
from .optimizers import N_HYPER


def checked(check):
    """Run ``check(*args)`` before every call of the decorated kernel.

    The kernel itself stays reachable as the wrapper's ``kernel`` attribute
    (tests read its compiled signatures there).
    """

    def decorate(kernel):
        @functools.wraps(getattr(kernel, "py_func", kernel))
        def entry(*args):
            check(*args)
            return kernel(*args)

        entry.kernel = kernel
        return entry

    return decorate


def _array(name, a, dtype, ndim, writeable=False):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return a


def _shape(name, a, shape):
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")


def _switch(name, value):
    if value is not None and value is not True:
        raise TypeError(f"{name} must be None or True, got {value!r}")


def _count(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _indices(name, index, n):
    """``index`` is int64, 1-D, contiguous, every value in ``[0, n)``."""
    _array(name, index, np.int64, 1)
    if index.size and (index.min() < 0 or index.max() >= n):
        raise ValueError(f"{name} holds a row index outside [0, {n})")


def _member(name, address, table, dtype, codes):
    """The code of ``address``, which ``table`` handed out for ``dtype``."""
    code = table.code_of(int(address), dtype)
    if code is None:
        raise ValueError(f"{name} is not a kernel address of this process")
    codes.append(code)


def _net(net, dtype, n_params):
    """Check a :class:`fastbp._kernels.backprop.Net`; return its units and codes."""
    units = _array("net.layer_units", net.layer_units, np.int64, 1)
    L = units.shape[0] - 1
    if L < 1 or units.min() < 1:
        raise ValueError("net.layer_units must hold >= 2 positive sizes")
    _array("net.coef_off", net.coef_off, np.int64, 1)
    _array("net.intercept_off", net.intercept_off, np.int64, 1)
    _shape("net.coef_off", net.coef_off, (L,))
    _shape("net.intercept_off", net.intercept_off, (L,))
    for l in range(L):
        for kind, lo, size in (
            ("coefficients", net.coef_off[l], units[l] * units[l + 1]),
            ("intercepts", net.intercept_off[l], units[l + 1]),
        ):
            if lo < 0 or lo + size > n_params:
                raise ValueError(
                    f"layer {l}'s {kind} lie outside the {n_params} parameters"
                )
    codes = []
    for field, table in (("act_forward", FORWARD), ("act_derivative", DERIVATIVE)):
        addresses = _array(f"net.{field}", getattr(net, field), np.int64, 1)
        _shape(f"net.{field}", addresses, (L - 1,))
        for l, address in enumerate(addresses):
            _member(f"net.{field}[{l}]", address, table, dtype, codes)
    hidden = codes[: L - 1]
    if hidden != codes[L - 1 :]:
        raise ValueError(
            "net.act_forward and net.act_derivative name other activations"
        )
    loss = []
    for field, table in (("loss_output", OUTPUT), ("loss_delta", DELTA)):
        _member(f"net.{field}", getattr(net, field), table, dtype, loss)
    _member("net.product", net.product, PRODUCT, dtype, [])
    if not isinstance(net.reported, bool | np.bool_):
        raise TypeError("net.reported must be a bool")
    return units, hidden


def _data(data, dtype, units, with_targets):
    """Check a :class:`fastbp._kernels.backprop.Data`; return its number of rows."""
    n_features, n_out = int(units[0]), int(units[-1])
    _switch("data.is_sparse", data.is_sparse)
    X = _array("data.X", data.X, dtype, 2)
    X_data = _array("data.X_data", data.X_data, dtype, 1)
    indices = _array("data.X_indices", data.X_indices, np.int64, 1)
    indptr = _array("data.X_indptr", data.X_indptr, np.int64, 1)
    if X.shape[1] != n_features:
        raise ValueError(f"data.X has {X.shape[1]} features, the network {n_features}")
    if data.is_sparse is None:
        n = X.shape[0]
    else:
        n = indptr.shape[0] - 1
        if (
            n < 0
            or indptr[0] != 0
            or np.any(np.diff(indptr) < 0)
            or indptr[-1] != indices.shape[0]
            or X_data.shape != indices.shape
        ):
            raise ValueError("data.X_indptr does not fit data.X_indices")
        if indices.size and (indices.min() < 0 or indices.max() >= n_features):
            raise ValueError(f"data.X_indices holds a column outside [0, {n_features})")
    Y = _array("data.Y", data.Y, dtype, 2)
    sample_weight = _array("data.sample_weight", data.sample_weight, dtype, 1)
    if with_targets:
        _shape("data.Y", Y, (n, n_out))
        _shape("data.sample_weight", sample_weight, (n,))
    return n


def _workspace(name, ws, a_off, z_off, units, hidden, rows, is_sparse):
    """``ws`` (a chunk's flat workspace) holds ``rows`` rows of every layer."""
    L = units.shape[0] - 1
    _array(f"{name} a_off", a_off, np.int64, 1)
    _array(f"{name} z_off", z_off, np.int64, 1)
    _shape(f"{name} a_off", a_off, (L + 1,))
    _shape(f"{name} z_off", z_off, (L + 1,))
    size = ws.shape[-1]
    spans = [(a_off[l], units[l]) for l in range(1 if is_sparse else 0, L + 1)]
    for l, code in enumerate(hidden, start=1):
        if code == GELU:
            spans.append((z_off[l], units[l]))
    for lo, width in spans:
        if lo < 0 or lo + rows * width > size:
            raise ValueError(f"{name} is too small for {rows} rows of this network")


def _work(work, dtype, units, hidden, n_params, chunks, rows, is_sparse):
    """Check a :class:`fastbp._kernels.backprop.Workspace` for ``chunks`` x ``rows``."""
    ws = _array("work.ws", work.ws, dtype, 2, writeable=True)
    _workspace("work.ws", ws, work.a_off, work.z_off, units, hidden, rows, is_sparse)
    d_off = _array("work.d_off", work.d_off, np.int64, 1)
    _shape("work.d_off", d_off, (2,))
    widest = int(units[1:].max())
    if d_off.min() < 0 or d_off.max() + rows * widest > ws.shape[1]:
        raise ValueError("work.ws is too small for the deltas")
    grads = _array("work.chunk_grads", work.chunk_grads, dtype, 2, writeable=True)
    losses = _array("work.chunk_losses", work.chunk_losses, np.float64, 1, True)
    layer_sq = _array("work.layer_sq", work.layer_sq, np.float64, 1, writeable=True)
    _shape("work.layer_sq", layer_sq, (units.shape[0] - 1,))
    if grads.shape[1] != n_params:
        raise ValueError(f"work.chunk_grads rows must hold {n_params} parameters")
    if min(ws.shape[0], grads.shape[0], losses.shape[0]) < chunks:
        raise ValueError(f"the workspace holds fewer than {chunks} chunks")


def _blocks(blocks, L, n_params):
    start = _array("blocks.start", blocks.start, np.int64, 1)
    stop = _array("blocks.stop", blocks.stop, np.int64, 1)
    layer = _array("blocks.layer", blocks.layer, np.int64, 1)
    _array("blocks.is_coef", blocks.is_coef, np.bool_, 1)
    _array("blocks.partial", blocks.partial, np.float64, 2, writeable=True)
    n = start.shape[0]
    for name, a, shape in (("stop", stop, (n,)), ("layer", layer, (n,)),
                           ("is_coef", blocks.is_coef, (n,)),
                           ("partial", blocks.partial, (n, 2))):  # fmt: skip
        _shape(f"blocks.{name}", a, shape)
    if n and (start.min() < 0 or stop.max() > n_params or np.any(stop < start)
              or layer.min() < 0 or layer.max() >= L):  # fmt: skip
        raise ValueError("blocks lie outside the parameters or the layers")


def _optimizer(opt, dtype, n_params, states):
    _array("opt.hyper", opt.hyper, np.float64, 1, writeable=True)
    _shape("opt.hyper", opt.hyper, (N_HYPER,))
    for k, state in enumerate((opt.state_1, opt.state_2), start=1):
        _array(f"opt.state_{k}", state, dtype, 1, writeable=True)
        if k <= states:
            _shape(f"opt.state_{k}", state, (n_params,))


def _params(params, writeable=True):
    """Check the flat parameter vector; return its dtype and length."""
    if not isinstance(params, np.ndarray):
        raise TypeError(f"params must be a numpy array, got {type(params).__name__}")
    if params.dtype not in (np.float32, np.float64):
        raise TypeError(f"params has dtype {params.dtype}, expected float32 or float64")
    _array("params", params, params.dtype, 1, writeable)
    return params.dtype, params.shape[0]


def _chunk_rows(batch_rows, n_chunks):
    """Rows of the largest chunk when ``batch_rows`` rows make ``n_chunks``."""
    return -(-batch_rows // n_chunks)


def check_order(order, n_rows):
    """An epoch's sample order: int64, every value in ``[0, n_rows)``.

    What :class:`fastbp._network.EpochRunner` checks per epoch, having
    checked the rest of :func:`check_epoch`'s arguments once.
    """
    _indices("order", order, n_rows)


def check_epoch(bundle, order, batch_size, n_chunks, adam, sgd, adam_t, alpha,
                max_grad_norm, parallel_chunks, parallel_blocks, dropout):  # fmt: skip
    """The arguments of :func:`fastbp._kernels.epoch.run_epoch`."""
    data, net, params, work, blocks, opt, grad, layer_grad_norms = bundle
    dtype, n_params = _params(params)
    units, hidden = _net(net, dtype, n_params)
    L = units.shape[0] - 1
    n = _data(data, dtype, units, with_targets=True)
    batch_size = _count("batch_size", batch_size, 1)
    n_chunks = _count("n_chunks", n_chunks, 1)
    _count("adam_t", adam_t, 0)
    for name, value in (("adam", adam), ("sgd", sgd),
                        ("parallel_chunks", parallel_chunks),
                        ("parallel_blocks", parallel_blocks)):  # fmt: skip
        _switch(name, value)
    if (adam is None) == (sgd is None):
        raise ValueError("exactly one of adam and sgd must be True")
    for name, value in (("alpha", alpha), ("max_grad_norm", max_grad_norm)):
        if value is not None and not isinstance(value, float):
            raise TypeError(f"{name} must be a float")
    check_order(order, n)
    rows = _chunk_rows(batch_size, n_chunks)
    _work(work, dtype, units, hidden, n_params, n_chunks, rows, data.is_sparse)
    _blocks(blocks, L, n_params)
    _optimizer(opt, dtype, n_params, 2 if adam else 1)
    _array("grad", grad, dtype, 1, writeable=True)
    _shape("grad", grad, (n_params,))
    _array("layer_grad_norms", layer_grad_norms, np.float64, 1, writeable=True)
    _shape("layer_grad_norms", layer_grad_norms, (L,))
    if dropout is not None:
        _array("dropout.rates", dropout.rates, np.float64, 1)
        _shape("dropout.rates", dropout.rates, (L + 1,))
        if not (np.all(dropout.rates >= 0.0) and np.all(dropout.rates < 1.0)):
            raise ValueError("dropout.rates must lie in [0, 1)")
        if not isinstance(dropout.seed, np.uint64):
            raise TypeError("dropout.seed must be a numpy uint64")
        _count("dropout.epoch", dropout.epoch, 0)


def check_loss_grad(data, net, params, rows, work, n_chunks, blocks, opt, alpha,
                    grad, sums, sub_rows, parallel_chunks,
                    parallel_blocks):  # fmt: skip
    """The arguments of :func:`fastbp._kernels.full_batch.loss_grad`."""
    dtype, n_params = _params(params)
    _array("grad", grad, dtype, 1, writeable=True)
    _shape("grad", grad, (n_params,))
    units, hidden = _net(net, dtype, n_params)
    n = _data(data, dtype, units, with_targets=True)
    n_chunks = _count("n_chunks", n_chunks, 1)
    sub_rows = _count("sub_rows", sub_rows, 1)
    _switch("parallel_chunks", parallel_chunks)
    _switch("parallel_blocks", parallel_blocks)
    if not isinstance(alpha, float):
        raise TypeError("alpha must be a float")
    _indices("rows", rows, n)
    most = _chunk_rows(min(sub_rows, rows.shape[0]), n_chunks)
    _work(work, dtype, units, hidden, n_params, n_chunks, most, data.is_sparse)
    _blocks(blocks, units.shape[0] - 1, n_params)
    _optimizer(opt, dtype, n_params, 0)
    _array("sums", sums, dtype, 2, writeable=True)
    _shape("sums", sums, (1, n_params))


def check_predict(data, net, params, index, lo, hi, block_rows, ws, a_off, z_off,
                  out):  # fmt: skip
    """The arguments of :func:`fastbp._kernels.backprop.predict_rows`."""
    dtype, n_params = _params(params, writeable=False)
    units, hidden = _net(net, dtype, n_params)
    n = _data(data, dtype, units, with_targets=False)
    _indices("index", index, n)
    lo = _count("lo", lo, 0)
    hi = _count("hi", hi, lo)
    block_rows = _count("block_rows", block_rows, 1)
    _array("ws", ws, dtype, 1, writeable=True)
    _workspace("ws", ws, a_off, z_off, units, hidden, block_rows, data.is_sparse)
    _array("out", out, dtype, 2, writeable=True)
    if hi > index.shape[0] or hi > out.shape[0] or out.shape[1] != units[-1]:
        raise ValueError(
            f"rows {lo}:{hi} do not fit index ({index.shape[0]}) and out {out.shape}"
        )
