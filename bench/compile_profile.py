"""``python -m bench.compile_profile``: what a first fit compiles, and for how long.

Runs one configuration's first fit and prediction in this process, records
numba's compile events, and prints each compiled function with its own
(exclusive) compile time, then the compile count and total.  Run it with an
empty cache to see the cold cost a new user pays::

    NUMBA_CACHE_DIR=$(mktemp -d) python -m bench.compile_profile adam
    NUMBA_CACHE_DIR=$(mktemp -d) python -m bench.compile_profile adam float32 lbfgs

Each configuration after the first shows what it adds to a process that has
already compiled the previous ones.
"""

import argparse
import sys
import time
from collections import defaultdict

import numba.core.event as numba_event
import numpy as np

#: name -> (estimator parameters, dtype)
CONFIGS = {
    "adam": ({}, np.float64),
    "float32": ({}, np.float32),
    "lbfgs": ({"solver": "lbfgs"}, np.float64),
    "sgd-online": ({"solver": "sgd", "batch_size": 1}, np.float64),
    "sparse": ({}, "csr"),
}


def _qualname(event):
    func = event.data["dispatcher"].py_func
    return f"{func.__module__}.{func.__qualname__}"


def exclusive_times(records):
    """``{function: (seconds, count)}`` from numba compile events, callees excluded."""
    stack = []
    totals = defaultdict(lambda: [0.0, 0])
    for stamp, event in records:
        if event.is_start:
            stack.append([stamp, event, 0.0])
            continue
        start, start_event, children = stack.pop()
        inclusive = stamp - start
        entry = totals[_qualname(start_event)]
        entry[0] += inclusive - children
        entry[1] += 1
        if stack:
            stack[-1][2] += inclusive
    return {name: tuple(v) for name, v in totals.items()}


def fit_config(name, X, y):
    """The first fit and predict of configuration ``name``."""
    import scipy.sparse as sp

    from fastbp import MLPClassifier

    params, dtype = CONFIGS[name]
    if dtype == "csr":
        X = sp.csr_matrix(X)
    else:
        X = X.astype(dtype)
    clf = MLPClassifier(max_iter=5, random_state=0, **params).fit(X, y)
    clf.predict(X)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=["adam"], choices=list(CONFIGS))
    parser.add_argument("--top", type=int, default=15, help="functions listed")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_digits

    import fastbp  # noqa: F401  (import cost is not compile cost)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    for name in args.configs:
        recorder = numba_event.RecordingListener()
        numba_event.register("numba:compile", recorder)
        start = time.perf_counter()
        fit_config(name, X, y)
        elapsed = time.perf_counter() - start
        numba_event.unregister("numba:compile", recorder)
        times = exclusive_times(recorder.buffer)
        print(f"== {name}: first fit + predict {elapsed:.2f} s")
        ranked = sorted(times.items(), key=lambda kv: -kv[1][0])
        for func, (seconds, count) in ranked[: args.top]:
            print(f"  {seconds:6.2f} s  {count}x  {func}")
        n_compiles = sum(count for _, count in times.values())
        n_ours = sum(c for f, (_, c) in times.items() if f.startswith("fastbp."))
        total = sum(seconds for seconds, _ in times.values())
        print(
            f"  compiles: {n_compiles} ({n_ours} of fastbp's), "
            f"compile time {total:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
