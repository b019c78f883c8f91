"""TrainingCurveDisplay: the training history of an MLP, in scikit-learn's style.

matplotlib is an optional dependency (the ``plot`` extra); it is imported
only when something is drawn.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

PANELS = ("loss", "validation", "gradient_norms")


def _import_pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "TrainingCurveDisplay requires matplotlib, which is not installed. "
            'Install it with: pip install "fastbp[plot]"'
        ) from exc
    return plt


class TrainingCurveDisplay:
    """Training history of an MLP: loss, validation score, gradient norms.

    One panel per recorded quantity, against the epoch (stochastic solvers)
    or the iteration (``lbfgs``, ``cg``):

    - ``"loss"``: ``loss_curve_`` (stochastic solvers only);
    - ``"validation"``: ``validation_scores_`` (with ``early_stopping=True``
      or a validation set given to ``fit``, under the estimator's ``scoring``);
    - ``"gradient_norms"``: ``gradient_norms_``, one line per weight layer,
      on a log scale, where vanishing or exploding gradients show.

    It is recommended to create it with :meth:`from_estimator`, which reads
    whichever of these attributes the fitted estimator has (a scikit-learn
    MLP works too, without the gradient-norm panel).  All attributes are set
    by the constructor except ``figure_``, ``axes_`` and ``lines_``, which
    :meth:`plot` sets.

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,) or None, default=None
        Training loss per epoch.
    validation_scores : array-like of shape (n_epochs,) or None, default=None
        Validation score per epoch.
    gradient_norms : array-like of shape (n_steps, n_layers - 1) or None, \
            default=None
        Mean L2 norm of each layer's coefficient gradient per epoch or
        iteration.
    estimator_name : str or None, default=None
        Name shown in the figure's title.
    xlabel : str, default="Epoch"
        Label of the horizontal axes.

    Attributes
    ----------
    loss_curve : ndarray of shape (n_epochs,) or None
        Training loss per epoch.
    validation_scores : ndarray of shape (n_epochs,) or None
        Validation score per epoch.
    gradient_norms : ndarray of shape (n_steps, n_layers - 1) or None
        Per-layer gradient norms.
    estimator_name : str or None
        Name of the estimator.
    xlabel : str
        Label of the horizontal axes.
    panels_ : tuple of str
        The panels drawn by the last :meth:`plot`, in order.
    figure_ : matplotlib.figure.Figure
        The figure holding the panels.
    axes_ : ndarray of matplotlib.axes.Axes
        One Axes per panel, in the order of ``panels_``.
    lines_ : dict of str to list of matplotlib.lines.Line2D
        The lines of each panel (one per layer for ``"gradient_norms"``).

    See Also
    --------
    MLPClassifier : Records ``loss_curve_``, ``validation_scores_`` and
        ``gradient_norms_`` while fitting.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from fastbp import MLPClassifier, TrainingCurveDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(
    ...     hidden_layer_sizes=(8,), max_iter=300, early_stopping=True,
    ...     random_state=0,
    ... ).fit(X, y)
    >>> display = TrainingCurveDisplay.from_estimator(clf)
    >>> display.panels_
    ('loss', 'validation', 'gradient_norms')
    >>> len(display.lines_["gradient_norms"]) == len(clf.coefs_)
    True

    """

    def __init__(
        self,
        *,
        loss_curve=None,
        validation_scores=None,
        gradient_norms=None,
        estimator_name=None,
        xlabel="Epoch",
    ):
        self.loss_curve = _as_1d(loss_curve, "loss_curve")
        self.validation_scores = _as_1d(validation_scores, "validation_scores")
        self.gradient_norms = None
        if gradient_norms is not None:
            gradient_norms = np.asarray(gradient_norms, dtype=np.float64)
            if gradient_norms.ndim != 2:
                raise ValueError(
                    "gradient_norms must be 2-D (n_steps, n_layers - 1), got shape "
                    f"{gradient_norms.shape}."
                )
            if gradient_norms.shape[0]:
                self.gradient_norms = gradient_norms
        self.estimator_name = estimator_name
        self.xlabel = xlabel

    def _available_panels(self):
        data = {
            "loss": self.loss_curve,
            "validation": self.validation_scores,
            "gradient_norms": self.gradient_norms,
        }
        return tuple(name for name in PANELS if data[name] is not None)

    def plot(self, *, ax=None, panels=None, name=None):
        """Plot the training history.

        Parameters
        ----------
        ax : matplotlib Axes or sequence of Axes, default=None
            One Axes per panel.  A single Axes is accepted when exactly one
            panel is drawn.  If None, a new figure with one row of panels is
            created.
        panels : sequence of {"loss", "validation", "gradient_norms"}, \
                default=None
            The panels to draw, in order.  None draws every panel for which
            data was recorded.
        name : str, default=None
            Title of the figure; defaults to ``estimator_name``.

        Returns
        -------
        display : TrainingCurveDisplay
            Object that stores the computed values.

        """
        available = self._available_panels()
        if panels is None:
            panels = available
            if not panels:
                raise ValueError(
                    "Nothing to plot: no loss curve, validation scores or gradient "
                    "norms were recorded."
                )
        else:
            if isinstance(panels, str):
                panels = [panels]
            panels = tuple(panels)
            unknown = [p for p in panels if p not in PANELS]
            if unknown:
                raise ValueError(
                    f"Unknown panel(s) {unknown}; choose from {list(PANELS)}."
                )
            missing = [p for p in panels if p not in available]
            if missing:
                raise ValueError(
                    f"No data was recorded for panel(s) {missing}; the available "
                    f"panels are {list(available)}."
                )
            if not panels:
                raise ValueError("panels must name at least one panel.")

        plt = _import_pyplot()
        if ax is None:
            figure, axes = plt.subplots(
                1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False
            )
            axes = axes.ravel()
        else:
            axes = np.ravel(np.asarray(ax, dtype=object))
            if len(axes) != len(panels):
                raise ValueError(
                    f"Expected {len(panels)} Axes, one per panel {list(panels)}, "
                    f"got {len(axes)}."
                )
            figure = axes[0].figure

        lines = {}
        for panel, panel_ax in zip(panels, axes, strict=True):
            lines[panel] = getattr(self, f"_plot_{panel}")(panel_ax)
            panel_ax.set_xlabel(self.xlabel)

        name = self.estimator_name if name is None else name
        if name is not None and ax is None:
            figure.suptitle(name)
        if ax is None:
            figure.tight_layout()

        self.panels_ = panels
        self.figure_ = figure
        self.axes_ = axes
        self.lines_ = lines
        return self

    def _plot_loss(self, ax):
        steps = np.arange(1, len(self.loss_curve) + 1)
        lines = ax.plot(steps, self.loss_curve, label="training loss")
        ax.set_ylabel("Loss")
        ax.set_title("Training loss")
        return lines

    def _plot_validation(self, ax):
        steps = np.arange(1, len(self.validation_scores) + 1)
        lines = ax.plot(
            steps, self.validation_scores, color="C1", label="validation score"
        )
        ax.set_ylabel("Validation score")
        ax.set_title("Validation score")
        return lines

    def _plot_gradient_norms(self, ax):
        norms = self.gradient_norms
        steps = np.arange(1, norms.shape[0] + 1)
        lines = []
        for layer in range(norms.shape[1]):
            lines.extend(ax.plot(steps, norms[:, layer], label=f"coefs_[{layer}]"))
        ax.set_yscale("log")
        ax.set_ylabel("Gradient L2 norm")
        ax.set_title("Gradient norm per layer")
        ax.legend(fontsize="small")
        return lines

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, panels=None, name=None):
        """Plot the training history recorded by a fitted MLP.

        Parameters
        ----------
        estimator : MLPClassifier or MLPRegressor
            A fitted fastbp (or scikit-learn) MLP.
        ax : matplotlib Axes or sequence of Axes, default=None
            One Axes per panel; see :meth:`plot`.
        panels : sequence of str, default=None
            The panels to draw; see :meth:`plot`.
        name : str, default=None
            Title of the figure; defaults to the estimator's class name.

        Returns
        -------
        display : TrainingCurveDisplay
            Object that stores the computed values.

        """
        check_is_fitted(estimator)
        solver = getattr(estimator, "solver", None)
        display = cls(
            loss_curve=getattr(estimator, "loss_curve_", None),
            validation_scores=getattr(estimator, "validation_scores_", None),
            gradient_norms=getattr(estimator, "gradient_norms_", None),
            estimator_name=type(estimator).__name__,
            xlabel="Iteration" if solver in ("lbfgs", "cg") else "Epoch",
        )
        return display.plot(ax=ax, panels=panels, name=name)


def _as_1d(values, name):
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}.")
    return values if values.shape[0] else None
