"""Choosing a solver: the measured table of docs/practical.md.

Fits fastbp's four solvers with their default settings (``max_iter=1000``,
scikit-learn's default ``tol``) on two small problems, and reports the
held-out score, the epochs or iterations until the stopping rule fired, and
the fit time relative to ``adam`` in the same run (best of 3 fits, after one
untimed fit that compiles or loads the kernels).

* digits: ``load_digits`` scaled to [0, 1], 1347 training rows, one hidden
  layer of 64 units, ``MLPClassifier``, accuracy;
* friedman1: ``make_friedman1(n_samples=2000, noise=1.0)``, standardised,
  1500 training rows, one hidden layer of 64 units, ``MLPRegressor``, R^2.

Run from the repository root (writes ``docs/_static/solver_table.json`` and
prints the Markdown table)::

    python docs/scripts/solver_table.py
"""

import datetime
import json
import os
import pathlib
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier, MLPRegressor

STATIC = pathlib.Path(__file__).resolve().parents[1] / "_static"
SOLVERS = ["adam", "sgd", "lbfgs", "cg"]
REPEATS = 3


def problems():
    X, y = load_digits(return_X_y=True)
    digits = train_test_split(X / 16.0, y, random_state=0)
    X, y = make_friedman1(n_samples=2000, noise=1.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    mean, std = y_train.mean(), y_train.std()
    friedman = (
        scaler.transform(X_train),
        scaler.transform(X_test),
        (y_train - mean) / std,
        (y_test - mean) / std,
    )
    return {"digits": (MLPClassifier, digits), "friedman1": (MLPRegressor, friedman)}


def fit(Est, solver, X, y):
    clf = Est(hidden_layer_sizes=(64,), solver=solver, max_iter=1000, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - start
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf, seconds, converged


def main():
    rows = []
    for name, (Est, (X_train, X_test, y_train, y_test)) in problems().items():
        for solver in SOLVERS:
            fit(Est, solver, X_train[:50], y_train[:50])  # compile or load, untimed
        times = {}
        for _ in range(REPEATS):  # interleaved rounds
            for solver in SOLVERS:
                clf, seconds, converged = fit(Est, solver, X_train, y_train)
                times[solver] = min(times.get(solver, np.inf), seconds)
                result = (clf, converged)
                if solver not in {r["solver"] for r in rows if r["problem"] == name}:
                    rows.append(
                        dict(
                            problem=name,
                            solver=solver,
                            score=float(result[0].score(X_test, y_test)),
                            n_iter=int(clf.n_iter_),
                            converged=converged,
                        )
                    )
        for row in rows:
            if row["problem"] == name:
                row["seconds"] = times[row["solver"]]
                row["time_vs_adam"] = times[row["solver"]] / times["adam"]
    info = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        cores=os.cpu_count(),
        load_average_at_start=os.getloadavg(),
        note="one run on a shared machine; times are best of 3, interleaved",
    )
    (STATIC / "solver_table.json").write_text(
        json.dumps(dict(machine=info, rows=rows), indent=1) + "\n"
    )
    print(
        "| problem | solver | held-out score | epochs / iterations | "
        "converged | time vs adam |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['problem']} | `{r['solver']}` | {r['score']:.3f} | {r['n_iter']} | "
            f"{'yes' if r['converged'] else 'no'} | {r['time_vs_adam']:.2f} |"
        )


if __name__ == "__main__":
    main()
