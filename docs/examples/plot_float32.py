"""
=====================================
float32 against float64
=====================================

fastbp trains in the dtype of ``X``: float32 input gives float32 weights and
float32 arithmetic in the kernels, half the memory traffic of float64 and
twice as many numbers per SIMD instruction. The same network is trained on
the same digits in both dtypes, from the same initial weights, and compared
for time per epoch and held-out accuracy.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastbp import MLPClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, random_state=0)
EPOCHS = 10
fitted = {}


def make():
    return MLPClassifier(
        hidden_layer_sizes=(256, 256),
        max_iter=EPOCHS,
        n_iter_no_change=EPOCHS,
        random_state=0,
    )


# %%
# Each dtype is fitted once untimed (the first float32 fit compiles the
# float32 kernels), then the two dtypes are timed in alternation, five fits
# each, and the best fit of each counts: on a busy machine, noise only ever
# adds time, and alternating spreads it over both.

data = {
    np.dtype(dtype).name: (X_train.astype(dtype), X_test.astype(dtype))
    for dtype in (np.float64, np.float32)
}
times = {name: [] for name in data}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for Xtr, _ in data.values():
        make().set_params(max_iter=1).fit(Xtr, y_train)  # compile, not timed
    for _ in range(5):
        for name, (Xtr, _) in data.items():
            clf = make()
            start = time.perf_counter()
            clf.fit(Xtr, y_train)
            times[name].append(time.perf_counter() - start)
            fitted[name] = clf
results = {
    name: dict(
        ms_per_epoch=min(times[name]) / EPOCHS * 1e3,
        accuracy=fitted[name].score(data[name][1], y_test),
        weights=fitted[name].coefs_[0].dtype,
        loss=fitted[name].loss_curve_,
    )
    for name in data
}
for name, r in results.items():
    print(
        f"{name}: {r['ms_per_epoch']:.2f} ms/epoch, held-out accuracy "
        f"{r['accuracy']:.4f}, weights {r['weights']}"
    )

fig, (ax_time, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
names = list(results)
bars = ax_time.bar(
    names, [results[n]["ms_per_epoch"] for n in names], color=["tab:blue", "tab:orange"]
)
ax_time.bar_label(bars, [f"accuracy {results[n]['accuracy']:.3f}" for n in names])
ax_time.set(
    ylabel="ms per epoch (best of 5, this machine)",
    title="time per epoch, 2 x 256 hidden units",
)
ax_time.margins(y=0.15)
for name in names:
    ax_loss.semilogy(np.arange(1, EPOCHS + 1), results[name]["loss"], label=name)
ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss_curve_")
ax_loss.grid(alpha=0.3)
_ = ax_loss.legend()

# %%
# The two loss curves lie on top of each other: float32's rounding (about
# :math:`6 \times 10^{-8}` relative) is far below the noise of stochastic
# training, so the accuracy is the same to a sample or two. How much faster
# float32 is depends on the network and the machine: the gain is largest where
# the matrix products dominate (wide layers, large batches) and small for tiny
# networks, where fixed costs per batch dominate; the bars above come from
# the machine that built this page, in one run, so a busy machine shows in
# them. Use float64 for the full-batch solvers' tight tolerances or for
# gradient checking (:func:`fastbp.check_gradients`).
