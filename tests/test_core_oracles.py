"""Core oracles: finite differences, a numpy reference, scikit-learn side by side."""

import warnings

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from naive import central_differences, ref_loss_grad
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SKClassifier
from sklearn.neural_network import MLPRegressor as SKRegressor

import fastbp
from fastbp._kernels.activations import HIDDEN_ACTIVATIONS, activation_codes
from fastbp._kernels.losses import LOSSES
from fastbp._network import Network, kernel_input
from fastbp._params import ParamLayout, glorot_uniform

RTOL = {np.float32: 1e-4, np.float64: 1e-12}


# --------------------------------------------------------------------------- #
# A slow, obvious numpy reference
# --------------------------------------------------------------------------- #
def make_problem(loss, n_hidden, act, dtype, weighted, seed=0, n=30):
    rng = np.random.RandomState(seed)
    n_out = {"log_loss": 3, "binary_log_loss": 2}.get(loss, 2)
    X = rng.randn(n, 4).astype(dtype)
    if loss == "log_loss":
        Y = np.eye(n_out)[rng.randint(0, n_out, n)]
    elif loss == "binary_log_loss":
        Y = (rng.rand(n, n_out) > 0.5).astype(float)
    elif loss == "poisson":
        Y = rng.poisson(1.0, (n, n_out)).astype(float)
    else:
        Y = rng.randn(n, n_out)
    Y = Y.astype(dtype)
    sw = (rng.rand(n) + 0.5 if weighted else np.ones(n)).astype(dtype)
    units = [4] + [5] * n_hidden + [n_out]
    layout = ParamLayout(units)
    params = glorot_uniform(layout, [6.0] * layout.n_layers, rng, dtype)
    net = Network(layout, activation_codes([act] * n_hidden), LOSSES[loss])
    alpha = 0.3 if weighted else 0.0
    return X, Y, sw, layout, params, net, alpha


def loss_grad_with_1_and_2_threads(net, Xk, Y, sw, params, alpha):
    """``[(loss, grad)]`` computed with 1, then with 2 numba threads."""
    previous = numba.get_num_threads()
    out = []
    try:
        for n_threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n_threads)
            g = np.empty_like(params)
            out.append((net.loss_grad(Xk, Y, sw, params, alpha, g), g))
    finally:
        numba.set_num_threads(previous)
    return out


CASES = [
    (loss, n_hidden, act, weighted)
    for loss in LOSSES
    for n_hidden in (1, 2, 3)
    for act in HIDDEN_ACTIVATIONS
    for weighted in (False, True)
]


@pytest.mark.kernel
@pytest.mark.parametrize("loss,n_hidden,act,weighted", CASES)
def test_gradient_matches_central_differences(loss, n_hidden, act, weighted):
    X, Y, sw, layout, params, net, alpha = make_problem(
        loss, n_hidden, act, np.float64, weighted
    )
    Xk = kernel_input(X, np.float64)
    grad = np.empty_like(params)
    net.loss_grad(Xk, Y, sw, params, alpha, grad)
    scratch = np.empty_like(params)
    fd = central_differences(
        lambda p: net.loss_grad(Xk, Y, sw, p, alpha, scratch), params.copy()
    )
    err = np.max(np.abs(fd - grad)) / max(np.max(np.abs(grad)), 1e-300)
    # ReLU-type kinks: a pre-activation within h of 0 makes the FD meaningless.
    assert err <= 1e-7, err


@pytest.mark.kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,n_hidden,act,weighted", CASES)
def test_kernel_matches_numpy_reference(loss, n_hidden, act, weighted, dtype):
    X, Y, sw, layout, params, net, alpha = make_problem(
        loss, n_hidden, act, dtype, weighted
    )
    grad = np.empty_like(params)
    value = net.loss_grad(kernel_input(X, dtype), Y, sw, params, alpha, grad)
    coefs, intercepts = layout.unpack(params)
    ref_value, cg, ig = ref_loss_grad(
        X, Y, sw, coefs, intercepts, [act] * n_hidden, loss, alpha
    )
    assert grad.dtype == dtype
    ref = layout.pack(cg, ig, np.float64)
    rtol = RTOL[dtype]
    assert abs(value - ref_value) <= rtol * abs(ref_value) + rtol
    assert np.max(np.abs(grad - ref)) <= rtol * np.max(np.abs(ref))


@pytest.mark.kernel
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_equals_dense(fmt):
    X, Y, sw, layout, params, net, alpha = make_problem(
        "log_loss", 2, "tanh", np.float64, True
    )
    X[np.abs(X) < 0.7] = 0
    g_dense, g_sparse = np.empty_like(params), np.empty_like(params)
    v1 = net.loss_grad(kernel_input(X, np.float64), Y, sw, params, alpha, g_dense)
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    v2 = net.loss_grad(kernel_input(Xs, np.float64), Y, sw, params, alpha, g_sparse)
    np.testing.assert_allclose(v1, v2, rtol=1e-13)
    np.testing.assert_allclose(g_dense, g_sparse, rtol=1e-12, atol=1e-15)


def test_gradient_bit_identical_for_1_and_2_threads():
    X, Y, sw, layout, params, net, alpha = make_problem(
        "log_loss", 2, "relu", np.float64, True, n=700
    )
    out = loss_grad_with_1_and_2_threads(
        net, kernel_input(X, np.float64), Y, sw, params, alpha
    )
    assert out[0][0] == out[1][0]
    assert np.array_equal(out[0][1], out[1][1])


def test_glorot_matches_sklearn_draws():
    layout = ParamLayout([5, 4, 3])
    params = glorot_uniform(layout, [2.0, 2.0], np.random.RandomState(3), np.float64)
    sk = SKClassifier(activation="logistic")
    sk._random_state = np.random.RandomState(3)
    for i, (fi, fo) in enumerate([(5, 4), (4, 3)]):
        c, b = sk._init_coef(fi, fo, np.float64)
        np.testing.assert_array_equal(layout.coef_view(params, i), c)
        np.testing.assert_array_equal(layout.intercept_view(params, i), b)


# --------------------------------------------------------------------------- #
# Side by side with scikit-learn
# --------------------------------------------------------------------------- #
def _max_rel(a, b):
    pairs = zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True)
    return max(np.max(np.abs(x - y)) / np.max(np.abs(y)) for x, y in pairs)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16, y[:400]


SOLVERS = [
    dict(solver="sgd", learning_rate_init=0.05),
    dict(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.05),
    dict(solver="adam"),
    dict(solver="lbfgs"),
]


@pytest.mark.parametrize("solver_kw", SOLVERS, ids=lambda d: str(d))
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_classifier_same_model_as_sklearn(digits, solver_kw, activation):
    X, y = digits
    kw = dict(
        hidden_layer_sizes=(15,),
        activation=activation,
        max_iter=8,
        random_state=1,
        **solver_kw,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = fastbp.MLPClassifier(**kw).fit(X, y)
        theirs = SKClassifier(**kw).fit(X, y)
    assert _max_rel(ours, theirs) <= 1e-6
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(
        ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6, atol=1e-9
    )
    if kw["solver"] != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
        assert ours.t_ == theirs.t_


@pytest.mark.parametrize("solver_kw", SOLVERS, ids=lambda d: str(d))
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_regressor_same_model_as_sklearn(solver_kw, activation):
    X, y = make_regression(120, 6, noise=1.0, random_state=0)
    y = y / y.std()
    kw = dict(
        hidden_layer_sizes=(10, 6),
        activation=activation,
        max_iter=8,
        random_state=2,
        **dict(solver_kw, learning_rate_init=0.001),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = fastbp.MLPRegressor(**kw).fit(X, y)
        theirs = SKRegressor(**kw).fit(X, y)
    assert _max_rel(ours, theirs) <= 1e-6
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6, atol=1e-9)


def test_early_stopping_and_partial_fit_match_sklearn(digits):
    X, y = digits
    kw = dict(
        hidden_layer_sizes=(12,),
        max_iter=15,
        random_state=0,
        early_stopping=True,
        n_iter_no_change=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = fastbp.MLPClassifier(**kw).fit(X, y)
        b = SKClassifier(**kw).fit(X, y)
    assert _max_rel(a, b) <= 1e-6
    np.testing.assert_allclose(a.validation_scores_, b.validation_scores_)
    a = fastbp.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    b = SKClassifier(hidden_layer_sizes=(8,), random_state=0)
    for est in (a, b):
        for chunk in np.array_split(np.arange(len(y)), 4):
            est.partial_fit(X[chunk], y[chunk], classes=np.arange(10))
    assert _max_rel(a, b) <= 1e-6


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs", "cg"])
def test_float32_is_kept(digits, solver):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = fastbp.MLPClassifier(
            hidden_layer_sizes=(8,), max_iter=3, solver=solver, random_state=0
        ).fit(X.astype(np.float32), y)
    assert all(c.dtype == np.float32 for c in est.coefs_ + est.intercepts_)
    assert est.predict_proba(X.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("hidden", [20, 2100])
def test_n_jobs_does_not_change_the_model(digits, hidden):
    # Batches of 300 rows run in three chunks on the parallel launcher; with
    # 2100 hidden units the update pass runs its parameter blocks there too.
    from fastbp._kernels.update import PARALLEL_MIN_PARAMS

    X, y = digits
    n_params = 64 * hidden + hidden + hidden * 10 + 10
    assert (n_params >= PARALLEL_MIN_PARAMS) == (hidden == 2100)
    kw = dict(hidden_layer_sizes=(hidden,), max_iter=3, batch_size=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = fastbp.MLPClassifier(n_jobs=1, **kw).fit(X, y)
        b = fastbp.MLPClassifier(n_jobs=2, **kw).fit(X, y)
    for x, z in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert np.array_equal(x, z)


def test_loss_and_gradients_match_finite_differences(digits):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = fastbp.MLPClassifier(
            hidden_layer_sizes=(6,),
            activation="gelu",
            max_iter=2,
            alpha=0.1,
            random_state=0,
        ).fit(X, y)
    loss, cg, _ = est.loss_and_gradients(X[:50], y[:50])
    W = est.coefs_[0]
    h = 1e-6
    for idx in [(0, 0), (10, 3), (40, 5)]:
        old = W[idx]
        W[idx] = old + h
        up = est.loss_and_gradients(X[:50], y[:50])[0]
        W[idx] = old - h
        down = est.loss_and_gradients(X[:50], y[:50])[0]
        W[idx] = old
        assert abs((up - down) / (2 * h) - cg[0][idx]) <= 1e-6 * max(1, abs(cg[0][idx]))


@pytest.mark.kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_full_batch_in_sub_batches_matches_reference(monkeypatch, loss, dtype):
    """Batches larger than SUB_BATCH_ROWS (L-BFGS/CG's full batch) are walked
    in bounded sub-batches: same loss and gradient, any thread count."""
    import fastbp._network as network_module

    X, Y, sw, layout, params, net, alpha = make_problem(
        loss, 2, "tanh", dtype, True, n=45
    )
    monkeypatch.setattr(network_module, "SUB_BATCH_ROWS", 16)  # 16 + 16 + 13 rows
    Xk = kernel_input(X, dtype)
    coefs, intercepts = layout.unpack(params)
    ref_value, cg, ig = ref_loss_grad(
        X, Y, sw, coefs, intercepts, ["tanh"] * 2, loss, alpha
    )
    ref = layout.pack(cg, ig, np.float64)
    out = loss_grad_with_1_and_2_threads(net, Xk, Y, sw, params, alpha)
    (value, grad), (value_2, grad_2) = out
    rtol = RTOL[dtype]
    assert grad.dtype == dtype
    assert abs(value - ref_value) <= rtol * abs(ref_value) + rtol
    assert np.max(np.abs(grad - ref)) <= rtol * np.max(np.abs(ref))
    assert value == value_2 and np.array_equal(grad, grad_2)
