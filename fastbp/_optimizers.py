"""Optimizer steps on the flat parameter vector, and learning-rate schedules.

The update rules are scikit-learn's (``sklearn/neural_network/
_stochastic_optimizers.py``), written as single loops over one flat vector:

* SGD with momentum ``mu`` and learning rate ``eta``::

      v <- mu v - eta g
      p <- p + v                     (classical momentum)
      p <- p + mu v - eta g          (Nesterov's momentum)

* Adam, at update ``t`` (counted from 1)::

      m <- b1 m + (1 - b1) g
      v <- b2 v + (1 - b2) g**2
      eta_t = eta sqrt(1 - b2**t) / (1 - b1**t)
      p <- p - eta_t m / (sqrt(v) + eps)

Gradient clipping (:func:`clip_grad_norm`) rescales the whole mini-batch
gradient so that its global L2 norm is at most ``max_grad_norm``, before the
step.  Learning-rate schedules act between epochs, in plain Python
(:class:`LearningRateSchedule`).
"""

import math

import numpy as np

from ._jit import jit

SGD = 0
ADAM = 1

#: Public name -> kernel code, for the stochastic solvers.
STOCHASTIC_SOLVERS = {"sgd": SGD, "adam": ADAM}


# Layout of the ``hyper`` array the epoch kernel passes to :func:`step_range`.
LEARNING_RATE = 0
MOMENTUM = 1
NESTEROV = 2
BETA_1 = 3
BETA_2 = 4
EPSILON = 5
#: Adam's bias-corrected step size of the current update.
ADAM_LR_T = 6
N_HYPER = 7


@jit()
def adam_learning_rate(learning_rate, beta_1, beta_2, t):
    """Adam's step size at update ``t``: ``eta sqrt(1 - b2**t) / (1 - b1**t)``."""
    return learning_rate * math.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)


@jit()
def sgd_hyper(hyper):
    """SGD's ``(learning_rate, momentum, nesterov)`` from the ``hyper`` array."""
    return hyper[LEARNING_RATE], hyper[MOMENTUM], hyper[NESTEROV] != 0.0


@jit()
def adam_hyper(hyper):
    """Adam's ``(lr_t, beta_1, beta_2, epsilon)`` from the ``hyper`` array."""
    return hyper[ADAM_LR_T], hyper[BETA_1], hyper[BETA_2], hyper[EPSILON]


@jit()
def sgd_entry(w, velocity, g, learning_rate, momentum, nesterov):
    """SGD's update of one entry: returns the new ``(w, velocity)``."""
    v = momentum * velocity - learning_rate * g
    if nesterov:
        return w + (momentum * v - learning_rate * g), v
    return w + v, v


@jit()
def adam_entry(w, m, v, g, lr_t, beta_1, beta_2, epsilon):
    """Adam's update of one entry: returns the new ``(w, m, v)``."""
    m = beta_1 * m + (1.0 - beta_1) * g
    v = beta_2 * v + (1.0 - beta_2) * (g * g)
    return w - lr_t * m / (math.sqrt(v) + epsilon), m, v


@jit()
def step_range(params, grad, lo, hi, solver, hyper, state_1, state_2, scale):
    """Apply the optimizer step to entries ``lo:hi`` with gradient ``scale * grad``.

    ``state_1``/``state_2`` are SGD's velocity (``state_2`` unused) or Adam's
    moments; ``hyper`` holds the values indexed by :data:`LEARNING_RATE` etc.
    """
    # Slices first: loops over range(lo, hi) would not vectorise in numba.
    p = params[lo:hi]
    g = grad[lo:hi]
    s1 = state_1[lo:hi]
    m = hi - lo
    if solver == ADAM:
        s2 = state_2[lo:hi]
        lr_t, b1, b2, eps = adam_hyper(hyper)
        for k in range(m):
            p[k], s1[k], s2[k] = adam_entry(
                p[k], s1[k], s2[k], scale * g[k], lr_t, b1, b2, eps
            )
    else:
        lr, mu, nesterov = sgd_hyper(hyper)
        for k in range(m):
            p[k], s1[k] = sgd_entry(p[k], s1[k], scale * g[k], lr, mu, nesterov)


@jit()
def sgd_step(params, grad, velocity, learning_rate, momentum, nesterov):
    """One SGD step with (Nesterov) momentum on the whole vector, in place."""
    hyper = np.zeros(N_HYPER)
    hyper[LEARNING_RATE] = learning_rate
    hyper[MOMENTUM] = momentum
    hyper[NESTEROV] = 1.0 if nesterov else 0.0
    step_range(
        params, grad, 0, params.shape[0], SGD, hyper, velocity, velocity[:0], 1.0
    )


@jit()
def adam_step(params, grad, m, v, t, learning_rate, beta_1, beta_2, epsilon):
    """One Adam step at update number ``t`` (from 1) on the whole vector, in place."""
    hyper = np.zeros(N_HYPER)
    hyper[BETA_1] = beta_1
    hyper[BETA_2] = beta_2
    hyper[EPSILON] = epsilon
    hyper[ADAM_LR_T] = adam_learning_rate(learning_rate, beta_1, beta_2, t)
    step_range(params, grad, 0, params.shape[0], ADAM, hyper, m, v, 1.0)


@jit()
def clip_grad_norm(grad, max_grad_norm):
    """Rescale ``grad`` in place to a global L2 norm of at most ``max_grad_norm``.

    Returns the norm before clipping.  ``max_grad_norm <= 0`` disables clipping.
    """
    sq = 0.0
    for k in range(grad.shape[0]):
        sq += grad[k] * grad[k]
    norm = math.sqrt(sq)
    if max_grad_norm > 0.0 and norm > max_grad_norm:
        scale = max_grad_norm / norm
        for k in range(grad.shape[0]):
            grad[k] *= scale
    return norm


class LearningRateSchedule:
    """scikit-learn's SGD learning-rate schedules, applied between epochs.

    Parameters
    ----------
    learning_rate_init : float
    schedule : {"constant", "invscaling", "adaptive"}
    power_t : float
    solver : {"sgd", "adam"}
        Adam keeps its base learning rate constant and stops on the first
        stall, as scikit-learn's ``AdamOptimizer`` does.

    """

    def __init__(self, learning_rate_init, schedule, power_t, solver):
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.schedule = schedule if solver == "sgd" else "constant"
        self.power_t = power_t

    def iteration_ends(self, time_step):
        """Update after an epoch; ``time_step`` is the number of samples seen."""
        if self.schedule == "invscaling":
            self.learning_rate = (
                self.learning_rate_init / (time_step + 1) ** self.power_t
            )

    def trigger_stopping(self, msg, verbose):
        """Return True to stop; ``adaptive`` divides the rate by 5 instead."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False
