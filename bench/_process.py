"""One whole user process, run by ``bench.runners.run_process``.

Usage: ``python bench/_process.py {fastbp,sklearn} N_EPOCHS THREADS [STAGE ...]``

Imports the estimator, loads digits, fits it for exactly ``N_EPOCHS`` epochs
and predicts: what a user's script does.  Each optional ``STAGE`` then fits
and predicts once more in the same process: ``float32`` (the same fit on
float32 input) or ``lbfgs`` (``solver="lbfgs"``), which shows what a first fit
of another configuration adds.  The last line of output is JSON:
``{"stages": {name: [seconds, numba compiles]}}``, the base fit under
``"fit"``.  Imports nothing from ``bench``.
"""

import json
import sys
import time
import warnings

impl, n_epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stages = ["fit", *sys.argv[4:]]


class _Compiles:
    count = 0  # stays 0 for scikit-learn, which never imports numba here


compiles = _Compiles()

if impl == "fastbp":
    import numba.core.event as numba_event

    class _CountCompiles(numba_event.Listener):
        def on_start(self, event):
            compiles.count += 1

        def on_end(self, event):
            pass

    numba_event.register("numba:compile", _CountCompiles())

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
#: stage -> (input, extra estimator parameters)
STAGES = {
    "fit": (X, {}),
    "float32": (X.astype("float32"), {}),
    "lbfgs": (X, {"solver": "lbfgs"}),
}
report = {}
for stage in stages:
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
