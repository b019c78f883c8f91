"""One whole user process, run by ``bench.runners.run_process``.

Usage: ``python bench/_process.py {fastbp,sklearn} N_EPOCHS THREADS``

Imports the estimator, loads digits, fits it for exactly ``N_EPOCHS`` epochs
and predicts: what a user's script does.  Imports nothing from ``bench``.
"""

import sys
import warnings

impl, n_epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if impl == "fastbp":
    from fastbp import MLPClassifier

    extra = {"n_jobs": threads}
elif impl == "sklearn":
    from sklearn.neural_network import MLPClassifier

    extra = {}
else:
    raise SystemExit(f"unknown implementation {impl!r}")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

X, y = load_digits(return_X_y=True)
X = X / 16.0
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    clf = MLPClassifier(
        max_iter=n_epochs, tol=0.0, n_iter_no_change=10**9, random_state=0, **extra
    ).fit(X, y)
accuracy = (clf.predict(X) == y).mean()
print(f"{impl}: {clf.n_iter_} epochs, training accuracy {accuracy:.4f}")
