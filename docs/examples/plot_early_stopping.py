"""
=====================================
Early stopping and training curves
=====================================

With ``early_stopping=True``, fastbp (like scikit-learn) holds out
``validation_fraction`` of the training data, scores the model on it after
every epoch (``validation_scores_``), stops once the score has not improved
by ``tol`` for ``n_iter_no_change`` epochs, and keeps the weights of the best
epoch. :class:`fastbp.TrainingCurveDisplay` plots the loss, the validation
score and the per-layer gradient norms of any fitted estimator.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastbp import MLPClassifier, TrainingCurveDisplay

X, y = load_digits(return_X_y=True)
# A small, noisy training set, so that a large network overfits quickly.
X_train, X_test, y_train, y_test = train_test_split(
    X / 16.0, y, train_size=400, random_state=0, stratify=y
)
rng = np.random.RandomState(0)
noisy = rng.rand(len(y_train)) < 0.2
y_train = np.where(noisy, rng.randint(10, size=len(y_train)), y_train)

params = dict(hidden_layer_sizes=(256, 256), alpha=1e-5, random_state=0)
stopped = MLPClassifier(
    early_stopping=True, n_iter_no_change=10, max_iter=200, **params
).fit(X_train, y_train)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    full = MLPClassifier(
        max_iter=stopped.n_iter_ + 40, n_iter_no_change=1000, **params
    ).fit(X_train, y_train)
best_epoch = int(np.argmax(stopped.validation_scores_)) + 1
print(
    f"early stopping: {stopped.n_iter_} epochs, best epoch {best_epoch}, "
    f"test accuracy {stopped.score(X_test, y_test):.3f}"
)
print(
    f"no early stopping: {full.n_iter_} epochs, "
    f"test accuracy {full.score(X_test, y_test):.3f}"
)

# %%
# The training curves of the early-stopped fit
# ---------------------------------------------
# One call draws every curve the estimator recorded.

display = TrainingCurveDisplay.from_estimator(stopped)
display.axes_[0].axvline(best_epoch, color="k", linestyle=":", label="best epoch")
display.axes_[0].legend()
print(display.panels_)

# %%
# Training longer
# ---------------
# Without early stopping, training goes on reducing the training loss on the
# noisy labels, which does not make the model better on new data.

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(np.arange(1, full.n_iter_ + 1), full.loss_curve_, label="no early stopping")
ax.plot(
    np.arange(1, stopped.n_iter_ + 1),
    stopped.loss_curve_,
    label="early stopping (trains on 90%)",
)
ax.axvline(stopped.n_iter_, color="k", linestyle=":", label="early stop")
ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss_curve_")
ax.grid(alpha=0.3)
_ = ax.legend()
