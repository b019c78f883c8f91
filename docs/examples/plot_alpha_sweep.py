"""
=====================================
Regularisation: sweeping ``alpha``
=====================================

``alpha`` is the strength of the L2 penalty :math:`\\frac{\\alpha}{2}\\sum_l
\\lVert W_l \\rVert_F^2` added to the loss (divided by the batch's weight sum,
as in scikit-learn). Too small and a large network fits the noise of a small
training set; too large and the weights are pulled to zero and the model
underfits.

The sweep below trains the same network on 300 digits for values of
``alpha`` from :math:`10^{-5}` to :math:`10^{2}` and scores each on held-out
digits; the second figure shows the decision boundary on a 2-D toy problem.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits, make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.inspection import DecisionBoundaryDisplay
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X / 16.0, y, train_size=300, random_state=0, stratify=y
)

alphas = np.logspace(-5, 2, 8)
train_scores, test_scores, weight_norms = [], [], []
for alpha in alphas:
    clf = MLPClassifier(
        hidden_layer_sizes=(64,),
        alpha=alpha,
        solver="lbfgs",
        max_iter=200,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    train_scores.append(clf.score(X_train, y_train))
    test_scores.append(clf.score(X_test, y_test))
    weight_norms.append(np.sqrt(sum(np.sum(W**2) for W in clf.coefs_)))
    print(
        f"alpha={alpha:8.0e}  train {train_scores[-1]:.3f}  test {test_scores[-1]:.3f}"
    )

fig, (ax_score, ax_norm) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
ax_score.semilogx(alphas, train_scores, "o-", label="training set (300 digits)")
ax_score.semilogx(alphas, test_scores, "o-", label="held-out digits")
ax_score.set(xlabel="alpha", ylabel="accuracy", title="accuracy against alpha")
ax_score.legend()
ax_norm.loglog(alphas, weight_norms, "o-", color="tab:purple")
ax_norm.set(xlabel="alpha", ylabel="||W|| (all layers)", title="size of the weights")
for ax in (ax_score, ax_norm):
    ax.grid(alpha=0.3)

# %%
# Decision boundaries
# -------------------
# On two noisy half-moons, a small ``alpha`` lets the boundary bend around
# individual points; a large one makes it smoother, and eventually almost a
# straight line.

X2, y2 = make_moons(n_samples=200, noise=0.3, random_state=0)
X2 = StandardScaler().fit_transform(X2)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8), layout="constrained")
for ax, alpha in zip(axes, (1e-4, 1e-1, 1.0, 10.0), strict=True):
    clf = MLPClassifier(
        hidden_layer_sizes=(50, 50),
        alpha=alpha,
        solver="lbfgs",
        max_iter=500,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X2, y2)
    DecisionBoundaryDisplay.from_estimator(
        clf, X2, response_method="predict_proba", cmap="RdBu", alpha=0.6, ax=ax
    )
    ax.scatter(X2[:, 0], X2[:, 1], c=y2, cmap="RdBu", edgecolor="k", s=12)
    ax.set(title=f"alpha = {alpha:g}", xticks=[], yticks=[])

# %%
# The best ``alpha`` depends on the data and on the network size: search it
# on a log scale, e.g. ``GridSearchCV`` over ``np.logspace(-5, 1, 7)``; see
# :doc:`/practical`.
