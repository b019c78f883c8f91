"""Inverted dropout (``dropout``): the gradient of the thinned network against
a numpy reference with the same counter-based masks (``tests/naive.py``),
thread-count independence, and ``dropout=0`` as today's model."""

import pickle

import numpy as np
import pytest
from naive import ref_act, ref_dropout_scale, ref_loss_grad
from sklearn.base import clone
from sklearn.datasets import load_digits

from fastbp import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16, y[:600]


def same_weights(a, b):
    return all(
        p.dtype == q.dtype and np.array_equal(p, q)
        for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True)
    )


def fitted_state(model):
    state = {k: v for k, v in vars(model).items() if k.endswith("_") or k[0] == "_"}
    return pickle.dumps(state)


@pytest.mark.parametrize("zero", [0.0, 0, [0.0, 0.0], (0, 0)])
def test_zero_dropout_is_the_default_model(digits, zero):
    X, y = digits
    params = dict(hidden_layer_sizes=(16, 8), max_iter=5, random_state=0)
    default = MLPClassifier(**params).fit(X, y)
    dropped = MLPClassifier(dropout=zero, **params).fit(X, y)
    assert same_weights(default, dropped)
    assert default.loss_curve_ == dropped.loss_curve_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dropout", [0.3, [0.5, 0.0]])
def test_dropout_is_independent_of_threads(digits, dtype, dropout):
    X, y = digits
    params = dict(
        hidden_layer_sizes=(16, 8),
        max_iter=4,
        batch_size=400,  # several chunks per batch
        random_state=0,
        dropout=dropout,
    )
    one = MLPClassifier(n_jobs=1, **params).fit(X.astype(dtype), y)
    two = MLPClassifier(n_jobs=2, **params).fit(X.astype(dtype), y)
    assert one.coefs_[0].dtype == dtype
    assert same_weights(one, two)
    again = MLPClassifier(n_jobs=2, **params).fit(X.astype(dtype), y)
    assert same_weights(one, again)
    default = MLPClassifier(n_jobs=1, **{**params, "dropout": 0.0})
    default.fit(X.astype(dtype), y)
    assert not same_weights(one, default)


@pytest.mark.parametrize("activation", ["tanh", "relu", "logistic", "gelu"])
@pytest.mark.parametrize("rates", [[0.5, 0.0], [0.0, 0.3], [0.25, 0.6]])
def test_gradient_is_that_of_the_thinned_network(activation, rates):
    # One full-batch SGD step without momentum: W1 = W0 - lr * grad, with the
    # masks of tests/naive.py (seed: the first draw of RandomState(0) in the
    # call; epoch key: t_ before the epoch).  A rate-0 layer keeps every unit.
    # Shuffled, in 3 chunks: masks follow the sample, not its batch position.
    rng = np.random.RandomState(3)
    X, y = rng.normal(size=(300, 5)), rng.normal(size=300)
    lr = 0.1
    reg = MLPRegressor(
        hidden_layer_sizes=(6, 4), activation=activation, solver="sgd",
        momentum=0.0, learning_rate_init=lr, alpha=0.0, batch_size=300,
        shuffle=True, max_iter=1, random_state=0, dropout=rates,
    ).fit(X, y)  # fmt: skip
    W0 = [w.copy() for w in reg.coefs_ + reg.intercepts_]
    t0 = reg.t_
    reg.partial_fit(X, y)
    W1 = reg.coefs_ + reg.intercepts_
    seed = np.random.RandomState(0).randint(np.iinfo(np.int32).max)
    scales = [
        ref_dropout_scale(seed, t0, len(X), k + 1, units, rate)
        for k, (units, rate) in enumerate(zip((6, 4), rates, strict=True))
    ]
    for k, rate in enumerate(rates):
        if rate == 0.0:
            assert np.all(scales[k] == 1.0)
        else:
            assert 0 < np.mean(scales[k] == 0) < 1
    _, cg, ig = ref_loss_grad(
        X, y[:, None], np.ones(len(X)), W0[:3], W0[3:], [activation] * 2,
        "squared_error", 0.0, scales,
    )  # fmt: skip
    for w0, w1, g in zip(W0, W1, cg + ig, strict=True):
        np.testing.assert_allclose((w0 - w1) / lr, g, rtol=1e-6, atol=1e-9)


def test_prediction_has_no_dropout(digits):
    X, y = digits
    clf = MLPClassifier(
        hidden_layer_sizes=(16,), activation="tanh", max_iter=3, random_state=0,
        dropout=0.5,
    ).fit(X, y)  # fmt: skip
    z = ref_act("tanh", X @ clf.coefs_[0] + clf.intercepts_[0])
    z = z @ clf.coefs_[1] + clf.intercepts_[1]
    expected = np.exp(z - z.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-10)


BAD = {
    "rate 1": ({"dropout": 1.0}, {}),
    "negative": ({"dropout": -0.1}, {}),
    "a rate of 1 in a list": ({"dropout": [0.2, 1.0]}, {}),
    "too few rates": ({"dropout": [0.2]}, {}),
    "too many rates": ({"dropout": [0.1, 0.2, 0.3]}, {}),
    "not a number": ({"dropout": ["a", 0.1]}, {}),
    "lbfgs": ({"dropout": 0.2, "solver": "lbfgs"}, {}),
    "cg": ({"dropout": [0.0, 0.1], "solver": "cg"}, {}),
}


@pytest.mark.parametrize("what", list(BAD))
def test_bad_dropout_leaves_the_model_unchanged(digits, what):
    X, y = digits
    params, _ = BAD[what]
    clf = MLPClassifier(hidden_layer_sizes=(8, 4), max_iter=2, random_state=0)
    clf.fit(X, y)
    before = fitted_state(clf)
    clf.set_params(**params)
    with pytest.raises(ValueError):
        clf.fit(X, y)
    assert fitted_state(clf) == before
    fresh = MLPClassifier(hidden_layer_sizes=(8, 4), max_iter=2, **params)
    with pytest.raises(ValueError):
        fresh.fit(X, y)
    assert not hasattr(fresh, "coefs_")


def test_lbfgs_takes_zero_dropout(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=5,
                        random_state=0, dropout=0.0).fit(X, y)  # fmt: skip
    ref = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=5,
                        random_state=0).fit(X, y)  # fmt: skip
    assert same_weights(clf, ref)


def test_dropout_is_a_parameter():
    clf = MLPClassifier(dropout=[0.1, 0.2])
    assert clf.get_params()["dropout"] == [0.1, 0.2]
    assert clone(clf).dropout == [0.1, 0.2]
    assert MLPRegressor().get_params()["dropout"] == 0.0


def test_dropout_model_exports_to_onnx_as_the_same_network(digits):
    # Dropout changes training only: skl2onnx's MLP converter exports the
    # whole network and its predictions match.
    pytest.importorskip("skl2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from skl2onnx import to_onnx, update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
    )
    from skl2onnx.operator_converters.multilayer_perceptron import (
        convert_sklearn_mlp_classifier,
    )

    update_registered_converter(
        MLPClassifier, "FastbpMLPClassifier",
        calculate_linear_classifier_output_shapes, convert_sklearn_mlp_classifier,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False]},
    )  # fmt: skip
    X, y = digits
    X32 = X.astype(np.float32)
    clf = MLPClassifier(
        hidden_layer_sizes=(16, 8), max_iter=5, random_state=0, dropout=[0.3, 0.1]
    ).fit(X32, y)
    onx = to_onnx(clf, X32[:1], options={"zipmap": False})
    session = onnxruntime.InferenceSession(
        onx.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    labels, proba = session.run(None, {"X": X32})
    np.testing.assert_array_equal(labels, clf.predict(X32))
    np.testing.assert_allclose(proba, clf.predict_proba(X32), atol=1e-5)
