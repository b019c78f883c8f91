"""The scaling-curve figure of ``python -m bench.report`` (needs matplotlib).

Importing this module imports matplotlib (with the non-interactive Agg
backend); :mod:`bench.report` imports it lazily and skips the plot with a
message when matplotlib is missing.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)

STYLE = {
    "sklearn": {"color": "tab:blue", "marker": "o", "label": "scikit-learn"},
    "fastbp": {"color": "tab:red", "marker": "s", "label": "fastbp"},
    "torch": {"color": "tab:green", "marker": "^", "label": "PyTorch"},
}

AXIS_LABELS = {
    "n_samples": ("training rows", "log"),
    "width": ("hidden units (one layer)", "log"),
    "depth": ("hidden layers of 128", "linear"),
    "batch_size": ("batch size", "log"),
    "threads": ("threads", "category"),
    "dtype": ("dtype", "category"),
}


def _short(value):
    """Tick label: 100000 -> 100k."""
    if isinstance(value, int) and value >= 1000 and value % 1000 == 0:
        return f"{value // 1000}k"
    return str(value)


def plot_scaling(cases, results, path, title=""):
    """Draw time per epoch against each scaling axis, one panel per axis.

    Each panel is one curve of :data:`bench.cases.SCALING_AXES`: a line per
    implementation (log time), and fastbp's speedup over scikit-learn written
    at each of its points.
    """
    curves = {}
    for case in cases:
        if case.name in results:
            curves.setdefault(case.curve, []).append(case)
    if not curves:
        return None
    n = len(curves)
    n_cols = 3 if n > 4 else n
    n_rows = -(-n // n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(4.6 * n_cols, 3.6 * n_rows), squeeze=False
    )
    for ax, (curve, points) in zip(axes.flat, curves.items(), strict=False):
        label, scale = AXIS_LABELS.get(curve, (curve, "linear"))
        positions = (
            list(range(len(points)))
            if scale == "category"
            else [float(c.x) for c in points]
        )
        for impl, style in STYLE.items():
            xs, ys = [], []
            for pos, case in zip(positions, points, strict=True):
                res = results[case.name].get(impl)
                if res is not None:
                    xs.append(pos)
                    ys.append(1e3 * res.seconds_per_epoch)
            if xs:
                ax.plot(xs, ys, **style)
        for pos, case in zip(positions, points, strict=True):
            by_impl = results[case.name]
            if "sklearn" in by_impl and "fastbp" in by_impl:
                speedup = (
                    by_impl["sklearn"].seconds_per_epoch
                    / by_impl["fastbp"].seconds_per_epoch
                )
                ax.annotate(
                    f"{speedup:.1f}x",
                    (pos, 1e3 * by_impl["fastbp"].seconds_per_epoch),
                    textcoords="offset points",
                    xytext=(0, -12),
                    ha="center",
                    fontsize=7,
                    color=STYLE["fastbp"]["color"],
                )
        if scale == "log":
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(positions, [_short(c.x) for c in points])
        if scale == "category":
            ax.set_xlim(-0.5, len(points) - 0.5)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        low, high = ax.get_ylim()
        ax.set_ylim(low / 1.6, high * 1.2)  # room for the speedup labels
        ax.set_xlabel(label)
        ax.set_ylabel("ms per epoch")
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(
        title + "\nbase: 4096x100 rows, 128 hidden, adam, batch 200, float64; "
        "red labels: fastbp speedup over scikit-learn",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
