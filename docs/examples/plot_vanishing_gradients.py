"""
=================================================
Vanishing gradients: logistic against ReLU layers
=================================================

Two networks with six hidden layers of 32 units are trained on the digits
data, identical except for the hidden activation. ``gradient_norms_`` records
the mean L2 norm of every layer's coefficient gradient in each epoch, so the
size of the gradient that reaches each layer is directly visible.

The logistic derivative :math:`y(1-y)` is at most 1/4, so every logistic layer
shrinks the delta passed down to the layer below it; ReLU's derivative is 1
wherever a unit is active. See :doc:`/backprop` (section "Vanishing
gradients") for the formula.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0

fits = {}
for activation in ("logistic", "relu"):
    clf = MLPClassifier(
        hidden_layer_sizes=(32,) * 6,
        activation=activation,
        solver="sgd",
        learning_rate_init=0.1,
        max_iter=20,
        n_iter_no_change=20,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 20 epochs only
        fits[activation] = clf.fit(X, y)

# %%
# The gradient each layer receives
# --------------------------------
# Layer 1 is next to the input, layer 7 is the output layer. Averaged over
# the first five epochs, the logistic network's first layer gets a gradient
# several orders of magnitude smaller than its last layer; the ReLU network's
# layers all get gradients of the same size.

colors = {"logistic": "tab:red", "relu": "tab:blue"}
fig, (ax_layers, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
for name, clf in fits.items():
    norms = clf.gradient_norms_[:5].mean(axis=0)
    layers = np.arange(1, norms.size + 1)
    ax_layers.semilogy(layers, norms, "o-", color=colors[name], label=name)
    ax_loss.plot(
        np.arange(1, clf.n_iter_ + 1),
        clf.loss_curve_,
        color=colors[name],
        label=f"{name}: training accuracy {clf.score(X, y):.2f}",
    )
    print(f"{name:8s} first/last layer gradient: {norms[0] / norms[-1]:.1e}")
ax_layers.set(
    xlabel="weight layer (1 = next to the input)",
    ylabel="gradient norm, epochs 1-5",
    title="gradient_norms_",
    xticks=layers,
)
ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss_curve_")
for ax in (ax_layers, ax_loss):
    ax.grid(alpha=0.3)
    ax.legend()

# %%
# The logistic network's loss barely moves: its lower layers receive almost no
# gradient, so they stay close to their random initialisation. Remedies are
# an activation that does not saturate (``relu``, ``leaky_relu``, ``elu``,
# ``gelu``), fewer layers, or Adam, whose per-weight normalisation rescales
# small gradients (see :doc:`/practical`).
