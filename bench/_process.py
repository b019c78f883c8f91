"""One whole user process, run by ``bench.runners.run_process``.

Usage: ``python bench/_process.py IMPL N_EPOCHS THREADS JOB [STAGE ...]``, where
``IMPL`` is ``fastbp``, ``sklearn`` or ``dummy``.

Imports the estimator, loads digits and runs ``JOB``: what a user's script
does.  ``fit`` fits for exactly ``N_EPOCHS`` epochs and predicts;
``gridsearch`` runs a small ``GridSearchCV`` (12 candidates x 3 folds, each
fit ``N_EPOCHS`` epochs, ``n_jobs=THREADS`` loky worker processes) on float64,
float32 and CSR input; ``dummy`` runs the same search with scikit-learn's
``DummyClassifier`` (12 candidates: 4 strategies x 3 seeds), whose fits do
no work: the floor of that process, what Python, the imports, the data, loky's
workers and GridSearchCV cost with no estimator work at all.  Each optional
``STAGE`` then fits and predicts once more in the same process: ``float32``
(the same fit on float32 input) or ``lbfgs`` (``solver="lbfgs"``), which
shows what a first fit of another configuration adds.  The last line of output is JSON:
``{"stages": {name: [seconds, numba compiles]}}``, the job under its name
(numba compiles in this process only, not in loky's workers).  Imports
nothing from ``bench``.
"""

import json
import sys
import time
import warnings

impl, n_epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stages = sys.argv[4:]


class _Compiles:
    count = 0  # stays 0 for scikit-learn, which never imports numba here


compiles = _Compiles()

if impl == "fastbp":
    # fastbp first, as in a user's script: fastbp imports numba (with Python's
    # garbage collector paused) and compiles nothing at import, so the
    # listener registered after it still counts every compilation.
    from fastbp import MLPClassifier

    extra = {"n_jobs": threads}

    import numba.core.event as numba_event

    class _CountCompiles(numba_event.Listener):
        def on_start(self, event):
            compiles.count += 1

        def on_end(self, event):
            pass

    numba_event.register("numba:compile", _CountCompiles())
elif impl == "sklearn":
    from sklearn.neural_network import MLPClassifier

    extra = {}
elif impl == "dummy":
    if stages != ["gridsearch"]:
        raise SystemExit("dummy runs the gridsearch job only")
else:
    raise SystemExit(f"unknown implementation {impl!r}")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

X, y = load_digits(return_X_y=True)
X = X / 16.0
#: stage -> (input, extra estimator parameters)
STAGES = {
    "fit": (X, {}),
    "float32": (X.astype("float32"), {}),
    "lbfgs": (X, {"solver": "lbfgs"}),
}


def gridsearch():
    """12 candidates x 3 folds on float64, float32 and CSR digits."""
    import scipy.sparse
    from sklearn.model_selection import GridSearchCV

    if impl == "dummy":
        from sklearn.dummy import DummyClassifier

        estimator = DummyClassifier()
        grid = {
            "strategy": ["most_frequent", "prior", "stratified", "uniform"],
            "random_state": [0, 1, 2],
        }
    else:
        estimator = MLPClassifier(max_iter=n_epochs, random_state=0)
        grid = {
            "hidden_layer_sizes": [(32,), (64,), (100,)],
            "alpha": [1e-4, 1e-2],
            "learning_rate_init": [1e-3, 1e-2],
        }
    scores = []
    for Xs in (X, X.astype("float32"), scipy.sparse.csr_matrix(X)):
        search = GridSearchCV(estimator, grid, cv=3, n_jobs=threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(Xs, y)
        scores.append(search.best_score_)
    return scores


report = {}
for stage in stages:
    if stage == "gridsearch":
        start, before = time.perf_counter(), compiles.count
        best = gridsearch()
        report[stage] = [time.perf_counter() - start, compiles.count - before]
        print(f"{impl} {stage}: best cross-validated accuracy {best}")
        continue
    Xs, params = STAGES[stage]
    start, before = time.perf_counter(), compiles.count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(
            max_iter=n_epochs,
            tol=0.0,
            n_iter_no_change=10**9,
            random_state=0,
            **extra,
            **params,
        ).fit(Xs, y)
    accuracy = (clf.predict(Xs) == y).mean()
    report[stage] = [time.perf_counter() - start, compiles.count - before]
    print(f"{impl} {stage}: {clf.n_iter_} epochs, training accuracy {accuracy:.4f}")
print(json.dumps({"stages": report}))
