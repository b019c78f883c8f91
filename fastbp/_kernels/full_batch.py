"""Full-batch solvers: L-BFGS and nonlinear conjugate gradient through scipy.

Both minimise the full-batch objective (data loss + L2 term) on the flat
parameter vector, with the fused loss-and-gradient of :func:`loss_grad` (called
through :meth:`fastbp._network.Network.loss_grad`) as ``jac=True`` callback:
there is no packing or unpacking of per-layer lists per evaluation.  scipy works in
float64; for float32 models each evaluation casts the iterate down, runs the
float32 kernels, and hands the gradient back in float64, so the model's
parameters stay float32.

Conjugate gradient is a full-batch method: its conjugacy and line search
assume the same objective at every step, which mini-batches would break.
"""

import numpy as np
import scipy.optimize

from .._numba import ORCHESTRATOR, call_separately, jit, smaller
from .backprop import batch_gradients
from .boundary import check_loss_grad, checked
from .update import finish_and_step, inverse_weight_sum


@jit(from_python=False)
def _add_into(total, part):
    """``total += part``: a leaf, so that LLVM vectorises it at -O3."""
    for k in range(total.shape[0]):
        total[k] += part[k]


@checked(check_loss_grad)
@jit(opt=ORCHESTRATOR)
def loss_grad(
    data,
    net,
    params,
    rows,
    work,
    n_chunks,
    blocks,
    opt,
    alpha,
    grad,
    sums,
    sub_rows,
    parallel_chunks,
    parallel_blocks,
):
    """Loss and gradient of the batch ``rows``, normalised as scikit-learn does.

    ``loss = (sum_i w_i loss_i + alpha/2 ||W||^2) / sum_i w_i`` and
    ``grad = (sum_i w_i dloss_i + alpha W) / sum_i w_i`` (intercepts are not
    penalised); ``work.layer_sq`` receives each layer's squared
    coefficient-gradient norm.  ``opt`` is an :class:`fastbp._kernels.update.Optimizer`
    with no state (no step is taken).

    The batch is walked in sub-batches of at most ``sub_rows`` rows, each split
    into up to ``n_chunks`` chunks, whose raw sums are added up in order: the
    workspace (and the rows gathered into it) stays bounded, so X is never
    copied whole, and the sums never depend on the thread count.  ``sums``
    (shape ``(1, n_params)``, zeros) receives the raw sum; Python allocates
    it: an allocation here would compile numba's allocation helpers and
    reference counting into the first full-batch fit.
    """
    n = rows.shape[0]
    total = sums[0]
    loss_sum = 0.0
    sw_sum = 0.0
    for start in range(0, n, sub_rows):
        sub = rows[start : smaller(start + sub_rows, n)]
        sub_chunks = smaller(n_chunks, sub.shape[0])
        sub_loss, sub_sw = call_separately(
            batch_gradients,
            (data, net, params, sub, work, sub_chunks, parallel_chunks, None),
        )
        loss_sum += sub_loss
        sw_sum += sub_sw
        for c in range(sub_chunks):  # fixed order: thread-count independent
            call_separately(_add_into, (total, work.chunk_grads[c]))
    inv_sw = inverse_weight_sum(sw_sum)
    # Typed constants, not literals: numba would compile a copy per literal.
    sq_w, _ = call_separately(
        finish_and_step,
        (True, None, None, None, blocks, sums, np.int64(1), params, grad, alpha,
         inv_sw, opt, 1.0, work.layer_sq, parallel_blocks),
    )  # fmt: skip
    return (loss_sum + 0.5 * alpha * sq_w) * inv_sw


class FullBatchObjective:
    """``fun(x) -> (loss, grad)`` for scipy, with per-evaluation bookkeeping.

    Parameters
    ----------
    network : fastbp._network.Network
    Xk : tuple
        Output of :func:`fastbp._network.kernel_input`.
    Y, sample_weight : ndarray
    alpha : float
    dtype : numpy dtype
        The model's dtype.

    """

    def __init__(self, network, Xk, Y, sample_weight, alpha, dtype):
        self.network = network
        self.Xk = Xk
        self.Y = Y
        self.sample_weight = sample_weight
        self.alpha = alpha
        self.params = np.empty(network.layout.n_params, dtype=dtype)
        self.grad = np.empty_like(self.params)
        self.n_evaluations = 0
        self.last_loss = np.inf

    def __call__(self, x):
        """Evaluate loss and gradient at ``x``."""
        self.params[...] = x
        loss = self.network.loss_grad(
            self.Xk, self.Y, self.sample_weight, self.params, self.alpha, self.grad
        )
        self.n_evaluations += 1
        self.last_loss = loss
        return loss, self.grad.astype(np.float64)

    def layer_grad_norms(self):
        """L2 norm of each layer's coefficient gradient at the last evaluation."""
        layout = self.network.layout
        return np.array(
            [
                np.linalg.norm(layout.coef_view(self.grad, i))
                for i in range(layout.n_layers)
            ]
        )


def minimize(objective, x0, method, max_iter, max_fun, tol, lbfgs_options, callback):
    """Run scipy's L-BFGS-B or CG on ``objective`` from ``x0``.

    Parameters
    ----------
    objective : FullBatchObjective
    x0 : ndarray
    method : {"lbfgs", "cg"}
    max_iter, max_fun : int
        Iteration and function-evaluation limits (``max_fun`` is enforced by
        L-BFGS-B itself; CG has no such option and is bounded by ``max_iter``).
    tol : float
        Gradient tolerance ``gtol``.
    lbfgs_options : dict
        Extra L-BFGS-B options (verbosity), as scikit-learn passes them.
    callback : callable
        Called after each iteration.

    Returns
    -------
    scipy.optimize.OptimizeResult

    """
    x0 = np.asarray(x0, dtype=np.float64)
    # Overflow inside scipy's line search on absurd data must not escape as
    # numpy warnings: the caller checks the result for non-finite values.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _minimize(
            objective, x0, method, max_iter, max_fun, tol, lbfgs_options, callback
        )


def _minimize(objective, x0, method, max_iter, max_fun, tol, lbfgs_options, callback):
    if method == "lbfgs":
        return scipy.optimize.minimize(
            objective,
            x0,
            method="L-BFGS-B",
            jac=True,
            callback=callback,
            options={
                "maxfun": max_fun,
                "maxiter": max_iter,
                "gtol": tol,
                **lbfgs_options,
            },
        )
    return scipy.optimize.minimize(
        objective,
        x0,
        method="CG",
        jac=True,
        callback=callback,
        options={"maxiter": max_iter, "gtol": tol},
    )
