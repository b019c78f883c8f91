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

Each rule is written for one entry (:func:`sgd_entry`, :func:`adam_entry`);
the update stage (:mod:`fastbp._kernels.update`) applies it to the whole vector in the
same pass that finishes (and, with ``max_grad_norm``, clips) the gradient.
Learning-rate schedules act between epochs, in plain Python
(:class:`LearningRateSchedule`); ``OptimizerState`` is what a solver
carries between epochs and ``partial_fit`` calls.
"""

import copy
import math

import numpy as np

from .._numba import jit

SGD = 0
ADAM = 1

#: Public name -> kernel code, for the stochastic solvers.
STOCHASTIC_SOLVERS = {"sgd": SGD, "adam": ADAM}


# Layout of the ``hyper`` array of :class:`fastbp._kernels.update.Optimizer`.
LEARNING_RATE = 0
MOMENTUM = 1
NESTEROV = 2
BETA_1 = 3
BETA_2 = 4
EPSILON = 5
#: Adam's bias-corrected step size of the current update.
ADAM_LR_T = 6
N_HYPER = 7


@jit(inline=True)
def adam_learning_rate(learning_rate, beta_1, beta_2, t):
    """Adam's step size at update ``t``: ``eta sqrt(1 - b2**t) / (1 - b1**t)``.

    The powers take ``t`` as a float: numba's ``float ** int`` multiplies by
    repeated squaring (and is a function of its own to compile), while
    scikit-learn's Python ``float ** int`` is C's ``pow``; as a float power
    the step size is scikit-learn's to the last bit (numba's differed at
    three updates in four).
    """
    tf = float(t)
    return learning_rate * math.sqrt(1.0 - beta_2**tf) / (1.0 - beta_1**tf)


@jit(inline=True)
def sgd_hyper(hyper):
    """SGD's ``(learning_rate, momentum, nesterov)`` from the ``hyper`` array."""
    return hyper[LEARNING_RATE], hyper[MOMENTUM], hyper[NESTEROV] != 0.0


@jit(inline=True)
def adam_hyper(hyper):
    """Adam's ``(lr_t, beta_1, beta_2, epsilon)`` from the ``hyper`` array."""
    return hyper[ADAM_LR_T], hyper[BETA_1], hyper[BETA_2], hyper[EPSILON]


# Compiled on its own, not inlined (``jit(inline=True)``): copied into the
# update loop, LLVM contracts its products into fused multiply-adds
# differently, and the weights would change in their last bits.
@jit(from_python=False)
def sgd_entry(w, velocity, g, learning_rate, momentum, nesterov):
    """SGD's update of one entry: returns the new ``(w, velocity)``."""
    v = momentum * velocity - learning_rate * g
    if nesterov:
        return w + (momentum * v - learning_rate * g), v
    return w + v, v


@jit(inline=True)
def adam_entry(w, m, v, g, lr_t, beta_1, beta_2, epsilon):
    """Adam's update of one entry: returns the new ``(w, m, v)``."""
    m = beta_1 * m + (1.0 - beta_1) * g
    g2 = g * g
    if g2 == math.inf:
        # As in numpy (the entry stops moving): fast-math's reassociation
        # would otherwise turn inf into NaN.
        v = math.inf
    else:
        v = beta_2 * v + (1.0 - beta_2) * g2
    return w - lr_t * m / (math.sqrt(v) + epsilon), m, v


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


class OptimizerState:
    """A stochastic solver's hyperparameters, state and schedule.

    Created when a fit starts (or when ``partial_fit`` finds none that fits
    the weights), as scikit-learn creates its ``SGDOptimizer`` or
    ``AdamOptimizer``: later ``partial_fit`` calls keep its hyperparameters
    and continue its velocities (SGD) or moments and update count (Adam).
    Arrays and plain values only.

    Parameters
    ----------
    solver : {"sgd", "adam"}
    n_params : int
        Length of the flat parameter vector.
    dtype : numpy dtype
    learning_rate_init, learning_rate, power_t, momentum, nesterovs_momentum, \
beta_1, beta_2, epsilon
        The estimator's hyperparameters of the same names.

    """

    def __init__(self, solver, n_params, dtype, *, learning_rate_init,
                 learning_rate, power_t, momentum, nesterovs_momentum, beta_1,
                 beta_2, epsilon):  # fmt: skip
        self.solver = solver
        self.state_1 = np.zeros(n_params, dtype=dtype)
        self.state_2 = np.zeros(n_params if solver == "adam" else 0, dtype=dtype)
        self.t = 0
        self.schedule = LearningRateSchedule(
            learning_rate_init, learning_rate, power_t, solver
        )
        self.hyper = np.zeros(N_HYPER)
        self.hyper[MOMENTUM] = momentum
        self.hyper[NESTEROV] = float(bool(nesterovs_momentum))
        self.hyper[BETA_1] = beta_1
        self.hyper[BETA_2] = beta_2
        self.hyper[EPSILON] = epsilon

    @property
    def learning_rate(self):
        """Current base learning rate."""
        return self.schedule.learning_rate

    def fits(self, n_params):
        """Whether this state can continue training ``n_params`` weights."""
        return self.state_1.shape[0] == n_params

    def copy(self, dtype):
        """An independent copy in ``dtype``.

        A call continues on a copy, so that a failure leaves no half-updated
        state behind.
        """
        new = copy.copy(self)
        new.state_1 = self.state_1.astype(dtype, copy=True)
        new.state_2 = self.state_2.astype(dtype, copy=True)
        new.hyper = self.hyper.copy()
        new.schedule = copy.copy(self.schedule)
        return new

    def kernel_hyper(self):
        """The ``hyper`` array the epoch kernel reads, at the current rate."""
        hyper = self.hyper.copy()
        hyper[LEARNING_RATE] = self.learning_rate
        return hyper
