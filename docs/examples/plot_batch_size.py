"""
===============================================
Online, mini-batch and full-batch learning
===============================================

The stochastic solvers take one step per batch of ``batch_size`` rows, with
the batch's average gradient. On the same data and with the same optimizer
(SGD with momentum), this example compares

* online learning, ``batch_size=1``: one step per sample;
* mini-batches of 32 and of 200 rows (``"auto"`` is ``min(200, n_samples)``);
* full batch, ``batch_size=n_samples``: one step per epoch.

Smaller batches take more steps per epoch, so they make more progress per
epoch; larger batches use the hardware better, so each epoch is cheaper. What
counts in practice is the loss reached per second.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0
n_samples = X.shape[0]
EPOCHS = 15
batch_sizes = {
    "online (1)": 1,
    "mini-batch 32": 32,
    "mini-batch 200": 200,
    f"full batch ({n_samples})": n_samples,
}


def make(batch_size):
    return MLPClassifier(
        hidden_layer_sizes=(64,),
        solver="sgd",
        learning_rate_init=0.01,
        batch_size=batch_size,
        max_iter=EPOCHS,
        n_iter_no_change=EPOCHS,
        tol=0.0,
        random_state=0,
    )


# %%
# Each configuration is fitted twice: the first fit compiles its kernels
# (online learning has kernels of its own), the second is timed.

results = {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, batch_size in batch_sizes.items():
        make(batch_size).set_params(max_iter=1).fit(X, y)  # compile, not timed
        clf = make(batch_size)
        start = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - start
        results[name] = (clf, seconds)
        steps = clf.n_iter_ * -(-n_samples // batch_size)
        print(
            f"{name:20s} {seconds / EPOCHS * 1e3:7.2f} ms/epoch, "
            f"final loss {clf.loss_:.3f}, {steps} steps"
        )

fig, (ax_epoch, ax_time) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
for name, (clf, seconds) in results.items():
    epochs = np.arange(1, clf.n_iter_ + 1)
    ax_epoch.semilogy(epochs, clf.loss_curve_, "o-", markersize=3, label=name)
    ax_time.semilogy(
        epochs * seconds / clf.n_iter_, clf.loss_curve_, "o-", markersize=3, label=name
    )
ax_epoch.set(xlabel="epoch", ylabel="training loss", title="loss per epoch")
ax_time.set(
    xlabel="seconds (this machine)", ylabel="training loss", title="loss per second"
)
ax_time.set_xscale("log")
for ax in (ax_epoch, ax_time):
    ax.grid(alpha=0.3)
_ = ax_epoch.legend()

# %%
# With the same learning rate, online learning takes 1797 steps per epoch and
# full batch takes one, so per epoch online learning is far ahead and full
# batch barely moves. Per second the gap narrows: every step has a fixed cost
# on top of its arithmetic, so an epoch of online learning costs several
# epochs of mini-batches (the printed times above).
# For full-batch training, the full-batch solvers ``lbfgs`` and ``cg`` use the
# whole gradient much better than a plain gradient step (see
# :doc:`/practical`).
