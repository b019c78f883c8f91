"""A validation set of one's own (``fit(..., X_val=, y_val=)``) and ``scoring``.

Oracles: scikit-learn's scorers applied to the fitted (restored) model, the
reported loss written out in numpy as scikit-learn's ``_backprop`` computes
it, and fits without a validation set (a validation set must not change what
is trained).
"""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.metrics import get_scorer
from sklearn.neural_network._base import LOSS_FUNCTIONS
from sklearn.preprocessing import LabelBinarizer

from fastbp import MLPClassifier, MLPRegressor, TrainingCurveDisplay

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16
    y = y[:600]
    return X[:450], y[:450], X[450:], y[450:]


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=300, n_features=6, noise=5.0, random_state=0)
    y = y / y.std()
    return X[:220], y[:220], X[220:], y[220:]


def classifier(**params):
    params = {"hidden_layer_sizes": (12,), "max_iter": 12, "random_state": 0, **params}
    return MLPClassifier(**params)


def regressor(**params):
    params = {
        "hidden_layer_sizes": (10,),
        "max_iter": 15,
        "learning_rate_init": 0.01,
        "random_state": 0,
        **params,
    }
    return MLPRegressor(**params)


def weights(model):
    return [w.copy() for w in model.coefs_ + model.intercepts_]


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert len(wa) == len(wb)
    for p, q in zip(wa, wb, strict=True):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q)


def fitted_state(model):
    """Everything a fit sets, as bytes (arrays and lists compared exactly)."""
    state = {k: v for k, v in vars(model).items() if k.endswith("_") or k[0] == "_"}
    return pickle.dumps(state)


def reported_loss(model, X, y, sample_weight=None):
    """scikit-learn's reported loss (its ``_backprop``) of ``model`` on X, y."""
    if isinstance(model, MLPClassifier):
        Y = model._label_binarizer.transform(y)
        out = model.predict_proba(X)
        if model.out_activation_ == "logistic":
            out, name = out[:, 1:], "binary_log_loss"
        else:
            name = "log_loss"
    else:
        Y = y.reshape(len(y), -1)
        out, name = model.predict(X).reshape(len(y), -1), "squared_error"
    loss = LOSS_FUNCTIONS[name](Y, out, sample_weight)
    squares = sum(np.dot(w.ravel(), w.ravel()) for w in model.coefs_)
    sw_sum = len(y) if sample_weight is None else sample_weight.sum()
    return loss + 0.5 * model.alpha * squares / sw_sum


# ---------------------------------------------------------------------- #
# scoring=None is today's model
# ---------------------------------------------------------------------- #
def test_scoring_none_is_the_default_model(digits):
    X, y, _, _ = digits
    default = classifier(early_stopping=True).fit(X, y)
    explicit = classifier(early_stopping=True, scoring=None).fit(X, y)
    assert_same_weights(default, explicit)
    assert default.validation_scores_ == explicit.validation_scores_
    assert default.best_validation_score_ == explicit.best_validation_score_


@pytest.mark.parametrize(
    "make, data, name",
    [(classifier, "digits", "accuracy"), (regressor, "regression", "r2")],
)
def test_scorer_of_the_default_metric_gives_the_default_model(
    make, data, name, request
):
    # The scorer path (the estimator with the in-training weights, scored by
    # scikit-learn's scorer) agrees exactly with the built-in score.
    X, y, _, _ = request.getfixturevalue(data)
    default = make(early_stopping=True).fit(X, y)
    named = make(early_stopping=True, scoring=name).fit(X, y)
    assert_same_weights(default, named)
    np.testing.assert_allclose(
        named.validation_scores_, default.validation_scores_, rtol=1e-12
    )


# ---------------------------------------------------------------------- #
# A validation set given to fit
# ---------------------------------------------------------------------- #
def test_validation_set_does_not_change_training(digits):
    # Monitoring (early_stopping=False): the same weights as a fit without
    # the set, every row of X trained on in every epoch.
    X, y, X_val, y_val = digits
    plain = classifier().fit(X, y)
    monitored = classifier().fit(X, y, X_val=X_val, y_val=y_val)
    assert_same_weights(plain, monitored)
    assert monitored.loss_curve_ == plain.loss_curve_
    assert monitored.t_ == monitored.n_iter_ * len(X)
    assert plain.validation_scores_ is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_monitoring_records_one_score_per_epoch(digits, dtype):
    X, y, X_val, y_val = digits
    clf = classifier(tol=0.5, n_iter_no_change=2)  # stops before max_iter
    clf.fit(X.astype(dtype), y, X_val=X_val.astype(dtype), y_val=y_val)
    assert clf.n_iter_ < clf.max_iter
    assert clf.coefs_[0].dtype == dtype
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    # The last score is that of the final (not restored) model.
    assert clf.validation_scores_[-1] == clf.score(X_val.astype(dtype), y_val)
    assert clf.best_validation_score_ is None
    # Each earlier score is that of the model after that many epochs.
    short = classifier(tol=0.5, n_iter_no_change=2, max_iter=3)
    short.fit(X.astype(dtype), y)
    assert clf.validation_scores_[2] == short.score(X_val.astype(dtype), y_val)


def test_monitoring_continues_on_warm_start(digits):
    X, y, X_val, y_val = digits
    clf = classifier(warm_start=True).fit(X, y, X_val=X_val, y_val=y_val)
    clf.fit(X, y, X_val=X_val, y_val=y_val)
    assert len(clf.validation_scores_) == 2 * clf.max_iter
    assert clf.validation_scores_[-1] == clf.score(X_val, y_val)


def test_training_curve_display_plots_monitored_scores(digits):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y, X_val, y_val = digits
    clf = classifier().fit(X, y, X_val=X_val, y_val=y_val)
    display = TrainingCurveDisplay.from_estimator(clf)
    assert "validation" in display.panels_
    np.testing.assert_array_equal(display.validation_scores, clf.validation_scores_)
    plt.close("all")


def test_early_stopping_on_a_given_set_restores_the_best_epoch(digits):
    X, y, X_val, y_val = digits
    es = classifier(early_stopping=True, max_iter=40, n_iter_no_change=3, tol=0.0)
    es.fit(X, y, X_val=X_val, y_val=y_val)
    # All of X trains (no validation_fraction split).
    assert es.t_ == es.n_iter_ * len(X)
    best_epoch = int(np.argmax(es.validation_scores_)) + 1
    assert es.best_validation_score_ == max(es.validation_scores_)
    assert es.best_validation_score_ == es.score(X_val, y_val)
    # The restored weights are those of a fit of best_epoch epochs (no split
    # draws from the RandomState, so the epochs shuffle alike).
    short = classifier(max_iter=best_epoch).fit(X, y)
    assert_same_weights(es, short)


def test_given_set_replaces_the_split_whatever_validation_fraction(digits):
    X, y, X_val, y_val = digits
    a = classifier(early_stopping=True, validation_fraction=0.1)
    b = classifier(early_stopping=True, validation_fraction=0.5)
    a.fit(X, y, X_val=X_val, y_val=y_val)
    b.fit(X, y, X_val=X_val, y_val=y_val)
    assert_same_weights(a, b)
    assert a.validation_scores_ == b.validation_scores_


@pytest.mark.parametrize(
    "name", ["neg_log_loss", "balanced_accuracy", "f1_macro", "loss", "callable"]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_best_score_is_the_scorer_on_the_restored_model(digits, name, weighted):
    X, y, X_val, y_val = digits
    sw_val = (
        np.random.RandomState(1).uniform(0.5, 2.0, len(y_val)) if weighted else None
    )

    def mean_max_proba(estimator, X, y, sample_weight=None):
        return np.average(estimator.predict_proba(X).max(axis=1), weights=sample_weight)

    scoring = mean_max_proba if name == "callable" else name
    clf = classifier(early_stopping=True, max_iter=25, scoring=scoring)
    clf.fit(X, y, X_val=X_val, y_val=y_val, sample_weight_val=sw_val)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    if name == "loss":
        expected = -reported_loss(clf, X_val, y_val, sw_val)
        np.testing.assert_allclose(clf.best_validation_score_, expected, rtol=1e-10)
        return
    kwargs = {} if sw_val is None else {"sample_weight": sw_val}
    scorer = mean_max_proba if name == "callable" else get_scorer(name)
    assert clf.best_validation_score_ == scorer(clf, X_val, y_val, **kwargs)


@pytest.mark.parametrize("name", ["neg_mean_absolute_error", "loss"])
def test_regressor_scoring(regression, name):
    X, y, X_val, y_val = regression
    reg = regressor(early_stopping=True, scoring=name)
    reg.fit(X, y, X_val=X_val, y_val=y_val)
    if name == "loss":
        expected = -reported_loss(reg, X_val, y_val)
        np.testing.assert_allclose(reg.best_validation_score_, expected, rtol=1e-10)
    else:
        assert reg.best_validation_score_ == get_scorer(name)(reg, X_val, y_val)


def test_loss_scoring_on_the_split_binary(digits):
    # "loss" on early stopping's own split, binary (logistic output).
    X, y, _, _ = digits
    yb = y % 2
    clf = classifier(early_stopping=True, scoring="loss", max_iter=20).fit(X, yb)
    assert all(s < 0 for s in clf.validation_scores_)
    # The monitored loss of the last epoch is the reported loss of the final
    # model on the given set.
    mon = classifier(scoring="loss").fit(
        X[:300], yb[:300], X_val=X[300:], y_val=yb[300:]
    )
    np.testing.assert_allclose(
        mon.validation_scores_[-1],
        -reported_loss(mon, X[300:], yb[300:]),
        rtol=1e-10,
    )


def test_sparse_validation_set(digits):
    X, y, X_val, y_val = digits
    dense = classifier().fit(X, y, X_val=X_val, y_val=y_val)
    sparse = classifier().fit(X, y, X_val=sp.csr_matrix(X_val), y_val=y_val)
    np.testing.assert_allclose(
        sparse.validation_scores_, dense.validation_scores_, rtol=1e-12
    )


def test_scoring_is_a_parameter():
    clf = MLPClassifier(scoring="neg_log_loss")
    assert clf.get_params()["scoring"] == "neg_log_loss"
    assert clone(clf).scoring == "neg_log_loss"
    assert MLPRegressor().get_params()["scoring"] is None


# ---------------------------------------------------------------------- #
# Bad values: ValueError, the model exactly as it was
# ---------------------------------------------------------------------- #
def _bad_fits(X, y, X_val, y_val):
    unseen = y_val.copy()
    unseen[0] = 99
    return {
        "X_val without y_val": ({}, {"X_val": X_val}),
        "y_val without X_val": ({}, {"y_val": y_val}),
        "sample_weight_val alone": ({}, {"sample_weight_val": np.ones(len(y_val))}),
        "wrong number of features": ({}, {"X_val": X_val[:, :-1], "y_val": y_val}),
        "unseen class": ({}, {"X_val": X_val, "y_val": unseen}),
        "multilabel y_val": (
            {},
            {"X_val": X_val, "y_val": LabelBinarizer().fit_transform(y_val)},
        ),
        "length mismatch": ({}, {"X_val": X_val, "y_val": y_val[:-1]}),
        "sample_weight_val length": (
            {},
            {"X_val": X_val, "y_val": y_val, "sample_weight_val": np.ones(3)},
        ),
        "lbfgs with a validation set": (
            {"solver": "lbfgs"},
            {"X_val": X_val, "y_val": y_val},
        ),
        "cg with a validation set": (
            {"solver": "cg"},
            {"X_val": X_val, "y_val": y_val},
        ),
        "unknown scorer name": (
            {"scoring": "no_such_scorer"},
            {"X_val": X_val, "y_val": y_val},
        ),
        "unknown scorer, split": ({"scoring": "no_such", "early_stopping": True}, {}),
        "scoring not a str or callable": ({"scoring": 3}, {}),
    }


@pytest.mark.parametrize("warm_start", [False, True])
def test_bad_values_leave_the_model_unchanged(digits, warm_start):
    X, y, X_val, y_val = digits
    for what, (params, fit_params) in _bad_fits(X, y, X_val, y_val).items():
        clf = classifier(warm_start=warm_start, max_iter=3).fit(
            X, y, X_val=X_val, y_val=y_val
        )
        before, coefs = fitted_state(clf), weights(clf)
        clf.set_params(**params)
        with pytest.raises(ValueError):
            clf.fit(X, y, **fit_params)
        assert fitted_state(clf) == before, what
        for p, q in zip(weights(clf), coefs, strict=True):
            np.testing.assert_array_equal(p, q)


def test_bad_values_leave_an_unfitted_model_unfitted(digits):
    X, y, X_val, y_val = digits
    for what, (params, fit_params) in _bad_fits(X, y, X_val, y_val).items():
        clf = classifier(**params)
        with pytest.raises(ValueError):
            clf.fit(X, y, **fit_params)
        assert not hasattr(clf, "coefs_"), what
        assert not hasattr(clf, "n_features_in_"), what


def test_regressor_bad_validation_targets(regression):
    X, y, X_val, y_val = regression
    reg = regressor(max_iter=2).fit(X, y)
    before = fitted_state(reg)
    for y_bad in (np.c_[y_val, y_val], np.array(["a"] * len(y_val))):
        with pytest.raises(ValueError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg.fit(X, y, X_val=X_val, y_val=y_bad)
        assert fitted_state(reg) == before
    poisson = MLPRegressor(loss="poisson", max_iter=2, random_state=0)
    with pytest.raises(ValueError):
        poisson.fit(X, np.abs(y), X_val=X_val, y_val=-np.abs(y_val) - 1)
    assert not hasattr(poisson, "coefs_")
