"""Every check on data and hyperparameters, before any kernel runs.

Compiled kernels do no bounds checks, so nothing reaches them unvalidated.
Array-level checks reuse scikit-learn's validators so that the error types
and messages are the ones scikit-learn users know; fastbp is stricter where
scikit-learn is lax (negative sample weights, negative Poisson targets).
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight

from ._kernels.activations import HIDDEN_ACTIVATIONS

SOLVERS = ("lbfgs", "sgd", "adam", "cg")
FULL_BATCH_SOLVERS = ("lbfgs", "cg")

PARAMETER_CONSTRAINTS = {
    "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(HIDDEN_ACTIVATIONS)), list, tuple],
    "solver": [StrOptions(set(SOLVERS))],
    "alpha": [Interval(Real, 0, None, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
    "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
    "power_t": [Interval(Real, 0, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "shuffle": ["boolean"],
    "random_state": ["random_state"],
    "tol": [Interval(Real, 0, None, closed="left")],
    "verbose": ["verbose"],
    "warm_start": ["boolean"],
    "momentum": [Interval(Real, 0, 1, closed="both")],
    "nesterovs_momentum": ["boolean"],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "beta_1": [Interval(Real, 0, 1, closed="left")],
    "beta_2": [Interval(Real, 0, 1, closed="left")],
    "epsilon": [Interval(Real, 0, None, closed="neither")],
    "n_iter_no_change": [
        Interval(Integral, 1, None, closed="left"),
        Options(Real, {np.inf}),
    ],
    "max_fun": [Interval(Integral, 1, None, closed="left")],
    "max_grad_norm": [None, Interval(Real, 0, None, closed="neither")],
    # A rate for every hidden layer or one per layer (check_dropout).
    "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
    # A name is resolved at fit ("loss" or sklearn.metrics.get_scorer's names).
    "scoring": [None, str, callable],
    # joblib's convention: 0 has no meaning, negative counts back from all.
    "n_jobs": [
        None,
        Interval(Integral, None, -1, closed="right"),
        Interval(Integral, 1, None, closed="left"),
    ],
}


def check_hidden_layer_sizes(hidden_layer_sizes):
    """Return ``hidden_layer_sizes`` as a list of positive ints."""
    if not hasattr(hidden_layer_sizes, "__iter__"):
        hidden_layer_sizes = [hidden_layer_sizes]
    hidden_layer_sizes = list(hidden_layer_sizes)
    for size in hidden_layer_sizes:
        if not isinstance(size, Integral | np.integer) or isinstance(size, bool):
            raise TypeError(
                f"hidden_layer_sizes must contain integers, got {hidden_layer_sizes!r}."
            )
    if any(size <= 0 for size in hidden_layer_sizes):
        raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes)
    if any(size > np.iinfo(np.intp).max for size in hidden_layer_sizes):
        # numpy's (and so scikit-learn's) error for such an array
        raise ValueError(
            "Maximum allowed dimension exceeded: hidden_layer_sizes="
            f"{hidden_layer_sizes!r}."
        )
    return [int(s) for s in hidden_layer_sizes]


def check_dropout(dropout, n_hidden):
    """Return one dropout rate per hidden layer, each in [0, 1)."""
    if np.ndim(dropout) == 0:
        rates = [dropout] * n_hidden
    else:
        rates = list(dropout)
        if len(rates) != n_hidden:
            raise ValueError(
                f"dropout has {len(rates)} rates but the network has {n_hidden} "
                "hidden layers; give one rate per hidden layer (or one float)."
            )
    out = []
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, Real | np.floating | int):
            raise ValueError(f"dropout rates must be floats, got {rate!r}.")
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"dropout rates must be in [0, 1), got {rate!r}.")
        out.append(float(rate))
    return out


def resolve_activations(activation, n_hidden):
    """Return one activation name per hidden layer.

    ``activation`` is a name (used for every hidden layer) or a list/tuple
    with exactly one name per hidden layer.
    """
    if isinstance(activation, str):
        return [activation] * n_hidden
    names = list(activation)
    if len(names) != n_hidden:
        raise ValueError(
            f"activation has {len(names)} entries but hidden_layer_sizes has "
            f"{n_hidden} hidden layers; give one activation per hidden layer."
        )
    for name in names:
        if not isinstance(name, str) or name not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"activation {name!r} is not supported; choose from "
                f"{sorted(HIDDEN_ACTIVATIONS)}."
            )
    return names


def check_sample_weight(sample_weight, X, dtype):
    """Validate ``sample_weight``: finite, non-negative, positive sum.

    scikit-learn's MLP accepts negative weights silently; fastbp rejects them
    because they turn the objective into one that is not bounded below.
    """
    sample_weight = _check_sample_weight(
        sample_weight, X, dtype=dtype, ensure_non_negative=True
    )
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight contains NaN or infinity.")
    check_weight_sum(sample_weight, "sample_weight")
    return np.ascontiguousarray(sample_weight)


def check_weight_sum(sample_weight, what="sample_weight"):
    """The weights' sum normalises the objective: it must be positive and finite."""
    with np.errstate(over="ignore"):
        total = sample_weight.sum(dtype=np.float64)
        total_in_dtype = sample_weight.sum()
    if not total > 0:
        raise ValueError(f"{what} must have a positive sum, got {total}.")
    if not (np.isfinite(total) and np.isfinite(total_in_dtype)):
        raise ValueError(
            f"{what} is too large: its sum overflows to infinity. Rescale it."
        )


def check_class_weight(class_weight):
    """Validate the values of a ``class_weight`` dict: finite and non-negative.

    They multiply ``sample_weight``, so they obey the same rules.
    """
    if not isinstance(class_weight, dict):
        return
    try:
        values = np.asarray(list(class_weight.values()), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"class_weight values must be numbers, got {class_weight!r}."
        ) from exc
    if not np.all(np.isfinite(values)):
        raise ValueError(f"class_weight contains NaN or infinity: {class_weight!r}.")
    if np.any(values < 0):
        raise ValueError(
            f"class_weight contains negative weights, which are not allowed: "
            f"{class_weight!r}."
        )


def check_poisson_target(y):
    """Reject negative targets, for which the Poisson loss is undefined."""
    if np.any(y < 0):
        raise ValueError(
            "Some value(s) of y are negative which is not allowed for Poisson "
            "regression."
        )


def check_parameter_count(layer_units):
    """Raise numpy's ``ValueError`` where the float64 parameters cannot exist.

    The count is computed in Python integers: in int64 it can wrap around to
    a negative size ("negative dimensions are not allowed").
    """
    n_params = sum(
        fan_in * fan_out + fan_out
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:], strict=True)
    )
    if n_params * 8 > np.iinfo(np.intp).max:
        raise ValueError(
            "array is too big; `arr.size * arr.dtype.itemsize` is larger than "
            "the maximum possible size."
        )


def check_layer_shapes(coefs, intercepts, layer_units):
    """Check that existing parameters fit ``layer_units`` (warm start)."""
    expected = list(zip(layer_units[:-1], layer_units[1:], strict=True))
    got = [tuple(c.shape) for c in coefs]
    if got != [tuple(e) for e in expected] or [len(b) for b in intercepts] != [
        e[1] for e in expected
    ]:
        raise ValueError(
            "The existing coefs_/intercepts_ have shapes "
            f"{got} that do not match the layer sizes {list(layer_units)}; "
            "warm_start and partial_fit cannot change hidden_layer_sizes, the "
            "number of features or the number of outputs."
        )


def check_finite_weights(coefs, intercepts):
    """Raise ``ValueError`` naming the first weight array with NaN or infinity.

    fastbp's own fits never end with non-finite weights; these were set by
    hand.  scikit-learn would predict NaN from them (and train on NaN);
    fastbp refuses, before any kernel runs.
    """
    for name, arrays in (("coefs_", coefs), ("intercepts_", intercepts)):
        for i, a in enumerate(arrays):
            if not np.isfinite(a).all():
                raise ValueError(
                    f"{name}[{i}] contains NaN or infinity; a model's weights "
                    "must be finite."
                )


def check_sparse_structure(X, name="X"):
    """Raise ``ValueError`` unless a CSR/CSC matrix's index arrays are sound.

    scipy accepts a matrix built from arrays it never checked: a column
    index out of range would make the kernels read another row's weights,
    and a decreasing ``indptr`` fails deep in scipy's conversion.  Checked
    without copying or modifying the user's matrix (``check_format`` may
    prune it in place).  Returns ``X``.
    """
    if not sp.issparse(X) or X.format not in ("csr", "csc"):
        return X
    n_major, n_minor = X.shape if X.format == "csr" else X.shape[::-1]
    indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
    if indptr.ndim != 1 or indptr.shape[0] != n_major + 1:
        raise ValueError(
            f"{name} is a malformed {X.format} matrix: indptr has "
            f"{indptr.shape[0]} entries for a major axis of {n_major}."
        )
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError(
            f"{name} is a malformed {X.format} matrix: indptr must start at 0 "
            "and never decrease."
        )
    nnz = int(indptr[-1])
    if nnz > indices.shape[0] or nnz > np.asarray(X.data).shape[0]:
        raise ValueError(
            f"{name} is a malformed {X.format} matrix: indptr ends at {nnz}, "
            f"beyond its {min(indices.shape[0], X.data.shape[0])} stored values."
        )
    used = indices[:nnz]
    if nnz and (used.min() < 0 or used.max() >= n_minor):
        raise ValueError(
            f"{name} is a malformed {X.format} matrix: its indices must lie in "
            f"[0, {n_minor})."
        )
    return X
