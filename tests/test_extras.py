"""The extras beyond scikit-learn: check_gradients, TrainingCurveDisplay,
scikit-learn's callback API, and metadata routing of sample_weight."""

import doctest
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from naive import central_differences, ref_loss_grad
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_validate
from sklearn.neural_network import MLPClassifier as SKClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastbp
from fastbp import (
    MLPClassifier,
    MLPRegressor,
    TrainingCurveDisplay,
    _display,
    _gradient_check,
    check_gradients,
)
from fastbp._callbacks import HAS_CALLBACK_API

SMOOTH = ("tanh", "logistic", "softplus", "gelu", "identity")


def equal_params(a, b):
    return len(a.coefs_) == len(b.coefs_) and all(
        np.array_equal(p, q)
        for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True)
    )


def quiet_fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def small_problem(kind, seed=0, n=40):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 4))
    if kind == "multiclass":
        y = rng.randint(3, size=n)
    elif kind == "binary":
        y = np.where(rng.rand(n) > 0.5, "yes", "no")
    elif kind == "multilabel":
        y = (rng.rand(n, 3) > 0.5).astype(int)
    else:
        y = X[:, :2] @ [1.0, -2.0] + 0.1 * rng.normal(size=n)
    sw = rng.uniform(0.2, 2.0, n)
    return X, y, sw


# --------------------------------------------------------------------------- #
# check_gradients
# --------------------------------------------------------------------------- #
def numpy_objective(est, X, y, sw, coefs, intercepts):
    """The objective fit minimises, from ``naive.ref_loss_grad`` (independent of
    fastbp)."""
    if est.out_activation_ == "softmax":
        loss, Y = "log_loss", (y[:, None] == est.classes_[None, :]).astype(float)
    elif est.out_activation_ == "logistic":
        loss = "binary_log_loss"
        Y = (y == est.classes_[1]).astype(float)[:, None] if y.ndim == 1 else y
    else:
        loss, Y = "squared_error", y.reshape(len(y), -1)
    acts = [est.activation] * (len(coefs) - 1)
    return ref_loss_grad(X, Y, sw, coefs, intercepts, acts, loss, est.alpha)[0]


def numpy_finite_differences(est, X, y, sw):
    params = [p.astype(np.float64) for p in est.coefs_ + est.intercepts_]
    flat = np.concatenate([p.ravel() for p in params])
    bounds = np.cumsum([0] + [p.size for p in params])
    n = len(est.coefs_)

    def objective(x):
        arrays = [
            x[a:b].reshape(p.shape)
            for a, b, p in zip(bounds[:-1], bounds[1:], params, strict=True)
        ]
        return numpy_objective(est, X, y, sw, arrays[:n], arrays[n:])

    return central_differences(objective, flat)


def relative_error(fd, bp):
    return np.max(np.abs(fd - bp)) / max(np.max(np.abs(bp)), np.max(np.abs(fd)))


class CorruptedGradient(MLPClassifier):
    """A classifier whose backprop gradient is wrong in one entry, by ``delta``."""

    delta = 0.0
    seen_coefs = []

    def loss_and_gradients(self, X, y, sample_weight=None):
        loss, coef_grads, intercept_grads = super().loss_and_gradients(
            X, y, sample_weight
        )
        CorruptedGradient.seen_coefs.append([c.copy() for c in self.coefs_])
        coef_grads = [g.copy() for g in coef_grads]
        coef_grads[0][1, 2] += self.delta
        return loss, coef_grads, intercept_grads


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression"])
def test_check_gradients_agrees_with_numpy_central_differences(kind):
    X, y, sw = small_problem(kind)
    Est = MLPRegressor if kind == "regression" else MLPClassifier
    est = quiet_fit(
        Est(
            hidden_layer_sizes=(5, 3),
            activation="tanh",
            alpha=0.3,
            max_iter=5,
            random_state=0,
        ),
        X,
        y,
        sample_weight=sw,
    )
    loss, coef_grads, intercept_grads = est.loss_and_gradients(X, y, sw)
    assert loss == pytest.approx(
        numpy_objective(est, X, y, sw, est.coefs_, est.intercepts_), rel=1e-12
    )
    bp = np.concatenate([g.ravel() for g in coef_grads + intercept_grads])
    fd = numpy_finite_differences(est, X, y, sw)
    oracle = relative_error(fd, bp)
    assert oracle < 1e-6
    assert check_gradients(est, X, y, sw) < 1e-6


def test_check_gradients_reports_a_wrong_gradient():
    X, y, sw = small_problem("multiclass")
    est = quiet_fit(
        CorruptedGradient(
            hidden_layer_sizes=(5,),
            activation="tanh",
            alpha=0.1,
            max_iter=5,
            random_state=0,
        ),
        X,
        y,
        sample_weight=sw,
    )
    fd = numpy_finite_differences(est, X, y, sw)
    for delta in (1e-3, 0.05, -0.5):
        CorruptedGradient.delta = delta
        _, cg, ig = est.loss_and_gradients(X, y, sw)
        bp = np.concatenate([g.ravel() for g in cg + ig])
        expected = relative_error(fd, bp)
        assert expected > 1e-4
        assert check_gradients(est, X, y, sw) == pytest.approx(expected, rel=1e-4)
    CorruptedGradient.delta = 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", SMOOTH)
@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_check_gradients_tiny_for_smooth_activations(Est, activation, dtype):
    kind = "multiclass" if Est is MLPClassifier else "regression"
    X, y, sw = small_problem(kind, seed=1)
    est = quiet_fit(
        Est(
            hidden_layer_sizes=(6, 4),
            activation=activation,
            alpha=0.01,
            max_iter=10,
            random_state=0,
        ),
        X.astype(dtype),
        y,
    )
    assert est.coefs_[0].dtype == dtype
    assert check_gradients(est, X.astype(dtype), y) < 1e-6
    assert check_gradients(est, X, y, sample_weight=sw) < 1e-6


def test_check_gradients_sparse_input():
    X, y, _ = small_problem("multiclass")
    X[np.abs(X) < 0.8] = 0
    est = MLPClassifier(hidden_layer_sizes=(5,), activation="softplus", random_state=0)
    assert check_gradients(est, sp.csr_matrix(X), y) < 1e-6


def test_check_gradients_leaves_the_estimator_bit_identical():
    X, y, sw = small_problem("multiclass")
    fitted = quiet_fit(
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0), X, y
    )
    before = pickle.dumps(fitted)
    coefs = [c.copy() for c in fitted.coefs_]
    check_gradients(fitted, X, y, sw)
    assert pickle.dumps(fitted) == before
    assert all(np.array_equal(a, b) for a, b in zip(coefs, fitted.coefs_, strict=True))

    # Unfitted, with a RandomState instance: not fitted, its state not advanced.
    unfitted = MLPRegressor(
        hidden_layer_sizes=(4,),
        activation="tanh",
        random_state=np.random.RandomState(3),
    )
    before = pickle.dumps(unfitted)
    check_gradients(unfitted, X, X[:, 0])
    assert pickle.dumps(unfitted) == before
    with pytest.raises(NotFittedError):
        unfitted.predict(X)


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_check_gradients_unfitted_uses_fit_initialisation(activation):
    X, y, _ = small_problem("multiclass")
    est = CorruptedGradient(
        hidden_layer_sizes=(5, 4), activation=activation, random_state=7
    )
    CorruptedGradient.seen_coefs = []
    assert check_gradients(est, X, y) < 1e-6
    assert not hasattr(est, "coefs_")
    (seen,) = CorruptedGradient.seen_coefs
    # Glorot & Bengio as scikit-learn draws it: per layer, coefs then intercepts.
    rng = np.random.RandomState(7)
    factor = 2.0 if activation == "logistic" else 6.0
    for W, (fan_in, fan_out) in zip(seen, [(4, 5), (5, 4), (4, 3)], strict=True):
        bound = np.sqrt(factor / (fan_in + fan_out))
        np.testing.assert_array_equal(W, rng.uniform(-bound, bound, (fan_in, fan_out)))
        rng.uniform(-bound, bound, fan_out)
    # ... which are also the initial weights of a real fit.
    one_step = quiet_fit(
        MLPClassifier(
            hidden_layer_sizes=(5, 4),
            activation=activation,
            solver="sgd",
            learning_rate_init=1e-300,
            max_iter=1,
            random_state=7,
        ),
        X,
        y,
    )
    for W, V in zip(seen, one_step.coefs_, strict=True):
        np.testing.assert_allclose(W, V, rtol=1e-12)


def test_check_gradients_rejects_bad_input(monkeypatch):
    X, y, sw = small_problem("multiclass")
    fitted = quiet_fit(
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y
    )
    unfitted = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    before = pickle.dumps(fitted)

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel ran on invalid input")

    monkeypatch.setattr(fastbp._network.Network, "loss_grad", no_kernel)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    y_new_label = y.copy()
    y_new_label[0] = 9
    for est in (fitted, unfitted):
        with pytest.raises(ValueError, match="NaN"):
            check_gradients(est, X_nan, y)
        with pytest.raises(ValueError, match="(?i)negative"):
            check_gradients(est, X, y, -sw)
        with pytest.raises(ValueError, match="sample_weight"):
            check_gradients(est, X, y, sw[:-1])
        with pytest.raises(ValueError, match="inconsistent numbers of samples"):
            check_gradients(est, X, y[:-1])
        with pytest.raises(ValueError, match="epsilon"):
            check_gradients(est, X, y, epsilon=0.0)
        with pytest.raises(TypeError, match="epsilon"):
            check_gradients(est, X, y, epsilon="1e-6")
    with pytest.raises(ValueError, match="features"):
        check_gradients(fitted, X[:, :3], y)
    with pytest.raises(ValueError, match="not in classes_"):
        check_gradients(fitted, X, y_new_label)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        check_gradients(MLPClassifier(hidden_layer_sizes=(0,)), X, y)
    with pytest.raises(TypeError, match="fastbp MLPClassifier or MLPRegressor"):
        check_gradients(LogisticRegression(), X, y)
    assert pickle.dumps(fitted) == before
    assert not hasattr(unfitted, "coefs_")


# --------------------------------------------------------------------------- #
# TrainingCurveDisplay
# --------------------------------------------------------------------------- #
@pytest.fixture
def pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_display_lines_are_the_recorded_data(pyplot, iris):
    X, y = iris
    clf = quiet_fit(
        MLPClassifier(
            hidden_layer_sizes=(8, 6),
            solver="sgd",
            max_iter=25,
            early_stopping=True,
            n_iter_no_change=50,
            random_state=0,
        ),
        X,
        y,
    )
    display = TrainingCurveDisplay.from_estimator(clf)
    assert display.panels_ == ("loss", "validation", "gradient_norms")
    assert len(display.axes_) == 3
    assert all(ax.figure is display.figure_ for ax in display.axes_)

    (loss_line,) = display.lines_["loss"]
    np.testing.assert_array_equal(loss_line.get_ydata(), clf.loss_curve_)
    np.testing.assert_array_equal(loss_line.get_xdata(), np.arange(1, clf.n_iter_ + 1))
    (val_line,) = display.lines_["validation"]
    np.testing.assert_array_equal(val_line.get_ydata(), clf.validation_scores_)

    norm_lines = display.lines_["gradient_norms"]
    assert len(norm_lines) == clf.n_layers_ - 1 == clf.gradient_norms_.shape[1]
    for layer, line in enumerate(norm_lines):
        np.testing.assert_array_equal(line.get_ydata(), clf.gradient_norms_[:, layer])
    assert display.axes_[2].get_yscale() == "log"
    assert display.axes_[0].get_xlabel() == "Epoch"

    # The data are attributes of the display, equal to the estimator's.
    np.testing.assert_array_equal(display.loss_curve, clf.loss_curve_)
    np.testing.assert_array_equal(display.validation_scores, clf.validation_scores_)
    np.testing.assert_array_equal(display.gradient_norms, clf.gradient_norms_)


@pytest.mark.parametrize("solver", ["lbfgs", "cg"])
def test_display_full_batch_has_gradient_norms_only(pyplot, solver):
    X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    reg = quiet_fit(
        MLPRegressor(
            hidden_layer_sizes=(5,), solver=solver, max_iter=15, random_state=0
        ),
        X,
        y,
    )
    display = TrainingCurveDisplay.from_estimator(reg)
    assert display.panels_ == ("gradient_norms",)
    assert display.axes_[0].get_xlabel() == "Iteration"
    for layer, line in enumerate(display.lines_["gradient_norms"]):
        np.testing.assert_array_equal(line.get_ydata(), reg.gradient_norms_[:, layer])
    with pytest.raises(ValueError, match="No data was recorded"):
        display.plot(panels=["loss"])


def test_display_on_given_axes_and_panel_choice(pyplot, iris):
    X, y = iris
    clf = quiet_fit(
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0), X, y
    )
    fig, axes = pyplot.subplots(1, 2)
    display = TrainingCurveDisplay.from_estimator(clf, ax=axes)
    assert display.panels_ == ("loss", "gradient_norms")
    assert display.figure_ is fig
    assert list(display.axes_) == list(axes)

    fig, ax = pyplot.subplots()
    display.plot(ax=ax, panels="loss")
    assert display.axes_[0] is ax
    np.testing.assert_array_equal(
        display.lines_["loss"][0].get_ydata(), clf.loss_curve_
    )
    with pytest.raises(ValueError, match="Expected 2 Axes"):
        display.plot(ax=ax)
    with pytest.raises(ValueError, match="Unknown panel"):
        display.plot(panels=["accuracy"])


def test_display_works_for_scikit_learn_mlp(pyplot, iris):
    X, y = iris
    clf = quiet_fit(
        SKClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0), X, y
    )
    display = TrainingCurveDisplay.from_estimator(clf)
    assert display.panels_ == ("loss",)
    np.testing.assert_array_equal(
        display.lines_["loss"][0].get_ydata(), clf.loss_curve_
    )


def test_display_unfitted_raises(pyplot):
    with pytest.raises(NotFittedError):
        TrainingCurveDisplay.from_estimator(MLPClassifier())


def test_display_without_matplotlib_names_the_extra(monkeypatch, iris):
    X, y = iris
    clf = quiet_fit(
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0), X, y
    )
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "fastbp\[plot\]"'):
        TrainingCurveDisplay.from_estimator(clf)


@pytest.mark.parametrize("module", [_gradient_check, _display])
def test_docstring_examples(module, pyplot):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------- #
# scikit-learn's callback API
# --------------------------------------------------------------------------- #
needs_callbacks = pytest.mark.skipif(
    not HAS_CALLBACK_API, reason="scikit-learn has no sklearn.callback"
)


class Recorder:
    """A FitCallback that records every hook call (and can ask to stop)."""

    def __init__(self, stop_after=None):
        self.events = []
        self.stop_after = stop_after

    def setup(self, estimator, context):
        self.events.append(("setup", None, None))

    def teardown(self, estimator, context):
        self.events.append(("teardown", None, None))

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None):
        self.events.append(("begin", context.task_name, None))

    def on_fit_task_end(self, estimator, context, *, X=None, fitted_estimator=None):
        record = None
        if fitted_estimator is not None:
            record = (X.shape[0], [c.copy() for c in fitted_estimator.coefs_])
        self.events.append(("end", context.task_name, record))
        n_ended = sum(1 for e in self.events if e[:2] == ("end", "epoch"))
        return self.stop_after is not None and n_ended >= self.stop_after

    def ends(self, task_name):
        return [e[2] for e in self.events if e[:2] == ("end", task_name)]


FIT_CASES = [
    (MLPClassifier, dict(solver="adam")),
    (MLPClassifier, dict(solver="sgd", early_stopping=True, n_iter_no_change=3)),
    (MLPClassifier, dict(solver="lbfgs")),
    (MLPRegressor, dict(solver="cg")),
    (MLPRegressor, dict(solver="adam", early_stopping=True)),
]


def case_data(Est, iris):
    X, y = iris
    return (X, y) if Est is MLPClassifier else (X[:, 1:], X[:, 0])


@needs_callbacks
@pytest.mark.parametrize("Est,params", FIT_CASES)
def test_callbacks_do_not_change_the_model(Est, params, iris):
    from sklearn.callback import ScoringMonitor

    X, y = case_data(Est, iris)
    make = lambda: Est(hidden_layer_sizes=(6,), max_iter=20, random_state=0, **params)  # noqa: E731
    plain = quiet_fit(make(), X, y)
    recorder = Recorder()
    # (scoring=None fails inside scikit-learn 1.9.1 itself, for any estimator.)
    monitor = ScoringMonitor(scoring=["accuracy" if Est is MLPClassifier else "r2"])
    with_cb = quiet_fit(make().set_callbacks(recorder, monitor), X, y)
    assert equal_params(plain, with_cb)
    assert plain.n_iter_ == with_cb.n_iter_
    assert getattr(plain, "loss_curve_", None) == getattr(with_cb, "loss_curve_", None)

    kinds = [e[0] for e in recorder.events]
    assert kinds[0] == "setup" and kinds[-1] == "teardown"
    assert kinds.count("setup") == kinds.count("teardown") == 1
    assert kinds.count("begin") == kinds.count("end")
    step = "iteration" if params["solver"] in ("lbfgs", "cg") else "epoch"
    # Full-batch: one more (empty) task is begun after scipy's last iteration.
    steps = [r for r in recorder.ends(step) if r is not None]
    assert len(steps) == with_cb.n_iter_
    n_train = (
        len(y) - int(np.ceil(0.1 * len(y))) if params.get("early_stopping") else len(y)
    )
    assert all(n == n_train for n, _ in steps)
    (final,) = recorder.ends("fit")
    assert all(
        np.array_equal(a, b) for a, b in zip(final[1], with_cb.coefs_, strict=True)
    )
    if not params.get("early_stopping"):
        # The last step's model is the fitted model.
        last = steps[-1][1]
        assert all(
            np.array_equal(a, b) for a, b in zip(last, with_cb.coefs_, strict=True)
        )


@needs_callbacks
def test_scoring_monitor_one_score_per_epoch(iris):
    from sklearn.callback import ScoringMonitor

    X, y = iris
    n_epochs = 6
    make = lambda n: MLPClassifier(  # noqa: E731
        hidden_layer_sizes=(6,),
        solver="sgd",
        learning_rate_init=0.05,
        max_iter=n,
        random_state=0,
    )
    monitor = ScoringMonitor(scoring=["accuracy", "neg_log_loss"])
    clf = quiet_fit(make(n_epochs).set_callbacks(monitor), X, y)
    assert clf.n_iter_ == n_epochs
    log = monitor.get_logs().data
    epochs = [row for row in log if row["task_name"] == "epoch"]
    assert [row["task_id"] for row in epochs] == list(range(n_epochs))
    # Independent oracle: the model after k epochs is the model fitted with
    # max_iter=k (training is deterministic).
    for k, row in enumerate(epochs, start=1):
        ref = quiet_fit(make(k), X, y)
        assert row["accuracy"] == ref.score(X, y)
        assert row["neg_log_loss"] == pytest.approx(
            -sklearn.metrics.log_loss(y, ref.predict_proba(X)), rel=1e-12
        )
    (root,) = [row for row in log if row["task_name"] == "fit"]
    assert root["accuracy"] == clf.score(X, y)


@needs_callbacks
def test_callback_can_stop_a_stochastic_fit(iris):
    X, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    clf.set_callbacks(Recorder(stop_after=3)).fit(X, y)  # no ConvergenceWarning
    assert clf.n_iter_ == 3
    ref = quiet_fit(
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y
    )
    assert equal_params(clf, ref)


@needs_callbacks
def test_callbacks_partial_fit_and_failed_fit_tear_down(iris):
    X, y = iris
    recorder = Recorder()
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    clf.set_callbacks(recorder)
    clf.partial_fit(X, y, classes=np.unique(y))
    clf.partial_fit(X, y)
    assert len(recorder.ends("epoch")) == 2
    assert [e[0] for e in recorder.events].count("teardown") == 2

    # A failing call restores the model and still tears the callbacks down.
    def state():  # everything but the recorder, whose log grows
        return pickle.dumps(
            {k: v for k, v in vars(clf).items() if k != "_skl_callbacks"}
        )

    before = state()
    with pytest.raises(ValueError):
        clf.partial_fit(X[:, :2], y)
    assert [e[0] for e in recorder.events].count("teardown") == 3
    assert state() == before
    assert not hasattr(clf, "_callback_fit_ctx")


@needs_callbacks
def test_progress_bar_runs(iris):
    pytest.importorskip("rich")
    from sklearn.callback import ProgressBar

    X, y = iris
    make = lambda: MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)  # noqa: E731
    with_bar = quiet_fit(make().set_callbacks(ProgressBar()), X, y)
    assert equal_params(with_bar, quiet_fit(make(), X, y))


def test_no_callback_api_imports_nothing_from_sklearn_callback():
    # Simulate scikit-learn < 1.9: sklearn.callback cannot be imported (its
    # submodule that scikit-learn's own _fit_context needs is loaded first).
    code = "\n".join(
        [
            "import sys",
            "import sklearn.callback._callback_support, sklearn.metrics",
            "import sklearn.model_selection, sklearn.preprocessing",
            "sys.modules['sklearn.callback'] = None",
            "import warnings; warnings.simplefilter('ignore')",
            "import numpy as np, fastbp, fastbp._callbacks as c",
            "X = np.random.RandomState(0).normal(size=(20, 3))",
            "clf = fastbp.MLPClassifier((3,), max_iter=2).fit(X, X[:, 0] > 0)",
            "print(c.HAS_CALLBACK_API, hasattr(clf, 'set_callbacks'))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- #
# Metadata routing
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_sample_weight_routes_through_pipeline_and_cross_validate(Est, iris):
    X, y = case_data(Est, iris)
    w = np.random.RandomState(0).uniform(0.1, 3.0, len(y))
    make = lambda: Est(hidden_layer_sizes=(5,), max_iter=15, random_state=0)  # noqa: E731
    cv = KFold(3, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with sklearn.config_context(enable_metadata_routing=True):
            pipe = make_pipeline(
                StandardScaler().set_fit_request(sample_weight=False),
                make().set_fit_request(sample_weight=True),
            ).fit(X, y, sample_weight=w)
            routed = cross_validate(
                make()
                .set_fit_request(sample_weight=True)
                .set_score_request(sample_weight=True),
                X,
                y,
                cv=cv,
                params={"sample_weight": w},
                return_estimator=True,
            )
        assert not sklearn.get_config()["enable_metadata_routing"]
        direct = make().fit(StandardScaler().fit_transform(X), y, sample_weight=w)
        unweighted = make().fit(StandardScaler().fit_transform(X), y)
        assert equal_params(pipe[-1], direct)
        assert not equal_params(unweighted, direct)  # the weights matter
        for (train, test), est, score in zip(
            cv.split(X), routed["estimator"], routed["test_score"], strict=True
        ):
            ref = make().fit(X[train], y[train], sample_weight=w[train])
            assert equal_params(est, ref)
            assert score == ref.score(X[test], y[test], sample_weight=w[test])
