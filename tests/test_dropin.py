"""Drop-in across calls: the same calls on scikit-learn's MLP and on fastbp's.

Every test makes one estimator of each library with the same parameters and
seed, applies the same sequence of calls to both (float64), and compares
``n_iter_``, ``t_``, ``loss_curve_``, ``validation_scores_``, the best
loss/score and the weights after each call.  scikit-learn 1.9 is the oracle;
where it has no counterpart (cg, the objective of ``loss_and_gradients``) the
oracle is scipy on scikit-learn's own loss and gradient, or central
differences.
"""

import pickle
import warnings

import numpy as np
import pytest
import scipy.optimize
import sklearn.base
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SKClassifier
from sklearn.neural_network import MLPRegressor as SKRegressor
from sklearn.utils.class_weight import compute_sample_weight

import fastbp
from fastbp._params import ParamLayout

ESTIMATORS = {
    "clf": (fastbp.MLPClassifier, SKClassifier),
    "reg": (fastbp.MLPRegressor, SKRegressor),
}
#: Relative tolerance of side-by-side comparisons after a few dozen epochs
#: (single steps agree to ~1e-13; differences grow with the epochs).
RTOL = 1e-8
ATOL = 1e-10


def quietly(call):
    """Run ``call()`` with scikit-learn's and numpy's warnings silenced.

    Returns ``(result or exception, warning categories)``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="ignore"):
            try:
                result = call()
            except Exception as exc:  # compared by the caller
                result = exc
    return result, {w.category for w in caught if w.category is ConvergenceWarning}


def both(kind, **params):
    ours, theirs = ESTIMATORS[kind]
    return ours(**params), theirs(**params)


def apply(pair, method, *args, **kwargs):
    """Call ``method`` on both estimators; both succeed or both fail alike."""
    ours, theirs = pair
    got, got_warned = quietly(lambda: getattr(ours, method)(*args, **kwargs))
    want, want_warned = quietly(lambda: getattr(theirs, method)(*args, **kwargs))
    if isinstance(want, Exception):
        assert type(got) is type(want), (got, want)
        assert str(want) in str(got)
    else:
        assert not isinstance(got, Exception), got
        assert got_warned == want_warned, (got_warned, want_warned)
    return got, want


def assert_same_model(ours, theirs, rtol=RTOL, atol=ATOL, nonfinite_alike=False):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    for name in ("loss_curve_", "validation_scores_"):
        a, b = getattr(ours, name, None), getattr(theirs, name, None)
        if b is None:
            assert a is None, name
            continue
        assert len(a) == len(b), (name, len(a), len(b))
        if nonfinite_alike:
            finite = np.isfinite(b)
            np.testing.assert_array_equal(np.isfinite(a), finite, err_msg=name)
            a, b = np.asarray(a)[finite], np.asarray(b)[finite]
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)
    for name in ("loss_", "best_loss_", "best_validation_score_"):
        a, b = getattr(ours, name, None), getattr(theirs, name, None)
        if b is None:
            assert a is None, name
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def assert_same_fit(ours, theirs, solver):
    """:func:`assert_same_model`; for lbfgs, whose line search amplifies
    rounding, the iterations, the loss and the weights to a looser tolerance."""
    if solver == "lbfgs":
        assert ours.n_iter_ == theirs.n_iter_
        np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
        for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    else:
        assert_same_model(ours, theirs)


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_classification(300, 8, n_informative=5, n_classes=3, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(300, 8, n_targets=3, noise=5.0, random_state=0)
    return X, y / y.std(axis=0)


def data_for(kind, clf_data, reg_data):
    return clf_data if kind == "clf" else reg_data


# --------------------------------------------------------------------------- #
# 1. warm_start and partial_fit: every call counts its own epochs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_warm_start_fits_with_changed_max_iter(kind, solver, clf_data, reg_data):
    X, y = data_for(kind, clf_data, reg_data)
    pair = both(
        kind,
        hidden_layer_sizes=(7,),
        solver=solver,
        max_iter=4,
        warm_start=True,
        learning_rate_init=0.01,
        random_state=0,
    )
    for max_iter in (4, 7, 2):
        for est in pair:
            est.set_params(max_iter=max_iter)
        apply(pair, "fit", X, y)
        assert_same_model(*pair)
        assert pair[0].n_iter_ == max_iter


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_partial_fits_then_warm_started_fit(kind, clf_data, reg_data):
    X, y = data_for(kind, clf_data, reg_data)
    pair = both(kind, hidden_layer_sizes=(7,), max_iter=3, random_state=0)
    extra = {"classes": np.unique(y)} if kind == "clf" else {}
    for k in range(3):
        apply(pair, "partial_fit", X[k::3], y[k::3], **extra)
        assert_same_model(*pair)
        assert pair[0].n_iter_ == 1
    for est in pair:
        est.set_params(warm_start=True)
    apply(pair, "fit", X, y)
    assert_same_model(*pair)
    assert pair[0].n_iter_ == 3


# --------------------------------------------------------------------------- #
# 2. Early stopping: validation scores, restored best weights
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_early_stopping_scores_and_restored_weights(kind, clf_data, reg_data):
    X, y = data_for(kind, clf_data, reg_data)
    pair = both(
        kind,
        hidden_layer_sizes=(7,),
        solver="sgd",
        learning_rate_init=0.05,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        max_iter=200,
        warm_start=True,
        random_state=0,
    )
    apply(pair, "fit", X, y)
    assert_same_model(*pair)
    ours = pair[0]
    assert ours.n_iter_ < 200  # stopped by the rule, not by max_iter
    # A warm-started fit that never beats the best score: scikit-learn ends
    # with the weights of its last epoch (its best weights are the arrays
    # being trained), not with those of the previous call.
    best, restored = ours.best_validation_score_, ours.coefs_[0].copy()
    for est in pair:
        est.set_params(learning_rate_init=2.0, max_iter=3)
    apply(pair, "fit", X, y)
    assert_same_model(*pair)
    assert ours.best_validation_score_ == best
    assert not np.allclose(ours.coefs_[0], restored)


# --------------------------------------------------------------------------- #
# 3. Adaptive learning rate, decided on the reported loss
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_adaptive_learning_rate(kind, clf_data, reg_data):
    X, y = data_for(kind, clf_data, reg_data)
    pair = both(
        kind,
        hidden_layer_sizes=(7,),
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=0.2,
        n_iter_no_change=2,
        tol=1e-3,
        max_iter=150,
        random_state=0,
    )
    apply(pair, "fit", X, y)
    assert_same_model(*pair)
    ours, theirs = pair
    # The rate was divided several times, and ended at scikit-learn's.
    assert ours._optimizer.learning_rate <= 0.2 / 25
    assert ours._optimizer.learning_rate == pytest.approx(
        theirs._optimizer.learning_rate, rel=1e-12
    )


# --------------------------------------------------------------------------- #
# 4. Reported losses: multi-output squared error, saturated log-loss
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_multi_output_regression_stops_by_tol_as_sklearn(solver, reg_data):
    X, y = reg_data
    pair = both(
        "reg",
        hidden_layer_sizes=(10,),
        solver=solver,
        learning_rate_init=0.01,
        tol=1e-3,
        max_iter=500,
        random_state=0,
    )
    apply(pair, "fit", X, y)
    assert_same_model(*pair)
    assert pair[0].n_iter_ < 500  # stopped by tol


def test_multi_output_lbfgs_sees_sklearn_loss(reg_data):
    """The line search decides on the loss value: same iterations, same model."""
    X, y = reg_data
    pair = both(
        "reg", hidden_layer_sizes=(6,), solver="lbfgs", max_iter=40, random_state=0
    )
    apply(pair, "fit", X, y)
    ours, theirs = pair
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-7)
    for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _saturating(kind_of_target):
    """Unscaled inputs and a large step: most probabilities round to 0 or 1."""
    rng = np.random.RandomState(0)
    X = rng.randn(200, 5) * 30
    if kind_of_target == "multiclass":
        y = np.argmax(X[:, :3], axis=1)
    elif kind_of_target == "binary":
        y = (X[:, 0] > 0).astype(int)
    else:  # multilabel
        y = (X[:, :3] > 0).astype(int)
    return X, y


@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel"])
def test_saturated_classifier_reports_clipped_log_loss(target):
    X, y = _saturating(target)
    pair = both(
        "clf",
        hidden_layer_sizes=(6,),
        solver="sgd",
        learning_rate_init=0.5,
        momentum=0.0,
        max_iter=15,
        random_state=0,
    )
    apply(pair, "fit", X, y)
    assert_same_model(*pair, rtol=1e-7)
    ours = pair[0]
    # Saturated indeed: the objective (unclipped) is far above the reported
    # loss, which cannot exceed -log(eps) per output.
    objective, _, _ = ours.loss_and_gradients(X, y)
    assert objective > 2 * ours.loss_curve_[-1]


@pytest.mark.parametrize("target,scale", [("multiclass", 10.0), ("binary", 1000.0)])
def test_loss_and_gradients_returns_the_objective_of_its_gradient(target, scale):
    """Where the reported loss is not the objective (saturated probabilities),
    loss_and_gradients returns the objective: central differences of its
    value are its gradient, and it exceeds the clipped log-loss."""
    X, y = _saturating(target)
    X, y = X[:40] / 10, y[:40]
    est = fastbp.MLPClassifier(
        hidden_layer_sizes=(3,), activation="identity", alpha=0.0, solver="sgd",
        learning_rate_init=0.5, max_iter=5, random_state=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    est.coefs_[1] = est.coefs_[1] * scale  # saturate some wrong predictions
    loss, coef_grads, intercept_grads = est.loss_and_gradients(X, y)
    proba = est.predict_proba(X)[np.arange(40), np.searchsorted(est.classes_, y)]
    eps = np.finfo(np.float64).eps
    clipped = -np.mean(np.log(np.clip(proba, eps, 1 - eps)))
    assert loss > 2 * clipped
    h = 1e-7
    for params, grads in ((est.coefs_, coef_grads), (est.intercepts_, intercept_grads)):
        for p, g in zip(params, grads, strict=True):
            flat, gflat = p.reshape(-1), g.reshape(-1)
            for k in range(flat.size):
                orig = flat[k]
                flat[k] = orig + h
                plus = est.loss_and_gradients(X, y)[0]
                flat[k] = orig - h
                minus = est.loss_and_gradients(X, y)[0]
                flat[k] = orig
                fd = (plus - minus) / (2 * h)
                assert fd == pytest.approx(gflat[k], rel=1e-5, abs=1e-5)


def test_multi_output_loss_and_gradients_is_half_the_summed_squared_error(reg_data):
    X, y = reg_data
    est = fastbp.MLPRegressor(
        hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5, alpha=0.0, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    loss, _, _ = est.loss_and_gradients(X, y)
    residual = est.predict(X) - y
    np.testing.assert_allclose(loss, 0.5 * np.mean(np.sum(residual**2, axis=1)))
    # ... and loss_ is scikit-learn's: the mean over the outputs.
    np.testing.assert_allclose(est.loss_, loss / y.shape[1], rtol=1e-12)


# --------------------------------------------------------------------------- #
# 5. Divergence, with and without early stopping
# --------------------------------------------------------------------------- #
def _diverging():
    rng = np.random.RandomState(0)
    return rng.randn(100, 4), rng.randn(100)


@pytest.mark.parametrize("learning_rate_init", [2.0, 5.0])
def test_divergence_with_early_stopping_restores_best_weights(learning_rate_init):
    """scikit-learn issue 29504: NaN validation scores, no error, best weights."""
    X, y = _diverging()
    pair = both(
        "reg",
        hidden_layer_sizes=(5,),
        solver="sgd",
        learning_rate_init=learning_rate_init,
        momentum=0.0,
        early_stopping=True,
        max_iter=12,
        random_state=0,
    )
    apply(pair, "fit", X, y)
    ours, theirs = pair
    assert_same_model(ours, theirs)
    assert np.isnan(theirs.validation_scores_[-1])  # it did diverge
    assert np.isinf(theirs.loss_curve_).any() or np.isnan(theirs.loss_curve_[-1])
    assert isinstance(ours.validation_scores_[-1], float)
    assert all(np.isfinite(c).all() for c in ours.coefs_ + ours.intercepts_)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_diverged_classifier_with_early_stopping_as_sklearn(solver):
    """Predicted labels of NaN outputs still score: scikit-learn may keep NaN
    weights as the best ones and then raise; fastbp does what it does."""
    X, y = _diverging()
    pair = both(
        "clf",
        hidden_layer_sizes=(5,),
        solver=solver,
        learning_rate_init=0.1,
        early_stopping=True,
        max_iter=12,
        random_state=0,
    )
    _, want = apply(pair, "fit", X * 1e100, (y > 0).astype(int))
    if not isinstance(want, Exception):
        # Which overflowing sums give inf and which NaN depends on their
        # order (BLAS blocking): the loss curve agrees where it is finite.
        assert_same_model(*pair, nonfinite_alike=True)


@pytest.mark.parametrize(
    "solver,scale,learning_rate_init", [("sgd", 1e100, 0.1), ("adam", 1e4, 1e200)]
)
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_divergence_without_early_stopping_raises_sklearn_error(
    kind, solver, scale, learning_rate_init
):
    X, y = _diverging()
    if kind == "clf":
        y = (y > 0).astype(int)
    pair = both(
        kind,
        hidden_layer_sizes=(5,),
        solver=solver,
        learning_rate_init=learning_rate_init,
        max_iter=30,
        random_state=0,
    )
    got, want = apply(pair, "fit", X * scale, y)
    assert isinstance(want, ValueError)
    assert str(want) in str(got)  # scikit-learn's text, then fastbp's advice
    assert "learning_rate_init" in str(got)
    assert not hasattr(pair[0], "coefs_")  # fastbp leaves no broken model


def test_finite_weights_with_non_finite_predictions_raise():
    """An intentional difference: where scikit-learn returns finite weights
    whose predictions overflow, fastbp raises scikit-learn's
    error and keeps the model as it was."""
    rng = np.random.RandomState(1)
    X, y = rng.randn(200, 5), rng.randn(200) * 10
    pair = both(
        "reg", hidden_layer_sizes=(8,), solver="sgd", max_iter=3,
        activation="identity", random_state=0,
    )  # fmt: skip
    apply(pair, "fit", X, y)
    ours, theirs = pair
    before = [c.copy() for c in ours.coefs_]
    quietly(lambda: theirs.partial_fit(X * 1e140, y * 1e140))
    with np.errstate(all="ignore"):
        assert not np.isfinite(theirs.predict(X * 1e140)).all()
    assert all(np.isfinite(c).all() for c in theirs.coefs_)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter"):
        ours.partial_fit(X * 1e140, y * 1e140)
    for a, b in zip(ours.coefs_, before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_adam_with_overflowing_squared_gradients_trains_on_as_sklearn():
    """Squared gradients that overflow make Adam's second moment inf: numpy's
    step is then 0 (no NaN, no error), and so is fastbp's."""
    X, y = _diverging()
    pair = both(
        "reg", hidden_layer_sizes=(5,), solver="adam", learning_rate_init=0.1,
        max_iter=5, random_state=0,
    )  # fmt: skip
    apply(pair, "fit", X * 1e100, y)
    assert_same_model(*pair)
    assert np.isinf(pair[1]._optimizer.vs[0]).any()  # the case is exercised


# --------------------------------------------------------------------------- #
# 6. partial_fit after coefs_/intercepts_ were set by hand
# --------------------------------------------------------------------------- #
def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _hand_set(est):
    """scikit-learn's test_fit: a 3-2-1 logistic network set up by hand."""
    est.coefs_ = [
        np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.0]]),
        np.array([[0.1], [0.2]]),
    ]
    est.intercepts_ = [np.array([0.1, 0.1]), np.array([1.0])]
    est.n_outputs_ = 1
    est.n_features_in_ = 3
    est.n_iter_ = 0
    est.n_layers_ = 3
    est.out_activation_ = "logistic"
    est.t_ = 0
    est.best_loss_ = np.inf
    est.loss_curve_ = []
    est._no_improvement_count = 0
    return est


def test_partial_fit_from_hand_set_weights_is_the_hand_computed_step():
    X, y = np.array([[0.6, 0.8, 0.7]]), np.array([0])
    params = dict(
        solver="sgd", learning_rate_init=0.1, alpha=0.1, activation="logistic",
        random_state=1, max_iter=1, hidden_layer_sizes=2, momentum=0,
    )  # fmt: skip
    pair = (
        _hand_set(fastbp.MLPClassifier(**params)),
        _hand_set(SKClassifier(**params)),
    )
    W1, W2 = [c.copy() for c in pair[0].coefs_]
    b1, b2 = [b.copy() for b in pair[0].intercepts_]
    apply(pair, "partial_fit", X, y, classes=[0, 1])
    assert_same_model(*pair, rtol=1e-13, atol=1e-15)

    # One SGD step from the formulas (one sample: the weight sum is 1).
    h = _sigmoid(X @ W1 + b1)
    out = _sigmoid(h @ W2 + b2)
    d2 = out - y[:, None]
    d1 = (d2 @ W2.T) * h * (1 - h)
    eta, alpha = 0.1, 0.1
    expected = [
        W1 - eta * (X.T @ d1 + alpha * W1),
        W2 - eta * (h.T @ d2 + alpha * W2),
        b1 - eta * d1[0],
        b2 - eta * d2[0],
    ]
    ours = pair[0]
    for got, want in zip(ours.coefs_ + ours.intercepts_, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13)
    # The loss reported: binary log-loss at the hand-set weights plus L2.
    l2 = 0.5 * alpha * (np.sum(W1**2) + np.sum(W2**2))
    np.testing.assert_allclose(ours.loss_, -np.log(1 - out[0, 0]) + l2, rtol=1e-13)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_continues_from_weights_replaced_on_a_fitted_model(
    solver, clf_data
):
    X, y = clf_data
    pair = both("clf", hidden_layer_sizes=(5,), solver=solver, random_state=0)
    classes = np.unique(y)
    apply(pair, "partial_fit", X, y, classes=classes)
    rng = np.random.RandomState(42)
    new = [rng.uniform(-0.5, 0.5, c.shape) for c in pair[0].coefs_]
    for est in pair:
        est.coefs_ = [c.copy() for c in new]
    apply(pair, "partial_fit", X, y)
    assert_same_model(*pair)
    apply(pair, "partial_fit", X, y)
    assert_same_model(*pair)


# --------------------------------------------------------------------------- #
# 8a. Batches that do not split evenly into chunks
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def odd_data():
    X, y = make_classification(257, 7, n_informative=4, n_classes=3, random_state=3)
    return X, y


@pytest.mark.parametrize(
    "solver_kw",
    [
        dict(solver="sgd", learning_rate_init=0.05),
        dict(solver="adam", learning_rate_init=0.01),
        dict(solver="lbfgs"),
    ],
    ids=lambda d: d["solver"],
)
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_odd_batch_sizes_side_by_side(kind, solver_kw, odd_data):
    X, y = odd_data
    if kind == "reg":
        y = X @ np.arange(1.0, 8.0) / 10
    pair = both(
        kind, hidden_layer_sizes=(9,), batch_size=201, max_iter=12, random_state=0,
        **solver_kw,
    )  # fmt: skip
    apply(pair, "fit", X, y)
    if solver_kw["solver"] == "lbfgs":
        ours, theirs = pair
        assert ours.n_iter_ == theirs.n_iter_
        np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
        for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    else:
        assert_same_model(*pair)


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_odd_full_batch_cg_follows_scipy_on_sklearn_objective(kind, odd_data):
    """cg has no scikit-learn counterpart: scipy's CG on scikit-learn's own
    loss and gradient (``_loss_grad_lbfgs``) from the same weights is the
    oracle, on 257 rows (chunks of unequal length)."""
    X, y = odd_data
    if kind == "reg":
        y = X @ np.arange(1.0, 8.0) / 10
    ours_cls, theirs_cls = ESTIMATORS[kind]
    ours = ours_cls(hidden_layer_sizes=(9,), solver="cg", max_iter=15, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
    # scikit-learn's model at the same initial weights (one lbfgs iteration
    # gives the fitted structure; the weights are then reset).
    theirs = theirs_cls(
        hidden_layer_sizes=(9,), solver="lbfgs", max_iter=1, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y)
    init = ours_cls(hidden_layer_sizes=(9,), solver="cg", max_iter=1, random_state=0)
    x0 = _initial_params(init, X, y)
    y2 = theirs._label_binarizer.transform(y) if kind == "clf" else y[:, None]
    units = [X.shape[1], 9, y2.shape[1]]
    theirs._coef_indptr, theirs._intercept_indptr = _indptr(units)
    n = X.shape[0]
    acts = [X] + [None] * 2
    deltas = [None] * 2
    cg = [np.empty((a, b)) for a, b in zip(units[:-1], units[1:], strict=True)]
    ig = [np.empty(b) for b in units[1:]]
    res = scipy.optimize.minimize(
        theirs._loss_grad_lbfgs,
        x0,
        method="CG",
        jac=True,
        args=(X, y2.astype(float), None, acts, deltas, cg, ig),
        options={"maxiter": 15, "gtol": ours.tol},
    )
    assert n == 257
    assert ours.n_iter_ == min(res.nit, 15)
    np.testing.assert_allclose(ours.loss_, res.fun, rtol=1e-9)
    got = ParamLayout(units).pack(ours.coefs_, ours.intercepts_, np.float64)
    np.testing.assert_allclose(got, res.x, rtol=1e-7, atol=1e-9)


def _initial_params(est, X, y):
    """fastbp's initial flat weights (Glorot draws as scikit-learn's)."""
    from fastbp._gradient_check import _float64_copy

    work = _float64_copy(est, X, y)
    return ParamLayout(
        [work.coefs_[0].shape[0]] + [c.shape[1] for c in work.coefs_]
    ).pack(work.coefs_, work.intercepts_, np.float64)


def _indptr(units):
    coef, inter, start = [], [], 0
    for a, b in zip(units[:-1], units[1:], strict=True):
        coef.append((start, start + a * b, (a, b)))
        start += a * b
    for b in units[1:]:
        inter.append((start, start + b))
        start += b
    return coef, inter


# --------------------------------------------------------------------------- #
# 8b. class_weight="balanced" is sample_weight=compute_sample_weight("balanced")
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("with_sample_weight", [False, True])
def test_class_weight_balanced_is_balanced_sample_weight(solver, with_sample_weight):
    X, y = make_classification(
        240, 6, n_informative=4, n_classes=3, weights=[0.6, 0.3, 0.1], random_state=1
    )
    sw = np.random.RandomState(0).uniform(0.5, 2.0, y.size)
    user_sw = sw if with_sample_weight else None
    balanced = compute_sample_weight("balanced", y)
    kw = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=10, random_state=0)
    ours = fastbp.MLPClassifier(class_weight="balanced", **kw)
    theirs = SKClassifier(**kw)
    quietly(lambda: ours.fit(X, y, sample_weight=user_sw))
    quietly(
        lambda: theirs.fit(
            X, y, sample_weight=balanced * (sw if with_sample_weight else 1.0)
        )
    )
    assert_same_fit(ours, theirs, solver)


# --------------------------------------------------------------------------- #
# 7. Ray's joblib backend (the README's claim)
# --------------------------------------------------------------------------- #
def test_grid_search_on_ray_equals_loky():
    ray = pytest.importorskip("ray")
    from joblib import parallel_backend
    from ray.util.joblib import register_ray
    from sklearn.model_selection import GridSearchCV

    X, y = make_classification(120, 6, n_informative=4, random_state=0)
    grid = {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(4,), (8,)]}
    est = fastbp.MLPClassifier(solver="lbfgs", max_iter=30, random_state=0)

    def search(backend):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with parallel_backend(backend, n_jobs=2):
                return GridSearchCV(est, grid, cv=3).fit(X, y).cv_results_

    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = search("ray")
    finally:
        ray.shutdown()
    on_loky = search("loky")
    np.testing.assert_array_equal(on_ray["mean_test_score"], on_loky["mean_test_score"])
    assert np.ptp(on_loky["mean_test_score"]) > 0  # the grid matters


@pytest.mark.parametrize(
    "y, classes",
    [
        (np.array([3, 1, 2, 3, 1]), None),  # multiclass ints
        (np.array(["b", "a", "c", "a"], dtype=object), None),  # strings
        (np.array(["no", "yes", "yes"]), None),  # binary strings
        (np.array([1.0, -1.0, 1.0, 2.0]), None),  # float labels
        (np.array([7, 7, 9]), None),  # binary ints
        (np.array([1, 3]), np.array([1, 2, 3])),  # partial_fit: classes given
        (np.array([True, False, True]), None),  # booleans
        (np.array([[0, 1], [1, 1], [1, 0]]), None),  # multilabel: the binarizer
    ],
)
def test_target_encoding_is_the_label_binarizers(y, classes):
    # The indicator matrix of every fit's target, built from the sorted
    # classes directly for single-column labels: scikit-learn's
    # LabelBinarizer is the oracle, for fit and for partial_fit's classes.
    from sklearn.preprocessing import LabelBinarizer

    clf = fastbp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=1)
    X = np.arange(2.0 * len(y)).reshape(len(y), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if classes is None:
            clf.fit(X, y)
        else:
            clf.partial_fit(X, y, classes=classes)
    want = LabelBinarizer().fit(y if classes is None else classes).transform(y)
    got = clf._encode_target(y)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, want.astype(bool))


# --------------------------------------------------------------------------- #
# 9. Settings compared side by side nowhere else (each hid a planted bug)
# --------------------------------------------------------------------------- #
def test_poisson_training_stops_as_sklearn():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 6))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
    pair = both("reg", hidden_layer_sizes=(8,), loss="poisson", max_iter=300,
                learning_rate_init=0.05, random_state=0)  # fmt: skip
    apply(pair, "fit", X, y)
    assert_same_model(*pair)
    assert pair[0].n_iter_ < 300  # stopped by tol on the reported loss


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_sgd_invscaling_follows_samples_seen(kind, clf_data, reg_data):
    X, y = data_for(kind, clf_data, reg_data)
    pair = both(kind, hidden_layer_sizes=(7,), solver="sgd", learning_rate="invscaling",
                learning_rate_init=0.1, power_t=0.3, batch_size=50, max_iter=8,
                random_state=0)  # fmt: skip
    apply(pair, "fit", X, y)
    assert_same_model(*pair)
    extra = {"classes": np.unique(y)} if kind == "clf" else {}
    apply(pair, "partial_fit", X[:100], y[:100], **extra)
    assert_same_model(*pair)
    ours, theirs = pair
    # The rate follows t_ (samples seen), not n_iter_ (epochs).
    assert ours.t_ == 8 * 300 + 100
    assert ours._optimizer.learning_rate == pytest.approx(
        0.1 / (ours.t_ + 1) ** 0.3, rel=1e-12
    )
    assert ours._optimizer.learning_rate == pytest.approx(
        theirs._optimizer.learning_rate, rel=1e-12
    )


@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel"])
def test_float32_log_loss_is_clipped_at_float32_eps(target):
    X, y = _saturating(target)
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", learning_rate_init=0.5,
              momentum=0.0, max_iter=3, random_state=0, shuffle=False)  # fmt: skip
    pair = both("clf", **kw)
    apply(pair, "fit", X.astype(np.float32), y)
    ours, theirs = pair
    assert ours.coefs_[0].dtype == np.float32
    # float32 probabilities round near 0 and 1 (scikit-learn's are computed
    # in float32 too), hence the tolerance; clipped at float64's eps instead,
    # the saturated rows would report up to -log(2.2e-16) = 36 each.
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    in_float64, _ = quietly(lambda: SKClassifier(**kw).fit(X, y))
    assert not np.allclose(in_float64.loss_curve_, theirs.loss_curve_, rtol=1e-2)


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_early_stopping_scores_weighted_validation_rows(kind, clf_data, reg_data):
    X, y = data_for(kind, clf_data, reg_data)
    sw = np.random.RandomState(1).uniform(0.05, 3.0, len(X))
    pair = both(kind, hidden_layer_sizes=(7,), solver="sgd", learning_rate_init=0.05,
                early_stopping=True, validation_fraction=0.3, n_iter_no_change=3,
                max_iter=200, random_state=0)  # fmt: skip
    apply(pair, "fit", X, y, sample_weight=sw)
    assert_same_model(*pair)
    ours = pair[0]
    assert ours.n_iter_ < 200
    # The weights matter: the unweighted scores are others.
    unweighted = sklearn.base.clone(ours)
    quietly(lambda: unweighted.fit(X, y))
    a, b = unweighted.validation_scores_, ours.validation_scores_
    assert len(a) != len(b) or not np.allclose(a, b)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_class_weight_dict_leaving_classes_out_is_sample_weight(solver, clf_data):
    X, y = clf_data
    kw = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=10, random_state=0)
    ours = fastbp.MLPClassifier(class_weight={0: 3.0}, **kw)
    theirs = SKClassifier(**kw)
    quietly(lambda: ours.fit(X, y))
    quietly(lambda: theirs.fit(X, y, sample_weight=np.where(y == 0, 3.0, 1.0)))
    assert_same_fit(ours, theirs, solver)


# --------------------------------------------------------------------------- #
# 10. Weights set by hand, then predict: as scikit-learn, never a crash
# --------------------------------------------------------------------------- #
_HAND_SET = {
    "int": lambda c: (c * 3).astype(int),
    "bool": lambda c: c > 0,
    "float16": lambda c: c.astype(np.float16),
    "float32": lambda c: c.astype(np.float32),
    "more rows": lambda c: np.tile(c, (100000, 1)),
    "fewer rows": lambda c: c[:-1],
    "more columns": lambda c: np.tile(c, (1, 3)),
    "1-d": lambda c: c.ravel(),
}


@pytest.mark.parametrize("change", list(_HAND_SET))
def test_predict_with_hand_set_coefs_as_sklearn(change, clf_data):
    X, y = clf_data
    pair = both("clf", hidden_layer_sizes=(9,), max_iter=5, random_state=0)
    apply(pair, "fit", X, y)
    for est in pair:
        est.coefs_[0] = _HAND_SET[change](est.coefs_[0])
    ours, theirs = pair
    try:
        want = theirs.predict_proba(X)
    except ValueError:
        before = [c.copy() for c in ours.coefs_]
        with pytest.raises(ValueError, match=r"coefs_\[0\]|intercepts_\[0\]"):
            ours.predict_proba(X)
        for a, b in zip(ours.coefs_, before, strict=True):  # nothing changed
            np.testing.assert_array_equal(a, b)
        return
    got = ours.predict_proba(X)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("where", ["coefs_", "intercepts_"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "score", "partial_fit", "warm_start"]
)
def test_non_finite_hand_set_weights_are_refused(method, value, where, clf_data):
    # scikit-learn predicts NaN from them (a documented difference): fastbp
    # names the array, before any kernel runs, and keeps the model.
    X, y = clf_data
    model = fastbp.MLPClassifier(hidden_layer_sizes=(9,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    getattr(model, where)[-1][0] = value
    before = pickle.dumps(model)
    call = {
        "predict": lambda: model.predict(X),
        "predict_proba": lambda: model.predict_proba(X),
        "score": lambda: model.score(X, y),
        "partial_fit": lambda: model.partial_fit(X, y),
        "warm_start": lambda: model.set_params(warm_start=True).fit(X, y),
    }[method]
    with pytest.raises(ValueError, match=rf"{where}\[1\] contains NaN or infinity"):
        call()
    if method == "warm_start":
        model.set_params(warm_start=False)
    assert pickle.dumps(model) == before


# --------------------------------------------------------------------------- #
# 11. No hidden layer: the initialisation follows ``activation`` as scikit-learn's
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_no_hidden_layer_as_sklearn(kind, activation, clf_data, reg_data):
    X, y = data_for(kind, clf_data, reg_data)
    pair = both(kind, hidden_layer_sizes=(), activation=activation, max_iter=5,
                random_state=0)  # fmt: skip
    apply(pair, "fit", X, y)
    assert_same_model(*pair)


@pytest.mark.parametrize("size", [2**63, 2**60])
def test_impossible_hidden_layer_sizes_raise_sklearns_value_error(size, clf_data):
    X, y = clf_data
    pair = both("clf", hidden_layer_sizes=(size,), max_iter=1)
    got, want = apply(pair, "fit", X, y)  # both fail alike
    assert isinstance(want, ValueError), want
