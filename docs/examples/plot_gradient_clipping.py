"""
====================================================
Gradient clipping: a diverging fit before and after
====================================================

Plain SGD with a learning rate that is too large for the data diverges: each
step overshoots, the gradient grows, and the next step overshoots more. fastbp
stops such a fit before the bad update and raises ``ValueError``, leaving the
estimator unchanged.

``max_grad_norm`` rescales each batch's gradient to a global L2 norm of at
most that value before the step, :math:`g \\leftarrow g \\cdot \\min(1, c /
\\lVert g \\rVert_2)`. The direction is kept, only the step is bounded, so the
same learning rate now trains.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_regression
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPRegressor

X, y = make_regression(n_samples=500, n_features=10, noise=5.0, random_state=0)
X = 3 * X  # features that are not standardised
params = dict(
    hidden_layer_sizes=(32,),
    solver="sgd",
    learning_rate_init=0.003,
    random_state=0,
)
EPOCHS = 30

# %%
# Without clipping
# ----------------
# ``partial_fit`` runs one epoch per call, so the loss can be recorded up to
# the epoch where training diverges.

unclipped = MLPRegressor(**params)
unclipped_losses = []
for epoch in range(EPOCHS):
    try:
        unclipped.partial_fit(X, y)
    except ValueError as error:
        print(f"partial_fit call {epoch + 1} raised ValueError: {error}")
        break
    unclipped_losses.append(unclipped.loss_)

# %%
# With clipping
# -------------
# ``gradient_norms_`` records the gradient norms *before* clipping: the
# clipped fits see gradients of several hundred, but take bounded steps.

clipped = {}
for max_grad_norm in (10.0, 100.0):
    reg = MLPRegressor(
        max_grad_norm=max_grad_norm, max_iter=EPOCHS, n_iter_no_change=EPOCHS, **params
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clipped[max_grad_norm] = reg.fit(X, y)
    print(f"max_grad_norm={max_grad_norm:g}: R^2 = {reg.score(X, y):.3f}")

fig, (ax_loss, ax_norm) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
epochs = np.arange(1, len(unclipped_losses) + 1)
ax_loss.semilogy(epochs, unclipped_losses, "o-", color="tab:red", label="no clipping")
ax_loss.plot(epochs[-1], unclipped_losses[-1], "X", color="k", markersize=10)
ax_loss.annotate(
    "diverged: fit stops",
    (epochs[-1], unclipped_losses[-1]),
    textcoords="offset points",
    xytext=(8, -4),
)
for (c, reg), color in zip(clipped.items(), ("tab:blue", "tab:green"), strict=True):
    ax_loss.semilogy(
        np.arange(1, reg.n_iter_ + 1), reg.loss_curve_, color=color, label=f"c = {c:g}"
    )
    ax_norm.semilogy(
        np.arange(1, reg.n_iter_ + 1),
        reg.gradient_norms_[:, 0],
        color=color,
        label=f"c = {c:g}",
    )
ax_loss.set(xlabel="epoch", ylabel="training loss (log scale)", title="loss_curve_")
ax_norm.set(
    xlabel="epoch",
    ylabel="first layer, mean norm per epoch",
    title="gradient_norms_ (before clipping)",
)
for ax in (ax_loss, ax_norm):
    ax.grid(alpha=0.3)
    ax.legend()

# %%
# Clipping treats the symptom. Standardising the features
# (``StandardScaler``) or lowering ``learning_rate_init`` removes the cause;
# clipping is the safety net for the occasional batch whose gradient explodes.
