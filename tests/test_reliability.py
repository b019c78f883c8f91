"""Reliability: validation at the boundary, atomic state, divergence, threads, fuzz.

Every bad input is checked against scikit-learn's own MLP run side by side as
the oracle for the exception type (where scikit-learn has the behaviour), and
the message must name the problem.  A failing ``fit``/``partial_fit`` must
leave a fitted estimator bit for bit as it was (compared through pickle).  The
hypothesis campaign at the end throws random shapes, dtypes, extreme values,
sparse formats and hyperparameters at the estimators: each example must end in
a finite model or a ValueError/TypeError -- a crash of compiled code would kill
the test process.  Ctrl-C with a real SIGINT is in test_training_engine.py.
"""

import copy
import pickle
import threading
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import (
    ConvergenceWarning,
    DataConversionWarning,
    NotFittedError,
    UndefinedMetricWarning,
)
from sklearn.neural_network import MLPClassifier as SKClassifier
from sklearn.neural_network import MLPRegressor as SKRegressor
from sklearn.utils._param_validation import InvalidParameterError

import fastbp

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, F = 30, 4
_rng = np.random.RandomState(0)
X0 = _rng.randn(N, F)
Y0 = {"clf": _rng.randint(0, 3, N), "reg": _rng.randn(N)}
KW = dict(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
CLASSES = {
    "clf": (fastbp.MLPClassifier, SKClassifier),
    "reg": (fastbp.MLPRegressor, SKRegressor),
}


def _fitted(kind, lib, **params):
    ours, theirs = CLASSES[kind]
    cls = ours if lib == "fastbp" else theirs
    return cls(**KW, **params).fit(X0, Y0[kind])


_CACHE = {}


def fitted(kind, lib="fastbp", **params):
    """A fitted estimator (a fresh deep copy of a cached one)."""
    key = (kind, lib, tuple(sorted(params.items())))
    if key not in _CACHE:
        _CACHE[key] = _fitted(kind, lib, **params)
    return copy.deepcopy(_CACHE[key])


def snapshot(est):
    return pickle.dumps(est)


# --------------------------------------------------------------------------- #
# Bad inputs: category -> (builder, message pattern, methods it applies to)
# --------------------------------------------------------------------------- #
FIT_METHODS = ("fit", "warm_start_fit", "partial_fit")
X_METHODS = FIT_METHODS + (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "score",
    "loss_and_gradients",
)
Y_METHODS = FIT_METHODS + ("score", "loss_and_gradients")
W_METHODS = FIT_METHODS + ("score", "loss_and_gradients")


def _replace(X, value, dtype=None):
    """A copy of X with one entry replaced."""
    X = X.astype(dtype) if dtype is not None else X.copy()
    X[(3, 1)[: X.ndim]] = value
    return X


def _ragged(X):
    rows = X.tolist()
    rows[2] = rows[2][:-1]
    return rows


# Each builder takes (X, y) and returns (X, y, sample_weight).
BAD = {
    "X_nan": (lambda X, y: (_replace(X, np.nan), y, None), "NaN", X_METHODS),
    "X_inf": (lambda X, y: (_replace(X, np.inf), y, None), "infinity", X_METHODS),
    "X_-inf": (lambda X, y: (_replace(X, -np.inf), y, None), "infinity", X_METHODS),
    "X_nan_sparse": (
        lambda X, y: (sp.csr_matrix(_replace(X, np.nan)), y, None),
        "NaN",
        X_METHODS,
    ),
    "X_inf_sparse_csc": (
        lambda X, y: (sp.csc_matrix(_replace(X, np.inf)), y, None),
        "infinity",
        X_METHODS,
    ),
    "X_none_in_object": (
        lambda X, y: (_replace(X, None, object), y, None),
        "NaN",
        X_METHODS,
    ),
    # A plain (cold) fit may change the number of features; the rest may not.
    "X_n_features": (
        lambda X, y: (X[:, :3], y, None),
        "3 features, but .* expecting 4 features",
        tuple(m for m in X_METHODS if m != "fit"),
    ),
    "X_1d": (lambda X, y: (X[:, 0], y, None), "Expected 2D array", X_METHODS),
    "X_scalar": (lambda X, y: (3.0, y, None), "Expected 2D array", X_METHODS),
    "X_3d": (lambda X, y: (X[:, :, None], y, None), "dim 3", X_METHODS),
    "X_empty": (lambda X, y: (X[:0], y[:0], None), "0 sample", X_METHODS),
    "X_no_features": (lambda X, y: (X[:, :0], y, None), "0 feature", X_METHODS),
    "X_complex": (
        lambda X, y: (X.astype(complex), y, None),
        "Complex data not supported",
        X_METHODS,
    ),
    "X_complex_sparse": (
        lambda X, y: (sp.csr_matrix(X.astype(complex)), y, None),
        "Complex data not supported",
        X_METHODS,
    ),
    "X_words": (
        lambda X, y: (np.full(X.shape, "abc"), y, None),
        "could not convert string to float|not compatible with arrays of bytes/str",
        X_METHODS,
    ),
    # Numeric strings: fit converts them (as scikit-learn); predict refuses.
    "X_numeric_strings": (
        lambda X, y: (X.astype(str), y, None),
        "not compatible with arrays of bytes/strings",
        ("predict", "predict_proba", "predict_log_proba", "score"),
    ),
    "X_object_junk": (
        lambda X, y: (_replace(X, {"a": 1}, object), y, None),
        "float\\(\\) argument",
        X_METHODS,
    ),
    "X_ragged": (lambda X, y: (_ragged(X), y, None), "inhomogeneous", X_METHODS),
    "Xy_length": (
        lambda X, y: (X, y[:-1], None),
        "inconsistent numbers of samples",
        Y_METHODS,
    ),
    "y_nan": (
        lambda X, y: (X, _replace(y.astype(float), np.nan), None),
        "NaN",
        Y_METHODS,
    ),
    "y_3d": (lambda X, y: (X, y[:, None, None], None), "dim 3", FIT_METHODS),
    "y_none": (lambda X, y: (X, None, None), "requires y", FIT_METHODS),
    "sw_nan": (
        lambda X, y: (X, y, _replace(np.ones(N), np.nan)),
        "sample_weight contains NaN",
        W_METHODS,
    ),
    "sw_inf": (
        lambda X, y: (X, y, _replace(np.ones(N), np.inf)),
        "sample_weight contains infinity",
        W_METHODS,
    ),
    "sw_length": (
        lambda X, y: (X, y, np.ones(N - 1)),
        r"sample_weight.shape == \(29,\)|inconsistent numbers of samples",
        W_METHODS,
    ),
    "sw_2d": (
        lambda X, y: (X, y, np.ones((N, 1))),
        "Sample weights must be 1D",
        W_METHODS,
    ),
    "sw_all_zero": (
        lambda X, y: (X, y, np.zeros(N)),
        "at least one non-zero",
        W_METHODS,
    ),
    "sw_strings": (
        lambda X, y: (X, y, np.array(["a"] * N)),
        "could not convert string|dtype",
        W_METHODS,
    ),
    # fastbp is stricter than scikit-learn: negative weights are rejected.
    "sw_negative": (
        lambda X, y: (X, y, _replace(np.ones(N), -1.0)),
        "Negative values in data passed to `sample_weight`",
        FIT_METHODS + ("loss_and_gradients",),
    ),
}
# Where scikit-learn does not raise: fastbp is deliberately stricter.
STRICTER = {"sw_negative"}
CLASSIFIER_ONLY_METHODS = {"predict_proba", "predict_log_proba"}


def call(est, method, X, y, sw):
    kw = {} if sw is None else {"sample_weight": sw}
    if method in ("fit", "warm_start_fit"):
        return est.fit(X, y, **kw)
    if method == "partial_fit":
        return est.partial_fit(X, y, **kw)
    if method in ("predict", "predict_proba", "predict_log_proba"):
        return getattr(est, method)(X)
    if method == "score":
        return est.score(X, y, **kw)
    return est.loss_and_gradients(X, y, **kw)


def _cases():
    for kind in ("clf", "reg"):
        for category, (_, _, methods) in BAD.items():
            for method in methods:
                if kind == "reg" and method in CLASSIFIER_ONLY_METHODS:
                    continue
                yield pytest.param(
                    kind, category, method, id=f"{kind}-{category}-{method}"
                )


def _prepared(kind, lib, method):
    est = fitted(kind, lib)
    if method == "warm_start_fit":
        est.set_params(warm_start=True)
    return est


@pytest.mark.parametrize("kind, category, method", list(_cases()))
def test_bad_input_rejected_like_sklearn(kind, category, method):
    build, pattern, _ = BAD[category]
    X, y, sw = build(X0, Y0[kind])
    est = _prepared(kind, "fastbp", method)
    before = snapshot(est)
    with warnings.catch_warnings():
        # column_or_1d's warning on a (n, 1) y is scikit-learn's too, and
        # so is a cast warning inside its metrics on NaN labels.
        warnings.simplefilter("ignore", DataConversionWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="sklearn")
        with pytest.raises((ValueError, TypeError), match=pattern) as ours:
            call(est, method, X, y, sw)
    assert snapshot(est) == before, "a failed call changed the estimator"

    if method == "loss_and_gradients":
        return  # fastbp only
    theirs_est = _prepared(kind, "sklearn", method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call(theirs_est, method, X, y, sw)
        except Exception as exc:  # noqa: BLE001 - the oracle's type is the point
            theirs = exc
        else:
            theirs = None
    if category in STRICTER:
        assert theirs is None, "scikit-learn now rejects this too: update STRICTER"
    else:
        assert theirs is not None
        assert type(ours.value) is type(theirs), (ours.value, theirs)


def test_every_category_is_checked_for_both_estimators():
    ids = {(p.values[0], p.values[1]) for p in _cases()}
    assert {c for _, c in ids} == set(BAD)
    assert {k for k, _ in ids} == {"clf", "reg"}


# --------------------------------------------------------------------------- #
# Targets: labels, outputs, Poisson
# --------------------------------------------------------------------------- #
def _pf_then(first_classes, second_y):
    def run(est):
        est.partial_fit(X0, Y0["clf"], classes=first_classes)
        est.partial_fit(X0, second_y)

    return run


TARGET_CASES = [
    # (id, kind, action(est), pattern, scikit-learn raises the same type?)
    (
        "partial_fit_unseen_label",
        "clf",
        _pf_then([0, 1, 2], Y0["clf"] + 1),
        "classes not in `self.classes_`",
        True,
    ),
    (
        "partial_fit_after_fit_unseen_label",
        "clf",
        lambda e: e.fit(X0, Y0["clf"]).partial_fit(X0, Y0["clf"] + 5),
        "classes not in `self.classes_`",
        True,
    ),
    (
        "partial_fit_first_call_without_classes",
        "clf",
        lambda e: e.partial_fit(X0, Y0["clf"]),
        "classes must be passed on the first call",
        True,
    ),
    (
        "partial_fit_classes_changed",
        "clf",
        lambda e: e.partial_fit(X0, Y0["clf"], classes=[0, 1, 2]).partial_fit(
            X0, Y0["clf"], classes=[0, 1, 2, 3]
        ),
        "is not the same as on last call",
        True,
    ),
    (
        "partial_fit_y_outside_classes",
        "clf",
        lambda e: e.partial_fit(X0, Y0["clf"], classes=[0, 1]),
        "classes not in `self.classes_`",
        True,
    ),
    (
        "warm_start_new_classes",
        "clf",
        lambda e: (
            e.set_params(warm_start=True).fit(X0, Y0["clf"]).fit(X0, Y0["clf"] + 5)
        ),
        "warm_start can only be used where `y` has the same classes",
        True,
    ),
    (
        "continuous_labels",
        "clf",
        lambda e: e.fit(X0, Y0["reg"]),
        "Unknown label type",
        True,
    ),
    (
        "unorderable_labels",
        "clf",
        lambda e: e.fit(X0, np.array(["a", None] * (N // 2), dtype=object)),
        "not supported between instances",
        True,
    ),
    (
        "regression_y_complex",
        "reg",
        lambda e: e.fit(X0, Y0["reg"].astype(complex)),
        "Complex data not supported",
        True,
    ),
    (
        "regression_y_inf",
        "reg",
        lambda e: e.fit(X0, _replace(Y0["reg"], np.inf)),
        "infinity",
        True,
    ),
    (
        "regression_y_no_outputs",
        "reg",
        lambda e: e.fit(X0, np.empty((N, 0))),
        "0 feature",
        True,
    ),
    # scikit-learn fails later with a numpy UFuncTypeError; fastbp says what.
    (
        "regression_y_words",
        "reg",
        lambda e: e.fit(X0, np.array(["a"] * N)),
        "could not convert string to float",
        False,
    ),
    # scikit-learn silently broadcasts; fastbp refuses to change the outputs.
    (
        "partial_fit_changes_n_outputs",
        "reg",
        lambda e: e.fit(X0, np.c_[Y0["reg"], Y0["reg"]]).partial_fit(X0, Y0["reg"]),
        "do not match the layer sizes",
        False,
    ),
    (
        "warm_start_changes_n_outputs",
        "reg",
        lambda e: (
            e.set_params(warm_start=True)
            .fit(X0, np.c_[Y0["reg"], Y0["reg"]])
            .fit(X0, Y0["reg"])
        ),
        "do not match the layer sizes",
        False,
    ),
    (
        "poisson_negative_target_fit",
        "reg",
        lambda e: e.set_params(loss="poisson").fit(X0, Y0["reg"]),
        "negative which is not allowed for Poisson",
        False,
    ),
    (
        "poisson_negative_target_partial_fit",
        "reg",
        lambda e: e.set_params(loss="poisson").partial_fit(X0, Y0["reg"]),
        "negative which is not allowed for Poisson",
        False,
    ),
    (
        "early_stopping_validation_too_small",
        "clf",
        lambda e: e.set_params(early_stopping=True).fit(X0[:5], [0, 1, 0, 1, 0]),
        "test_size = 1 should be greater or equal to the number of classes",
        True,
    ),
]


@pytest.mark.parametrize(
    "kind, action, pattern, same_as_sklearn",
    [pytest.param(*c[1:], id=c[0]) for c in TARGET_CASES],
)
def test_bad_targets(kind, action, pattern, same_as_sklearn):
    ours_cls, theirs_cls = CLASSES[kind]
    with pytest.raises((ValueError, TypeError), match=pattern) as ours:
        action(ours_cls(**KW))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            action(theirs_cls(**KW))
        except Exception as exc:  # noqa: BLE001
            theirs = exc
        else:
            theirs = None
    if same_as_sklearn:
        assert type(ours.value) is type(theirs), (ours.value, theirs)
    else:
        # Documented differences: scikit-learn accepts it, or fails later
        # inside numpy with another type.
        assert theirs is None or type(theirs) is not type(ours.value)


@pytest.mark.parametrize("method", ["loss_and_gradients", "score"])
def test_targets_checked_outside_fit(method):
    clf, reg = fitted("clf"), fitted("reg")
    if method == "loss_and_gradients":
        with pytest.raises(ValueError, match="not in classes_"):
            clf.loss_and_gradients(X0, Y0["clf"] + 7)
        with pytest.raises(ValueError, match="2 outputs but the model has 1"):
            reg.loss_and_gradients(X0, np.c_[Y0["reg"], Y0["reg"]])
        pois = fastbp.MLPRegressor(loss="poisson", **KW).fit(X0, abs(Y0["reg"]))
        with pytest.raises(ValueError, match="not allowed for Poisson"):
            pois.loss_and_gradients(X0, Y0["reg"])
    else:
        with pytest.raises(ValueError, match="NaN"):
            reg.score(X0, _replace(Y0["reg"], np.nan))


@pytest.mark.parametrize("kind", ["clf", "reg"])
@pytest.mark.parametrize(
    "method", ["predict", "score", "loss_and_gradients", "partial_fit_no_fit"]
)
def test_not_fitted(kind, method):
    est = CLASSES[kind][0](**KW)
    if method == "partial_fit_no_fit":
        # partial_fit on a fresh estimator is a first fit, not an error.
        extra = {"classes": [0, 1, 2]} if kind == "clf" else {}
        est.partial_fit(X0, Y0[kind], **extra)
        assert all(np.isfinite(c).all() for c in est.coefs_)
        return
    with pytest.raises(NotFittedError):
        call(est, method, X0, Y0[kind], None)


# --------------------------------------------------------------------------- #
# Class weights (fastbp's extra): same rules as sample weights
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "class_weight, pattern",
    [
        ({0: -1.0}, "negative weights"),
        ({0: np.nan}, "NaN or infinity"),
        ({0: np.inf}, "NaN or infinity"),
        ({0: "a"}, "must be numbers"),
        ({0: 0.0, 1: 0.0, 2: 0.0}, "positive sum"),
        ({0: 1e308, 1: 1e308, 2: 1e308}, "overflows"),
        ({7: 1.0}, "not in classes_"),
    ],
)
def test_bad_class_weight(class_weight, pattern):
    est = fitted("clf")
    before = snapshot(est)
    est.set_params(class_weight=class_weight)
    with pytest.raises(ValueError, match=pattern):
        est.fit(X0, Y0["clf"])
    est.set_params(class_weight=None)
    assert snapshot(est) == before


def test_sample_weight_sum_overflow():
    with pytest.raises(ValueError, match="overflows"):
        fastbp.MLPRegressor(**KW).fit(X0, Y0["reg"], sample_weight=np.full(N, 1e308))


# --------------------------------------------------------------------------- #
# Hyperparameters
# --------------------------------------------------------------------------- #
SHARED_BAD_PARAMS = [
    ("hidden_layer_sizes", (0,)),
    ("hidden_layer_sizes", (-1,)),
    ("hidden_layer_sizes", (2.5,)),
    ("hidden_layer_sizes", "abc"),
    ("hidden_layer_sizes", 0),
    ("hidden_layer_sizes", None),
    ("activation", "foo"),
    ("activation", None),
    ("solver", "foo"),
    ("alpha", -1.0),
    ("alpha", np.nan),
    ("alpha", "a"),
    ("batch_size", 0),
    ("batch_size", 1.5),
    ("batch_size", "big"),
    ("learning_rate", "foo"),
    ("learning_rate_init", 0.0),
    ("learning_rate_init", -1.0),
    ("learning_rate_init", np.nan),
    ("power_t", -1.0),
    ("max_iter", 0),
    ("max_iter", 1.5),
    ("shuffle", "yes"),
    ("random_state", "a"),
    ("tol", -1.0),
    ("tol", np.nan),
    ("verbose", "a"),
    ("warm_start", 2),
    ("momentum", 1.5),
    ("momentum", -0.1),
    ("nesterovs_momentum", 1),
    ("early_stopping", "a"),
    ("validation_fraction", 1.0),
    ("validation_fraction", -0.1),
    ("beta_1", 1.0),
    ("beta_2", 1.0),
    ("beta_1", -0.1),
    ("epsilon", 0.0),
    ("n_iter_no_change", 0),
    ("n_iter_no_change", 1.5),
    ("max_fun", 0),
]
FASTBP_BAD_PARAMS = [
    ("max_grad_norm", 0.0),
    ("max_grad_norm", -1.0),
    ("max_grad_norm", np.nan),
    ("max_grad_norm", "a"),
    ("n_jobs", 0),
    ("n_jobs", 1.5),
    ("n_jobs", "a"),
    ("solver", "newton"),
]


def _hyper_cases():
    for name, value in SHARED_BAD_PARAMS + FASTBP_BAD_PARAMS:
        for kind in ("clf", "reg"):
            yield pytest.param(kind, name, value, id=f"{kind}-{name}={value!r}")
    for value in ("foo", [1, 2]):
        yield pytest.param("clf", "class_weight", value, id=f"clf-class_weight={value}")
    for value in ("foo", "log_loss", None):
        yield pytest.param("reg", "loss", value, id=f"reg-loss={value}")


@pytest.mark.parametrize("kind, name, value", list(_hyper_cases()))
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_invalid_hyperparameter(kind, name, value, method):
    est = fitted(kind)
    before = snapshot(est)
    est.set_params(**{name: value})
    if name == "solver" and method == "partial_fit":
        # As scikit-learn: partial_fit exists only for stochastic solvers.
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
            call(est, method, X0, Y0[kind], None)
        # (scikit-learn's regressor validates the parameter first instead.)
        theirs = CLASSES[kind][1](**KW).set_params(solver=value)
        with pytest.raises((AttributeError, InvalidParameterError)):
            call(theirs, method, X0, Y0[kind], None)
        return
    with pytest.raises((ValueError, TypeError), match=name) as ours:
        call(est, method, X0, Y0[kind], None)
    if name not in ("hidden_layer_sizes", "activation"):
        # scikit-learn's machinery: InvalidParameterError is both.
        assert isinstance(ours.value, InvalidParameterError)
    if (name, value) in SHARED_BAD_PARAMS and method == "fit":
        theirs = CLASSES[kind][1](**KW)
        theirs.set_params(**{name: value})
        with pytest.raises(Exception) as exc:  # noqa: PT011
            theirs.fit(X0, Y0[kind])
        assert type(ours.value) is type(exc.value), (ours.value, exc.value)
    est.set_params(**{name: fitted(kind).get_params()[name]})
    assert snapshot(est) == before


@pytest.mark.parametrize(
    "activation, hidden, pattern",
    [
        (["relu"], (3, 3), "activation has 1 entries"),
        (["relu", "foo"], (3, 3), "activation 'foo' is not supported"),
        ([3, "relu"], (3, 3), "activation 3 is not supported"),
        ("relu", (3, 0), "hidden_layer_sizes must be > 0"),
        ("relu", (3, True), "hidden_layer_sizes must contain integers"),
    ],
)
def test_invalid_per_layer_structure(activation, hidden, pattern):
    est = fastbp.MLPClassifier(hidden, activation=activation, max_iter=1)
    with pytest.raises((ValueError, TypeError), match=pattern):
        est.fit(X0, Y0["clf"])
    assert not hasattr(est, "coefs_")


# --------------------------------------------------------------------------- #
# Atomic state
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_atomic_fit_partial_fit_and_warm_start(kind):
    y = Y0[kind]
    for params, action in [
        ({}, lambda e: e.fit(_replace(X0, np.nan), y)),
        ({}, lambda e: e.partial_fit(X0[:, :2], y)),
        ({}, lambda e: e.partial_fit(X0, y, sample_weight=-np.ones(N))),
        ({"warm_start": True}, lambda e: e.fit(X0[:, :2], y)),
        ({"warm_start": True}, lambda e: e.fit(X0, y, sample_weight=np.zeros(N))),
    ]:
        est = fitted(kind, **params)
        # A model with an optimizer state and a history, as after real use.
        extra = {"classes": np.unique(y)} if kind == "clf" else {}
        est.partial_fit(X0, y, **extra)
        before = snapshot(est)
        with pytest.raises((ValueError, TypeError)):
            action(est)
        assert snapshot(est) == before


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("how", ["fit", "warm_start_fit", "partial_fit"])
def test_atomic_after_divergence_mid_training(solver, how):
    """An error detected several epochs into training restores everything."""
    rng = np.random.RandomState(1)
    X, y = rng.randn(200, 5), rng.randn(200) * 10
    est = fastbp.MLPRegressor(
        hidden_layer_sizes=(8,),
        solver=solver,
        max_iter=3,
        random_state=0,
        activation="identity",
    ).fit(X, y)
    est.partial_fit(X, y)
    if how == "partial_fit":
        # partial_fit keeps the optimizer's own learning rate: make the data
        # absurd instead; several calls succeed before one diverges.
        n_ok = 0
        # (Adam's steps stay finite on 1e100, as scikit-learn's do.)
        scale = 1e100 if solver == "sgd" else 1e155
        with pytest.raises(ValueError, match="non-finite"):
            for _ in range(50):
                before = snapshot(est)
                est.partial_fit(X * scale, y * scale)
                n_ok += 1
        assert snapshot(est) == before
        assert all(np.isfinite(c).all() for c in est.coefs_)
        return
    before = snapshot(est)
    lr = 1e10 if solver == "sgd" else 1e300
    est.set_params(learning_rate_init=lr, max_iter=50, warm_start=how != "fit")
    with pytest.raises(ValueError, match="non-finite") as exc:
        est.fit(X, y)
    if solver == "sgd":
        # Detected mid-training, not up front.
        assert "epoch 1:" not in str(exc.value)
    est.set_params(learning_rate_init=0.001, max_iter=3, warm_start=False)
    assert snapshot(est) == before
    assert all(np.isfinite(c).all() for c in est.coefs_)


def test_divergence_is_detected_after_some_epochs():
    rng = np.random.RandomState(0)
    X, y = rng.randn(30, 4), rng.randn(30)
    est = fastbp.MLPRegressor(
        hidden_layer_sizes=(3,),
        solver="sgd",
        learning_rate_init=1e10,
        max_iter=20,
        random_state=0,
    )
    with pytest.raises(ValueError, match=r"diverged in epoch [2-9]") as exc:
        est.fit(X, y)
    assert "learning_rate_init" in str(exc.value)
    # A cold fit that fails leaves no half-fitted model behind.
    assert not hasattr(est, "coefs_")


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs", "cg"])
@pytest.mark.parametrize(
    "kind,absurd",
    [
        (kind, absurd)
        for kind in ("clf", "reg")
        for absurd in ("learning_rate", "X", "y", "sample_weight")
        if (kind, absurd) != ("clf", "y")  # class labels have no magnitude
    ],
)
def test_divergence_never_returns_non_finite_weights(kind, solver, absurd):
    rng = np.random.RandomState(0)
    X = rng.randn(40, 4)
    y = np.arange(40) % 3 if kind == "clf" else rng.randn(40)
    sw = None
    params = dict(hidden_layer_sizes=(4,), solver=solver, max_iter=5, random_state=0)
    if absurd == "learning_rate":
        params["learning_rate_init"] = 1e10
    elif absurd == "X":
        X = X * 1e300
    elif absurd == "y":
        y = y * 1e300
    else:
        sw = np.full(40, 1e306)
    est = CLASSES[kind][0](**params)
    try:
        est.fit(X, y, sample_weight=sw)
    except ValueError as exc:
        assert "non-finite" in str(exc) or "overflows" in str(exc)
        assert not hasattr(est, "coefs_")
    else:
        assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
        out = est.predict_proba(X) if kind == "clf" else est.predict(X)
        assert np.isfinite(out).all()


def test_lbfgs_warns_and_keeps_finite_weights_like_sklearn():
    """Where scikit-learn warns instead of raising, fastbp does the same."""
    X, y = X0 * 1e300, Y0["reg"]
    kw = dict(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=5, random_state=0)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        ours = fastbp.MLPRegressor(**kw).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SKRegressor(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 0
    for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b)


# --------------------------------------------------------------------------- #
# Concurrency
# --------------------------------------------------------------------------- #
def _fit_in_thread(est, X, y, barrier, errors):
    # (The module's filter already ignores ConvergenceWarning; catch_warnings
    # is not thread-safe, so none here.)
    try:
        barrier.wait()
        start = time.perf_counter()
        est.fit(X, y)
        est.span_ = (start, time.perf_counter())
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_two_threads_fit_like_sequential():
    import numba

    rng = np.random.RandomState(0)
    Xc, yc = rng.randn(3000, 20), rng.randint(0, 4, 3000)
    Xr, yr = rng.randn(2500, 15), rng.randn(2500, 2)

    def make():
        return [
            (
                fastbp.MLPClassifier(
                    (32,), max_iter=40, tol=0, batch_size=500, random_state=0, n_jobs=2
                ),
                Xc,
                yc,
            ),
            (
                fastbp.MLPRegressor(
                    hidden_layer_sizes=(24, 12),
                    solver="sgd",
                    max_iter=60,
                    tol=0,
                    random_state=1,
                    n_jobs=2,
                ),
                Xr,
                yr,
            ),
        ]

    sequential = [est.fit(X, y) for est, X, y in make()]
    for _ in range(2):
        jobs = make()
        barrier = threading.Barrier(len(jobs))
        errors = []
        threads = [
            threading.Thread(target=_fit_in_thread, args=(*job, barrier, errors))
            for job in jobs
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        # The two fits really ran at the same time.
        spans = [est.span_ for est, _, _ in jobs]
        assert max(s[0] for s in spans) < min(s[1] for s in spans)
        for (est, X, _), ref in zip(jobs, sequential, strict=True):
            ours, theirs = est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_
            for a, b in zip(ours, theirs, strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(est.predict(X[:50]), ref.predict(X[:50]))
    assert numba.threading_layer() != "workqueue"


# --------------------------------------------------------------------------- #
# Fuzzing
# --------------------------------------------------------------------------- #
ALLOWED_WARNINGS = (
    ConvergenceWarning,  # max_iter is tiny
    DataConversionWarning,  # y of shape (n, 1)
    UndefinedMetricWarning,  # r2 with one sample
)
FLOATS = st.one_of(
    st.floats(-3, 3, allow_nan=False, width=64),
    st.sampled_from(
        [0.0, -0.0, 1e300, -1e300, 1e-300, 5e-324, 1e38, 7e4, np.nan, np.inf, -np.inf]
    ),
)
X_DTYPES = [
    np.float64,
    np.float64,
    np.float64,
    np.float32,
    np.float32,
    np.float16,
    np.int8,
    np.int64,
    np.uint8,
    bool,
    object,
    np.complex128,
]


@st.composite
def matrices(draw, n_samples, n_features):
    clean = draw(st.integers(0, 2)) > 0
    if clean:
        values = draw(
            st.lists(
                st.floats(-3, 3, allow_nan=False),
                min_size=n_samples * n_features,
                max_size=n_samples * n_features,
            )
        )
    else:
        values = draw(
            st.lists(
                FLOATS,
                min_size=n_samples * n_features,
                max_size=n_samples * n_features,
            )
        )
    X = np.array(values, dtype=np.float64).reshape(n_samples, n_features)
    dtype = draw(st.sampled_from(X_DTYPES))
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind in "iub":
            X = np.nan_to_num(X, posinf=100, neginf=-100).clip(-100, 100)
        X = X.astype(dtype)
    container = draw(st.sampled_from(["dense", "dense", "csr", "csc", "coo", "list"]))
    if container == "list":
        return X.tolist()
    if container != "dense" and X.ndim == 2 and dtype not in (object, np.float16):
        X = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix}[
            container
        ](X)
    return X


def targets(draw, kind, n_samples):
    if kind == "clf":
        form = draw(
            st.sampled_from(["int", "int", "str", "bool", "float", "multilabel", "nan"])
        )
        n_classes = draw(st.integers(1, 3))
        labels = draw(
            st.lists(
                st.integers(0, n_classes - 1), min_size=n_samples, max_size=n_samples
            )
        )
        y = np.array(labels, dtype=np.int64)
        if form == "str":
            return np.array(["cat", "dog", "eel"])[y]
        if form == "bool":
            return y.astype(bool)
        if form == "float":
            return y + 0.5 * draw(st.sampled_from([0.0, 0.0, 1.0]))
        if form == "multilabel":
            return np.c_[y % 2, (y + 1) % 2, y >= 1].astype(np.int64)
        if form == "nan":
            y = y.astype(float)
            if n_samples:
                y[0] = np.nan
            return y
        return y
    n_outputs = draw(st.sampled_from([0, 1, 1, 2]))
    clean = draw(st.integers(0, 2)) > 0
    values = draw(
        st.lists(
            st.floats(-5, 5, allow_nan=False) if clean else FLOATS,
            min_size=n_samples * max(n_outputs, 1),
            max_size=n_samples * max(n_outputs, 1),
        )
    )
    y = np.array(values, dtype=np.float64)
    if n_outputs == 0:
        return y
    y = y.reshape(n_samples, n_outputs)
    with np.errstate(all="ignore"):
        return draw(st.sampled_from([y, y.astype(np.float32), np.abs(y).round()]))


def hyperparameters(draw, kind):
    valid = draw(st.integers(0, 9)) > 0  # mostly valid, sometimes anything
    pick = st.sampled_from
    params = dict(
        solver=draw(pick(["adam", "sgd", "lbfgs", "cg"])),
        hidden_layer_sizes=draw(pick([(), (1,), (3,), (2, 2)])),
        activation=draw(
            pick(
                [
                    "relu",
                    "tanh",
                    "logistic",
                    "identity",
                    "leaky_relu",
                    "elu",
                    "softplus",
                    "gelu",
                ]
            )
        ),
        alpha=draw(pick([0.0, 1e-4, 1.0, 1e6])),
        batch_size=draw(pick(["auto", 1, 2, 1000])),
        learning_rate=draw(pick(["constant", "invscaling", "adaptive"])),
        learning_rate_init=draw(pick([1e-3, 0.1, 10.0, 1e10, 1e300])),
        max_iter=draw(st.integers(1, 3)),
        shuffle=draw(st.booleans()),
        random_state=draw(st.integers(0, 3)),
        momentum=draw(pick([0.0, 0.9, 1.0])),
        nesterovs_momentum=draw(st.booleans()),
        early_stopping=draw(pick([False, False, False, True])),
        validation_fraction=draw(pick([0.1, 0.5])),
        epsilon=draw(pick([1e-8, 1e-300])),
        max_grad_norm=draw(pick([None, None, 1e-3, 1.0])),
        n_jobs=draw(pick([None, 1, 2])),
        tol=draw(pick([1e-4, 0.0])),
    )
    if kind == "clf":
        params["class_weight"] = draw(pick([None, None, "balanced", {0: 2.0}]))
    else:
        params["loss"] = draw(pick(["squared_error", "squared_error", "poisson"]))
    if not valid:
        name = draw(pick(sorted(params)))
        params[name] = draw(
            pick([0, -1, np.nan, np.inf, "x", None, (0,), [1.5], 1e300, True])
        )
    return params


def check_outcome(kind, make, X, y, sw):
    """Fit and use the model; only ValueError/TypeError may escape."""
    est = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        for category in ALLOWED_WARNINGS:
            warnings.simplefilter("always", category)
        warnings.filterwarnings("ignore", message="Got `batch_size` less than 1")
        # numpy floating-point warnings inside scikit-learn's validators (e.g.
        # summing [inf, -inf] in its finiteness check); the error follows.
        warnings.filterwarnings(
            "ignore", category=RuntimeWarning, module=r"(sklearn|numpy)\."
        )
        try:
            est.fit(X, y, sample_weight=sw)
        except (ValueError, TypeError) as exc:
            assert not hasattr(est, "coefs_"), "a failed fit left a model"
            return f"{type(exc).__name__}: {str(exc)[:30]}"
        for param in est.coefs_ + est.intercepts_:
            assert np.isfinite(param).all(), "fit returned non-finite weights"
        out = est.predict_proba(X) if kind == "clf" else est.predict(X)
        if not np.isfinite(out).all():
            # Only where scikit-learn does the same: lbfgs stopped at its
            # first finite point on absurd data, said so (ConvergenceWarning)
            # and reports a non-finite loss_.
            warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
            assert est.solver == "lbfgs" and warned and not np.isfinite(est.loss_), (
                "finite model, non-finite predictions"
            )
            return "lbfgs-gave-up"
        if kind == "clf":
            assert np.all((out >= 0) & (out <= 1))
            est.predict(X)
        loss, cg, ig = est.loss_and_gradients(X, y, sample_weight=sw)
        assert np.isfinite(loss) or loss == np.inf
        assert all(np.isfinite(g).all() for g in cg + ig) or loss == np.inf
        score = est.score(X, y)
        # r2 is NaN for one sample, and overflows on targets near 1e300.
        extreme = kind == "reg" and np.abs(np.asarray(y, dtype=float)).max() > 1e150
        assert not np.isnan(score) or np.asarray(y).shape[0] < 2 or extreme
        if est.solver in ("sgd", "adam") and not est.early_stopping:
            before = snapshot(est)
            try:
                if kind == "clf":
                    est.partial_fit(X, y)
                else:
                    est.partial_fit(X, y, sample_weight=sw)
            except (ValueError, TypeError):
                assert snapshot(est) == before
            else:
                for param in est.coefs_ + est.intercepts_:
                    assert np.isfinite(param).all()
    return "fit"


# 300 + 300 + 150 examples, derandomized: the same campaign on every CI run.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)


def _fuzz_data(data, kind):
    n_samples = data.draw(
        st.sampled_from([0, 1, 2, 3, 4, 5, 8, 13, 21, 34]), label="n_samples"
    )
    n_features = data.draw(
        st.sampled_from([0, 1, 1, 2, 3, 4, 4, 4]), label="n_features"
    )
    X = data.draw(matrices(n_samples, n_features), label="X")
    y = targets(data.draw, kind, n_samples)
    sw = data.draw(
        st.sampled_from(
            [None, None, None, "ones", "random", "random", "negative", "nan", "zeros"]
        ),
        label="sample_weight",
    )
    if sw is not None:
        w = np.abs(np.random.RandomState(n_samples).randn(n_samples)) + 0.1
        w = {
            "ones": np.ones(n_samples),
            "random": w,
            "negative": -w,
            "nan": w * np.nan,
            "zeros": np.zeros(n_samples),
        }[sw]
        sw = w
    return X, y, sw


@pytest.mark.slow
@pytest.mark.boundscheck
@pytest.mark.parametrize("kind", ["clf", "reg"])
@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_fuzz_any_input_fits_or_fails_cleanly(kind, data):
    X, y, sw = _fuzz_data(data, kind)
    params = hyperparameters(data.draw, kind)
    cls = CLASSES[kind][0]
    event(check_outcome(kind, lambda: cls(**params), X, y, sw))


@pytest.mark.slow
@pytest.mark.boundscheck
@settings(FUZZ, max_examples=150)
@given(
    data=st.data(),
    kind=st.sampled_from(["clf", "reg"]),
    fmt=st.sampled_from(["csr", "csc"]),
    index_dtype=st.sampled_from([np.int32, np.int64]),
    unsorted=st.booleans(),
    duplicates=st.booleans(),
)
def test_fuzz_sparse_matches_dense(data, kind, fmt, index_dtype, unsorted, duplicates):
    """Non-canonical sparse input (unsorted, duplicate entries) is dense input."""
    n, f = data.draw(st.integers(2, 12)), data.draw(st.integers(1, 6))
    density = data.draw(st.sampled_from([0.0, 0.3, 1.0]))
    rng = np.random.RandomState(n * 7 + f)
    dense = sp.random(n, f, density=density, random_state=rng).toarray() * 10
    coo = sp.coo_matrix(dense)
    rows, cols, vals = coo.row, coo.col, coo.data.copy()
    if duplicates and len(vals):
        # Split the first entry in two halves stored twice.
        vals[0] /= 2
        rows, cols, vals = (
            np.r_[rows, rows[0]],
            np.r_[cols, cols[0]],
            np.r_[vals, vals[0]],
        )
    if unsorted:
        order = rng.permutation(len(vals))
        rows, cols, vals = rows[order], cols[order], vals[order]
    # Build the compressed arrays by hand: scipy's converters would
    # canonicalise (sort and sum duplicates).
    major, minor, n_major = (rows, cols, n) if fmt == "csr" else (cols, rows, f)
    order = np.argsort(major, kind="stable")
    indptr = np.r_[0, np.cumsum(np.bincount(major, minlength=n_major))]
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    X = cls(
        (vals[order], minor[order].astype(index_dtype), indptr.astype(index_dtype)),
        shape=(n, f),
    )
    X_before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    np.testing.assert_allclose(X.toarray(), dense, rtol=1e-12, atol=1e-12)
    y = np.arange(n) % 2 if kind == "clf" else rng.randn(n)
    kw = dict(hidden_layer_sizes=(3,), max_iter=2, random_state=0, shuffle=False)
    cls = CLASSES[kind][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = cls(**kw).fit(X, y)
        b = cls(**kw).fit(dense, y)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)
    # The caller's matrix is not modified (sorted or summed in place).
    for before, after in zip(X_before, (X.data, X.indices, X.indptr), strict=True):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(
        a.predict(X) if kind == "reg" else a.predict_proba(X),
        b.predict(dense) if kind == "reg" else b.predict_proba(dense),
        rtol=1e-9,
        atol=1e-12,
    )


# --------------------------------------------------------------------------- #
# Malformed sparse input is refused before any kernel reads it
# --------------------------------------------------------------------------- #
def _malformed(kind):
    X = sp.random(60, 4, density=0.5, format="csr", random_state=0)
    if kind == "column out of range":
        X.indices[0] = 7
    elif kind == "negative index":
        X.indices[3] = -1
    elif kind == "decreasing indptr":
        X.indptr[2], X.indptr[3] = X.indptr[3], X.indptr[2]
    elif kind == "indptr past the data":
        X.indptr[-1] += 5
    elif kind == "csc row out of range":
        X = X.tocsc()
        X.indices[1] = 99
    return X


@pytest.mark.parametrize(
    "kind",
    ["column out of range", "negative index", "decreasing indptr",
     "indptr past the data", "csc row out of range"],
)  # fmt: skip
def test_malformed_sparse_input_is_refused_and_the_model_kept(kind):
    X = sp.random(60, 4, density=0.5, format="csr", random_state=0)
    y = np.arange(60) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastbp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=3,
                                     random_state=0)  # fmt: skip
        model.fit(X, y)
    before = [c.copy() for c in model.coefs_]
    bad = _malformed(kind)
    for call in (
        lambda: model.predict(bad),
        lambda: model.partial_fit(bad, y),
        lambda: model.score(bad, y),
        lambda: model.loss_and_gradients(bad, y),
        lambda: clone(model).fit(X, y, X_val=bad, y_val=y),
    ):
        with pytest.raises(ValueError, match="malformed"):
            call()
    for a, b in zip(model.coefs_, before, strict=True):
        np.testing.assert_array_equal(a, b)
