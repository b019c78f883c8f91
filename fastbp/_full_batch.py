"""Full-batch solvers: L-BFGS and nonlinear conjugate gradient through scipy.

Both minimise the full-batch objective (data loss + L2 term) on the flat
parameter vector, with the fused loss-and-gradient of
:meth:`fastbp._backprop.Network.loss_grad` as ``jac=True`` callback: there is
no packing or unpacking of per-layer lists per evaluation.  scipy works in
float64; for float32 models each evaluation casts the iterate down, runs the
float32 kernels, and hands the gradient back in float64, so the model's
parameters stay float32.

Conjugate gradient is a full-batch method: its conjugacy and line search
assume the same objective at every step, which mini-batches would break.
"""

import numpy as np
import scipy.optimize


class FullBatchObjective:
    """``fun(x) -> (loss, grad)`` for scipy, with per-evaluation bookkeeping.

    Parameters
    ----------
    network : fastbp._backprop.Network
    Xk : tuple
        Output of :func:`fastbp._backprop.kernel_input`.
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
