"""The Python side of the kernels: a network's bundles, scratch and entry points.

:class:`Network` turns a ``ParamLayout``, the activation
codes and the loss code into the named tuples the kernels take
(:class:`fastbp._kernels.backprop.Net`, :class:`~fastbp._kernels.backprop.Workspace`,
:class:`fastbp._kernels.update.Blocks`), keeps the scratch buffers between calls, and
decides in Python which compiled variant a call needs (parallel chunks or not,
parallel blocks or not), so that a configuration compiles only what it runs.
It holds arrays and plain values only.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import scipy.sparse as sp

from ._kernels import epoch as _epoch
from ._kernels import full_batch as _full_batch
from ._kernels.activations import DERIVATIVE, FORWARD
from ._kernels.backprop import (
    Data,
    Dropout,
    Net,
    Workspace,
    n_chunks_for,
    predict_rows,
    workspace_layout,
)
from ._kernels.boundary import check_epoch, check_order
from ._kernels.linalg import BLAS, LOOPS, PRODUCT, SMALL_ROWS
from ._kernels.losses import DELTA, OUTPUT, REPORTED
from ._kernels.optimizers import N_HYPER
from ._kernels.update import (
    PARALLEL_MIN_PARAMS,
    Optimizer,
    parameter_blocks,
)

#: The fields of :class:`fastbp._kernels.backprop.Data` in the fit's float dtype.
_FLOAT_FIELDS = frozenset({"X", "X_data", "Y", "sample_weight"})


def _check_dtypes(data, params):
    """Raise unless every float array of ``data`` has the parameters' dtype.

    The kernels are compiled for one float dtype: another dtype would
    compile a mixed variant (or fail to) instead of being converted.
    """
    for name in _FLOAT_FIELDS:
        dtype = getattr(data, name).dtype
        if dtype != params.dtype:
            raise TypeError(
                f"Data.{name} is {dtype}, the parameters are {params.dtype}: "
                "every float array of a fit must have the parameters' dtype."
            )


#: Rows per block of prediction (the unit of work of one kernel step; a
#: thread's share is always a whole number of blocks, so predictions never
#: depend on the thread count).
PREDICT_ROWS = 256
#: Largest batch evaluated in one piece; larger ones (the full batch of L-BFGS
#: and CG) are walked in sub-batches of this many rows, bounding the workspace.
SUB_BATCH_ROWS = 8 * 1024


def kernel_input(X, dtype):
    """Return the ``(X, data, indices, indptr, is_sparse)`` tuple kernels take.

    Dense input must already be validated; it is made C-contiguous in
    ``dtype``.  Sparse input is converted to CSR (CSC is transposed once, never
    densified), with a dense placeholder of shape ``(0, n_features)`` in
    place of ``X``.  ``is_sparse`` is ``True`` or ``None``: for dense input
    numba prunes the sparse code before compiling it.
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
        None,
    )


def _n_rows(Xk):
    return Xk[3].shape[0] - 1 if Xk[4] else Xk[0].shape[0]


def _max_chunk_rows(batch_size):
    """Rows of the largest chunk of a batch of ``batch_size`` rows."""
    return -(-batch_size // n_chunks_for(batch_size))


def _flag(on):
    """``True`` or ``None``: the kernels' compile-time switch."""
    return True if on else None


_pool = None
_pool_lock = threading.Lock()


def _thread_pool():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=numba.config.NUMBA_NUM_THREADS,
                thread_name_prefix="fastbp",
            )
        return _pool


class Network:
    """A network's structure and scratch space, as seen by the kernels.

    Parameters
    ----------
    layout : ParamLayout
    hidden_codes : ndarray of int64
        Activation code of each hidden layer.
    loss_code : int
        Loss code (which fixes the output activation), plus
        ``fastbp._kernels.losses.REPORTED`` for the value scikit-learn reports.

    """

    def __init__(self, layout, hidden_codes, loss_code):
        self.layout = layout
        self.hidden_codes = np.ascontiguousarray(hidden_codes, dtype=np.int64)
        self.loss_code = int(loss_code)
        self._nets = {}
        self.blocks = parameter_blocks(
            layout.layer_units, layout.coef_offsets, layout.intercept_offsets
        )
        self.parallel_blocks = _flag(layout.n_params >= PARALLEL_MIN_PARAMS)
        self._scratch = {}

    def net(self, dtype, batch_size=None):
        """The :class:`fastbp._kernels.backprop.Net` for ``dtype`` (cached).

        Compiles (or loads) the network's activation, loss and product
        kernels for ``dtype`` the first time, and holds their addresses.
        ``batch_size`` is the batch a workspace is sized for (``None``:
        prediction); where it makes chunks of at most
        :data:`fastbp._kernels.linalg.SMALL_ROWS` rows, the products are loops.
        """
        small = batch_size is not None and _max_chunk_rows(batch_size) <= SMALL_ROWS
        key = (np.dtype(dtype).str, small)
        if key not in self._nets:
            loss = self.loss_code % REPORTED
            self._nets[key] = Net(
                self.layout.layer_units,
                self.layout.coef_offsets,
                self.layout.intercept_offsets,
                np.array(
                    [FORWARD.address(c, dtype) for c in self.hidden_codes],
                    dtype=np.int64,
                ),
                np.array(
                    [DERIVATIVE.address(c, dtype) for c in self.hidden_codes],
                    dtype=np.int64,
                ),
                np.int64(OUTPUT.address(loss, dtype)),
                np.int64(DELTA.address(loss, dtype)),
                self.loss_code >= REPORTED,
                np.int64(PRODUCT.address(LOOPS if small else BLAS, dtype)),
            )
        return self._nets[key]

    def workspace(self, batch_size, dtype, is_sparse):
        """Return ``(work, n_chunks)`` for batches of ``batch_size`` rows (cached)."""
        key = (int(batch_size), np.dtype(dtype).str, bool(is_sparse))
        if key not in self._scratch:
            n_chunks = n_chunks_for(batch_size)
            max_rows = _max_chunk_rows(batch_size)
            a_off, z_off, d_off, size = workspace_layout(
                self.layout.layer_units, self.hidden_codes, max_rows, is_sparse
            )
            work = Workspace(
                np.empty((n_chunks, size), dtype=dtype),
                a_off,
                z_off,
                d_off,
                np.empty((n_chunks, self.layout.n_params), dtype=dtype),
                np.empty(n_chunks, dtype=np.float64),
                np.empty(self.layout.n_layers, dtype=np.float64),
            )
            self._scratch[key] = (work, n_chunks)
        return self._scratch[key]

    def epochs(self, Xk, Y, sample_weight, batch_size, params, hyper, state_1,
               state_2, adam, alpha, max_grad_norm, grad, layer_grad_norms,
               dropout_rates=None, dropout_seed=0):  # fmt: skip
        """An :class:`EpochRunner`: the epoch kernel bound to a training call's arrays.

        ``Xk`` is the tuple from :func:`kernel_input`; ``hyper``, ``state_1``
        and ``state_2`` are the optimizer's hyperparameters and state
        (``hyper`` is the runner's: see :meth:`EpochRunner.run`); ``adam``
        whether it is Adam's (else SGD's); ``max_grad_norm`` a float or
        ``None`` (no clipping); ``dropout_rates`` the rate of every layer
        (input and output 0) with ``dropout_seed`` its mask seed, or ``None``.
        The arrays are trained in place.
        """
        optimizer = Optimizer(hyper, state_1, state_2)
        dropout = None
        if dropout_rates is not None:
            rates = np.ascontiguousarray(dropout_rates, dtype=np.float64)
            dropout = Dropout(rates, np.uint64(dropout_seed), np.int64(0))
        return EpochRunner(self, Xk, Y, sample_weight, batch_size, params, optimizer,
                           adam, alpha, max_grad_norm, grad, layer_grad_norms,
                           dropout)  # fmt: skip

    def loss_grad(self, Xk, Y, sample_weight, params, alpha, grad, rows=None):
        """Loss and gradient (into ``grad``) of the batch ``rows`` (default: all).

        ``Xk`` is the tuple from :func:`kernel_input`.
        """
        if rows is None:
            rows = np.arange(Y.shape[0], dtype=np.int64)
        sub_batch = min(rows.shape[0], SUB_BATCH_ROWS)
        work, n_chunks = self.workspace(sub_batch, params.dtype, Xk[4])
        data = Data(*Xk, Y, sample_weight)
        _check_dtypes(data, params)
        no_state = params[:0]
        opt = Optimizer(np.zeros(N_HYPER), no_state, no_state)
        return _full_batch.loss_grad(
            data,
            self.net(params.dtype, sub_batch),
            params,
            rows,
            work,
            n_chunks,
            self.blocks,
            opt,
            float(alpha),
            grad,
            np.zeros((1, params.shape[0]), dtype=params.dtype),
            SUB_BATCH_ROWS,
            _flag(n_chunks > 1),
            self.parallel_blocks,
        )

    def _prediction_layout(self, is_sparse):
        """``(a_off, z_off, size)`` of a prediction's workspace (cached)."""
        key = ("predict", bool(is_sparse))
        if key not in self._scratch:
            a_off, z_off, _, size = workspace_layout(
                self.layout.layer_units, self.hidden_codes, PREDICT_ROWS, is_sparse
            )
            self._scratch[key] = (a_off, z_off, size)
        return self._scratch[key]

    def predict(self, Xk, params):
        """Return ``y_hat`` (after the output activation) for every row.

        Blocks of ``PREDICT_ROWS`` rows are shared out over up to
        ``numba.get_num_threads()`` Python threads, each running the
        single-threaded kernel without the GIL.
        """
        n = _n_rows(Xk)
        out = np.empty((n, int(self.layout.layer_units[-1])), dtype=params.dtype)
        if n == 0:
            return out
        dummy = np.empty((0, out.shape[1]), dtype=params.dtype)
        data = Data(*Xk, dummy, np.empty(0, dtype=params.dtype))
        _check_dtypes(data, params)
        index = np.arange(n, dtype=np.int64)
        n_blocks = -(-n // PREDICT_ROWS)
        n_threads = max(1, min(numba.get_num_threads(), n_blocks // 2))
        # Contiguous shares of whole blocks.
        edges = [PREDICT_ROWS * (n_blocks * t // n_threads) for t in range(n_threads)]
        edges.append(n)
        a_off, z_off, size = self._prediction_layout(Xk[4])
        net = self.net(params.dtype)

        def share(t):
            ws = np.empty(size, dtype=params.dtype)
            predict_rows(data, net, params, index, edges[t], edges[t + 1],
                         PREDICT_ROWS, ws, a_off, z_off, out)  # fmt: skip

        if n_threads == 1:
            share(0)
        else:
            list(_thread_pool().map(share, range(n_threads)))
        return out


class EpochRunner:
    """:func:`fastbp._kernels.epoch.run_epoch` bound to one training call's arrays.

    Made by :meth:`Network.epochs`.  The bundle of arrays is built once,
    here, and the runner holds it for as long as it lives.
    """

    def __init__(self, network, Xk, Y, sample_weight, batch_size, params,
                 optimizer, adam, alpha, max_grad_norm, grad, layer_grad_norms,
                 dropout):  # fmt: skip
        work, n_chunks = network.workspace(batch_size, params.dtype, Xk[4])
        data = Data(*Xk, Y, sample_weight)
        _check_dtypes(data, params)
        self._n_rows = int(Y.shape[0])
        self.hyper = optimizer.hyper
        self._dropout = dropout
        self._bundle = _epoch.EpochBundle(
            data, network.net(params.dtype, batch_size), params, work,
            network.blocks, optimizer, grad, layer_grad_norms,
        )  # fmt: skip
        self._settings = (
            int(batch_size), n_chunks, _flag(adam), _flag(not adam), float(alpha),
            None if max_grad_norm is None else float(max_grad_norm),
            _flag(n_chunks > 1), network.parallel_blocks,
        )  # fmt: skip
        # Everything but the order, once: the bundle is the runner's own.
        check_epoch(self._bundle, np.empty(0, dtype=np.int64), *self._settings[:4],
                    0, *self._settings[4:], dropout)  # fmt: skip

    def run(self, order, adam_t, dropout_epoch=0):
        """Train one epoch in place; ``(loss_sum, n_batches, status, adam_t)``.

        ``order`` is the epoch's sample order (int64), ``adam_t`` Adam's
        update count so far, ``dropout_epoch`` the epoch's dropout key.  The
        optimizer's hyperparameters are read from ``hyper`` (the optimizer's
        array, an attribute of the runner), which the caller may rewrite
        between epochs (learning-rate schedules).
        """
        (batch_size, n_chunks, adam_on, sgd_on, alpha, max_grad_norm,
         parallel_chunks, parallel_blocks) = self._settings  # fmt: skip
        dropout = self._dropout
        if dropout is not None:
            dropout = dropout._replace(epoch=np.int64(dropout_epoch))
        check_order(order, self._n_rows)
        return _epoch.run_epoch.kernel(
            self._bundle, order, batch_size, n_chunks, adam_on, sgd_on,
            int(adam_t), alpha, max_grad_norm, parallel_chunks, parallel_blocks,
            dropout,
        )  # fmt: skip
