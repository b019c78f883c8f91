"""Pictures for docs/callbacks.md: the progress bar and the training curves.

Fits a fastbp MLPClassifier with scikit-learn's ``ProgressBar`` callback
(scikit-learn >= 1.9, ``rich``) inside a ``GridSearchCV``, and exports the
bars' final frame as SVG (``docs/_static/progress_bar.svg``); then draws
``TrainingCurveDisplay`` for an early-stopped fit
(``docs/_static/training_curves.png``).

Run from the repository root::

    python docs/scripts/render_callbacks.py
"""

import io
import pathlib
import warnings

import matplotlib

matplotlib.use("Agg")

from rich.console import Console  # noqa: E402
from sklearn.callback import ProgressBar, _progressbar  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastbp import MLPClassifier, TrainingCurveDisplay  # noqa: E402

STATIC = pathlib.Path(__file__).resolve().parents[1] / "_static"


def progress_bar_svg(X, y):
    # ProgressBar draws live on the terminal from a thread of its own; keep
    # its rich Progress when the fit is over and draw that final frame on a
    # recording console (this reaches into scikit-learn's private monitor
    # class, for this picture only).
    finished = []
    run = _progressbar.RichProgressMonitor.run

    def run_and_keep(self):
        run(self)
        finished.append(self.progress_ctx)

    _progressbar.RichProgressMonitor.run = run_and_keep
    try:
        search = GridSearchCV(
            MLPClassifier(max_iter=30, random_state=0), {"alpha": [1e-4, 1e-2]}, cv=2
        )
        search.set_callbacks(ProgressBar(max_propagation_depth=None))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y)
    finally:
        _progressbar.RichProgressMonitor.run = run
    console = Console(
        record=True,
        width=140,
        force_terminal=True,
        color_system="truecolor",
        file=io.StringIO(),
    )
    progress = finished[-1]
    console.print(progress.make_tasks_table(progress._ordered_tasks))
    out = STATIC / "progress_bar.svg"
    console.save_svg(str(out), title="GridSearchCV(fastbp.MLPClassifier())")
    print("wrote", out)


def training_curves_png(X, y):
    clf = MLPClassifier(
        hidden_layer_sizes=(64, 64), early_stopping=True, max_iter=200, random_state=0
    ).fit(X, y)
    display = TrainingCurveDisplay.from_estimator(clf)
    display.figure_.set_size_inches(9, 3)
    out = STATIC / "training_curves.png"
    display.figure_.savefig(out, dpi=100, bbox_inches="tight")
    print("wrote", out, display.panels_, clf.n_iter_)


def main():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    progress_bar_svg(X, y)
    training_curves_png(X, y)


if __name__ == "__main__":
    main()
