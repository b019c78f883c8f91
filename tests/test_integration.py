"""The estimators in real use: pipelines, search, pickling, weights, extras, errors."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastbp

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:500].astype(float), y[:500]


def test_pipeline_with_scaler(digits):
    X, y = digits
    pipe = make_pipeline(
        StandardScaler(), fastbp.MLPClassifier(max_iter=30, random_state=0)
    )
    assert pipe.fit(X, y).score(X, y) > 0.95


def test_sparse_text_pipeline():
    rng = np.random.RandomState(0)
    vocab = [f"w{i}" for i in range(60)]
    docs, labels = [], []
    for _ in range(200):
        label = rng.randint(2)
        words = rng.choice(vocab[label * 30 : label * 30 + 30], 8)
        docs.append(" ".join(np.concatenate([words, rng.choice(vocab, 4)])))
        labels.append(label)
    pipe = make_pipeline(
        TfidfVectorizer(),
        fastbp.MLPClassifier(
            hidden_layer_sizes=(16,),
            max_iter=100,
            learning_rate_init=0.01,
            random_state=0,
        ),
    )
    assert pipe.fit(docs, labels).score(docs, labels) > 0.95


def test_grid_search_two_processes(digits):
    X, y = digits
    search = GridSearchCV(
        fastbp.MLPClassifier(max_iter=5, random_state=0),
        {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]},
        cv=3,
        n_jobs=2,
    )
    search.fit(X / 16, y)
    serial = GridSearchCV(search.estimator, search.param_grid, cv=3).fit(X / 16, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"]
    )


def test_pickle_round_trip(digits):
    X, y = digits
    est = fastbp.MLPClassifier(max_iter=5, random_state=0).fit(X / 16, y)
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(
        clone.predict_proba(X / 16), est.predict_proba(X / 16)
    )


def test_weight_two_equals_repeated_row_under_lbfgs():
    X, y = make_regression(40, 3, random_state=0)
    w = np.ones(40)
    w[:5] = 2
    kw = dict(solver="lbfgs", hidden_layer_sizes=(5,), max_iter=50, random_state=0)
    a = fastbp.MLPRegressor(**kw).fit(X, y, sample_weight=w)
    b = fastbp.MLPRegressor(**kw).fit(np.vstack([X, X[:5]]), np.concatenate([y, y[:5]]))
    for u, v in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-8)


def test_class_weight_equals_sample_weight(digits):
    X, y = digits
    cw = {c: 1.0 + c for c in range(10)}
    kw = dict(max_iter=5, random_state=0, hidden_layer_sizes=(8,))
    a = fastbp.MLPClassifier(class_weight=cw, **kw).fit(X / 16, y)
    b = fastbp.MLPClassifier(**kw).fit(X / 16, y, sample_weight=1.0 + y)
    for u, v in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="balanced"):
        fastbp.MLPClassifier(class_weight="balanced").partial_fit(
            X, y, classes=np.arange(10)
        )


def test_loss_and_gradients_includes_class_weight(digits):
    """The objective reported is the one fit minimises, class weights included."""
    X, y = digits[0][:200] / 16, digits[1][:200]
    cw = {c: 1.0 + c for c in range(10)}
    weighted = fastbp.MLPClassifier(
        class_weight=cw, max_iter=3, random_state=0, hidden_layer_sizes=(8,)
    ).fit(X, y)
    plain = pickle.loads(pickle.dumps(weighted)).set_params(class_weight=None)
    loss, coef_grads, intercept_grads = weighted.loss_and_gradients(X, y)
    ref_loss, ref_coef, ref_intercept = plain.loss_and_gradients(
        X, y, sample_weight=1.0 + y
    )
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for u, v in zip(
        coef_grads + intercept_grads, ref_coef + ref_intercept, strict=True
    ):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-14)
    assert abs(plain.loss_and_gradients(X, y)[0] - loss) > 1e-3  # weights matter


@pytest.mark.parametrize(
    "activation", ["leaky_relu", "elu", "softplus", "gelu", ["relu", "gelu"]]
)
def test_extra_activations_learn(digits, activation):
    X, y = digits
    hidden = (20, 10) if isinstance(activation, list) else (20,)
    est = fastbp.MLPClassifier(
        hidden,
        activation=activation,
        max_iter=60,
        learning_rate_init=0.01,
        random_state=0,
    ).fit(X / 16, y)
    assert est.loss_curve_[-1] < est.loss_curve_[0] / 2
    assert est.score(X / 16, y) > 0.9


def test_cg_reaches_lbfgs_minimum():
    X, y = make_regression(60, 4, noise=0.1, random_state=0)
    kw = dict(
        hidden_layer_sizes=(3,),
        activation="identity",
        alpha=1.0,
        max_iter=2000,
        tol=1e-10,
        random_state=0,
    )
    a = fastbp.MLPRegressor(solver="cg", **kw).fit(X, y)
    b = fastbp.MLPRegressor(solver="lbfgs", **kw).fit(X, y)
    assert abs(a.loss_ - b.loss_) <= 1e-5 * b.loss_


def test_clipping_and_gradient_norms(digits):
    X, y = digits
    est = fastbp.MLPClassifier(
        (10, 10, 10, 10),
        activation="logistic",
        max_iter=5,
        max_grad_norm=0.5,
        solver="sgd",
        random_state=0,
    )
    est.fit(X / 16, y)
    assert est.gradient_norms_.shape == (est.n_iter_, est.n_layers_ - 1)
    # Vanishing gradients: in a deep logistic net, the first layer learns least.
    assert est.gradient_norms_[:, 0].mean() < est.gradient_norms_[:, -1].mean() / 10


def test_divergence_raises_and_keeps_the_fitted_model():
    X, y = make_regression(200, 5, random_state=0)
    est = fastbp.MLPRegressor(
        solver="sgd", activation="identity", max_iter=3, random_state=0
    ).fit(X / 100, y / 100)
    before = pickle.dumps(est)
    est.set_params(warm_start=True, learning_rate_init=1e8, max_iter=50)
    with pytest.raises(ValueError, match="non-finite"):
        est.fit(X * 1e3, y)
    est.set_params(warm_start=False, learning_rate_init=0.001, max_iter=3)
    assert pickle.dumps(est) == before


@pytest.mark.parametrize(
    "bad",
    [
        lambda X, y: (np.where(X > 5, np.nan, X), y),
        lambda X, y: (X[:, :3], y),
        lambda X, y: (X.astype(complex), y),
        lambda X, y: (X[:0], y[:0]),
        lambda X, y: (X, y[:-1]),
    ],
)
def test_bad_input_is_rejected_and_nothing_lost(digits, bad):
    X, y = digits
    est = fastbp.MLPClassifier(max_iter=2, random_state=0, warm_start=True).fit(X, y)
    before = pickle.dumps(est)
    Xb, yb = bad(X, y)
    with pytest.raises((ValueError, TypeError)):
        est.fit(Xb, yb)
    assert pickle.dumps(est) == before


def test_negative_sample_weight_and_poisson_targets_rejected():
    X, y = make_regression(30, 3, random_state=0)
    with pytest.raises(ValueError, match="(?i)negative"):
        fastbp.MLPRegressor(max_iter=2).fit(X, y, sample_weight=-np.ones(30))
    with pytest.raises(ValueError, match="(?i)negative"):
        fastbp.MLPRegressor(loss="poisson", max_iter=2).fit(X, y)


def test_warnings_match_sklearn(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning):
        fastbp.MLPClassifier(max_iter=1).fit(X / 16, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastbp.MLPClassifier(max_iter=200, tol=10.0).fit(X / 16, y)
