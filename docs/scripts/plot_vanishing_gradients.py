"""Vanishing gradients: a deep logistic network against a deep ReLU network.

Fits two fastbp MLPClassifiers with six hidden layers of 32 units on the
digits data, identical except for the hidden activation, and plots
``gradient_norms_`` (the mean L2 norm of each layer's coefficient gradient in
each epoch) layer by layer, next to the training loss.

Run from the repository root (it writes ``docs/_static/vanishing_gradients.png``)::

    python docs/scripts/plot_vanishing_gradients.py
"""

import pathlib
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastbp import MLPClassifier  # noqa: E402

STATIC = pathlib.Path(__file__).resolve().parents[1] / "_static"
OUT = STATIC / "vanishing_gradients.png"
HIDDEN = (32,) * 6
EPOCHS = 30
#: Epochs averaged in the per-layer panel (the start of training, where the
#: effect is cleanest).
FIRST = 5


def fit(activation, X, y):
    """Fit one network; the fits are short on purpose."""
    clf = MLPClassifier(
        hidden_layer_sizes=HIDDEN,
        activation=activation,
        solver="sgd",
        learning_rate_init=0.1,
        momentum=0.9,
        max_iter=EPOCHS,
        n_iter_no_change=EPOCHS,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


def main():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    fits = {name: fit(name, X, y) for name in ("logistic", "relu")}
    colors = {"logistic": "tab:red", "relu": "tab:blue"}

    fig, (ax_layers, ax_loss) = plt.subplots(
        1, 2, figsize=(8.4, 3.3), dpi=100, layout="constrained"
    )
    for name, clf in fits.items():
        norms = clf.gradient_norms_[:FIRST].mean(axis=0)
        layers = np.arange(1, norms.size + 1)
        ax_layers.semilogy(layers, norms, "o-", color=colors[name], label=name)
        ax_loss.plot(
            np.arange(1, clf.n_iter_ + 1),
            clf.loss_curve_,
            color=colors[name],
            label=f"{name} (accuracy {clf.score(X, y):.2f})",
        )
    ax_layers.set_xlabel("weight layer (1 = next to the input)")
    ax_layers.set_ylabel("gradient norm (mean, epochs 1-%d)" % FIRST)
    ax_layers.set_title("gradient_norms_ per layer")
    ax_layers.set_xticks(layers)
    ax_layers.grid(True, which="major", alpha=0.3)
    ax_layers.legend()
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss_curve_")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend()
    fig.suptitle("6 hidden layers of 32 units, digits, SGD with momentum", fontsize=10)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT)
    for name, clf in fits.items():
        print(
            name, np.array2string(clf.gradient_norms_[:FIRST].mean(axis=0), precision=4)
        )
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
