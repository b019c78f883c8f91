"""When fastbp pays off: total time to fit against data size and epochs.

Every measurement is a fresh Python process that imports the estimator and
fits it (the time from before the import to the end of ``fit``; Python's own
start-up and the data generation are not counted). Three kinds of process:

* scikit-learn's ``MLPClassifier``;
* fastbp with a warm cache: numba's disk cache already holds the kernels
  (the cache directory is warmed by one fit beforehand);
* fastbp with a cold cache: an empty ``NUMBA_CACHE_DIR``, so the fit compiles
  every kernel it needs, as the very first fit after installing does.

Warm fastbp and scikit-learn processes alternate, three of each per point,
and the fastest of each counts (noise on a shared machine only adds time);
the cold process runs once per point.

scikit-learn's matrix products run in OpenBLAS, whose threads busy-wait for
each other: on a machine where other processes (even niced ones) use the
cores, two-thread OpenBLAS on these small products was 10 to 15 times slower
and erratic. The main scikit-learn series therefore holds its BLAS to one
thread (``OPENBLAS_NUM_THREADS=1``), its fastest setting there; one process
per point with the default threads is recorded as well
(``sklearn_default_threads_s``, None past a 60 s timeout) and drawn dotted.

The data is synthetic (``make_classification``: 64 features, 10 classes),
the network has one hidden layer of 100 units (scikit-learn's default),
``solver="adam"``, ``batch_size="auto"`` (200), ``tol=0`` so that every fit
runs the requested number of epochs, float64, all cores.

Run from the repository root, on a machine that is otherwise idle::

    python docs/scripts/time_to_fit.py

It writes ``docs/_static/time_to_fit.json`` (every measurement, with the
machine and date) and ``docs/_static/time_to_fit.png``. ``--quick`` measures
two small sizes only (to check that the script works).
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

STATIC = pathlib.Path(__file__).resolve().parents[1] / "_static"
SIZES = [500, 2000, 8000, 32000]
EPOCHS = [10, 50]
REPEATS = 3  # warm and scikit-learn processes: best of this many
TIMEOUT = 60  # seconds, for scikit-learn with its default BLAS threads

CHILD = r"""
import sys, time, warnings
import numpy as np
from sklearn.datasets import make_classification
n, epochs, which = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
X, y = make_classification(n_samples=n, n_features=64, n_informative=20,
                           n_classes=10, random_state=0)
start = time.perf_counter()
if which == "sklearn":
    from sklearn.neural_network import MLPClassifier
else:
    from fastbp import MLPClassifier
clf = MLPClassifier(max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1,
                    random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clf.fit(X, y)
print(time.perf_counter() - start, clf.n_iter_)
"""


def run_child(n, epochs, which, cache_dir, timeout=None):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    if which == "sklearn-1":  # scikit-learn with its BLAS held to one thread
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        which = "sklearn"
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(epochs), which],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None
    seconds, n_iter = out.stdout.split()
    assert int(n_iter) == epochs
    return float(seconds)


def measure(sizes, epochs_list):
    rows = []
    with tempfile.TemporaryDirectory() as warm_dir:
        run_child(200, 2, "fastbp", warm_dir)  # fills the warm cache
        for epochs in epochs_list:
            for n in sizes:
                load = os.getloadavg()[0]
                with tempfile.TemporaryDirectory() as cold_dir:
                    cold = run_child(n, epochs, "fastbp", cold_dir)
                warm, sk = [], []
                for _ in range(REPEATS):  # interleaved, so that load hits both
                    warm.append(run_child(n, epochs, "fastbp", warm_dir))
                    sk.append(run_child(n, epochs, "sklearn-1", warm_dir))
                sk_default = run_child(n, epochs, "sklearn", warm_dir, timeout=TIMEOUT)
                row = dict(
                    n_samples=n,
                    epochs=epochs,
                    sklearn_s=min(sk),
                    fastbp_warm_s=min(warm),
                    fastbp_cold_s=cold,
                    sklearn_default_threads_s=sk_default,
                    sklearn_all_s=sk,
                    fastbp_warm_all_s=warm,
                    load_average_1min=load,
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def machine():
    import numba
    import numpy
    import sklearn

    with open("/proc/cpuinfo") as f:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in f if "model name" in line),
            platform.processor(),
        )
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        cpu=cpu,
        cores=os.cpu_count(),
        load_average_at_start=os.getloadavg(),
        python=platform.python_version(),
        numpy=numpy.__version__,
        numba=numba.__version__,
        sklearn=sklearn.__version__,
        note="one run on a shared machine; other processes may have been running",
    )


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    epochs_list = sorted({r["epochs"] for r in rows})
    fig, axes = plt.subplots(
        1,
        len(epochs_list),
        figsize=(4.6 * len(epochs_list), 3.6),
        layout="constrained",
        sharey=True,
        squeeze=False,
    )
    styles = [
        (
            "sklearn_default_threads_s",
            "scikit-learn, default BLAS threads",
            "0.6",
            "s:",
        ),
        ("sklearn_s", "scikit-learn, BLAS on 1 thread", "k", "s-"),
        ("fastbp_warm_s", "fastbp, warm cache", "tab:blue", "o-"),
        ("fastbp_cold_s", "fastbp, cold cache (first fit ever)", "tab:red", "o--"),
    ]
    for ax, epochs in zip(axes[0], epochs_list, strict=True):
        sub = sorted(
            (r for r in rows if r["epochs"] == epochs), key=lambda r: r["n_samples"]
        )
        n = [r["n_samples"] for r in sub]
        for key, label, color, style in styles:
            points = [(x, r[key]) for x, r in zip(n, sub, strict=True) if r[key]]
            if points:
                x, t = zip(*points, strict=True)
                ax.loglog(x, t, style, color=color, label=label)
        ax.set(xlabel="training rows", title=f"{epochs} epochs")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("seconds: import + fit, in a new process")
    axes[0][0].legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(
        f"Time to fit (64 features, 100 hidden units, 10 classes, adam); "
        f"{m['cores']} cores, {m['date'][:10]}",
        fontsize=9,
    )
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--replot", action="store_true", help="redraw the PNG from the JSON"
    )
    args = parser.parse_args()
    json_path = STATIC / "time_to_fit.json"
    png_path = STATIC / "time_to_fit.png"
    if args.replot:
        plot(json.loads(json_path.read_text()), png_path)
        return
    sizes, epochs_list = (SIZES[:2], EPOCHS[:1]) if args.quick else (SIZES, EPOCHS)
    info = machine()
    rows = measure(sizes, epochs_list)
    result = dict(machine=info, rows=rows)
    if args.quick:
        json_path = pathlib.Path(tempfile.gettempdir()) / "time_to_fit.json"
        png_path = json_path.with_suffix(".png")
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, png_path)
    print("wrote", json_path, png_path)


if __name__ == "__main__":
    main()
