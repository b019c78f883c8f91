"""The training engine: optimizer steps, schedules, clipping, full batch, Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import warnings
from collections import namedtuple

import numba
import numpy as np
import pytest
from naive import adam_step, sgd_step
from sklearn.datasets import make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor as SKRegressor
from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

import fastbp
from fastbp._kernels.linalg import BLAS, LOOPS, NN, NT, PRODUCT, SMALL_ROWS, TN
from fastbp._kernels.optimizers import (
    ADAM,
    ADAM_LR_T,
    BETA_1,
    BETA_2,
    EPSILON,
    LEARNING_RATE,
    MOMENTUM,
    N_HYPER,
    NESTEROV,
    SGD,
    LearningRateSchedule,
    adam_learning_rate,
)
from fastbp._kernels.update import Optimizer, finish_and_step, parameter_blocks
from fastbp._numba import call_at, call_separately

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-6, np.float64: 1e-14}


@numba.njit
def _from_python(kernel, args):
    """Call a kernel that only kernels call (it has no Python entry)."""
    return call_separately(kernel, args)


@numba.njit
def _adam_learning_rate(learning_rate, beta_1, beta_2, t):
    return adam_learning_rate(learning_rate, beta_1, beta_2, t)


def kernel_step(solver, hyper, p, g, state_1, state_2):
    """One optimizer step through the training path's update stage."""
    units = np.array([1, p.size], dtype=np.int64)  # one layer, coefficients only
    blocks = parameter_blocks(units, np.array([0]), np.array([p.size]))
    params = np.concatenate([p, np.zeros(p.size, p.dtype)])
    grad = np.concatenate([g, np.zeros(p.size, g.dtype)])
    s1 = np.concatenate([state_1, np.zeros(p.size, p.dtype)])
    s2 = (
        np.concatenate([state_2, np.zeros(p.size, p.dtype)]) if state_2.size else s1[:0]
    )
    opt = Optimizer(hyper, s1, s2)
    adam, sgd = (True, None) if solver == ADAM else (None, True)
    args = (None, True, adam, sgd, blocks, grad[None, :], np.int64(0), params,
            grad, 0.0, 1.0, opt, 1.0, np.empty(1), None)  # fmt: skip
    _from_python(finish_and_step, args)
    n = p.size
    return params[:n], s1[:n], s2[:n]


@pytest.mark.kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_step_closed_form(dtype, nesterov):
    rng = np.random.RandomState(0)
    p, g, v = (rng.randn(7).astype(dtype) for _ in range(3))
    lr, mu = 0.1, 0.9
    expected_p, expected_v = sgd_step(p, g, v, lr, mu, nesterov)
    hyper = np.zeros(N_HYPER)
    hyper[LEARNING_RATE], hyper[MOMENTUM], hyper[NESTEROV] = lr, mu, float(nesterov)
    p, v, _ = kernel_step(SGD, hyper, p, g, v, v[:0])
    assert p.dtype == dtype and v.dtype == dtype
    np.testing.assert_allclose(v, expected_v, rtol=TOL[dtype] * 10)
    np.testing.assert_allclose(p, expected_p, rtol=TOL[dtype] * 10)


@pytest.mark.kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [1, 5])
def test_adam_step_closed_form(dtype, t):
    rng = np.random.RandomState(1)
    p, g = rng.randn(6).astype(dtype), rng.randn(6).astype(dtype)
    m, v = rng.randn(6).astype(dtype), rng.rand(6).astype(dtype)
    lr, b1, b2, eps = 0.001, 0.9, 0.999, 1e-8
    ep, em, ev = adam_step(p, g, m, v, t, lr, b1, b2, eps)
    hyper = np.zeros(N_HYPER)
    hyper[BETA_1], hyper[BETA_2], hyper[EPSILON] = b1, b2, eps
    hyper[ADAM_LR_T] = _adam_learning_rate(lr, b1, b2, t)
    p, m, v = kernel_step(ADAM, hyper, p, g, m, v)
    assert p.dtype == dtype
    np.testing.assert_allclose(m, em, rtol=TOL[dtype] * 10)
    np.testing.assert_allclose(v, ev, rtol=TOL[dtype] * 10)
    np.testing.assert_allclose(p, ep, rtol=TOL[dtype] * 10)


def test_adam_step_size_is_scikit_learns_to_the_bit():
    # Oracle: scikit-learn's AdamOptimizer, whose step size is computed in
    # Python.  Through the epoch kernel (fastbp's compile flags): after an
    # epoch of k batches, the hyper array holds the step size of update k.
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

    from fastbp._network import Network, kernel_input
    from fastbp._params import ParamLayout

    layout = ParamLayout([2, 3, 1])
    network = Network(layout, np.array([0]), 0)
    X = np.random.RandomState(0).standard_normal((8, 2))
    Y, sw = X[:, :1].copy(), np.ones(8)
    oracle = AdamOptimizer([np.zeros(1)], learning_rate_init=0.001)
    params = np.zeros(layout.n_params)
    hyper = np.zeros(N_HYPER)
    hyper[LEARNING_RATE], hyper[BETA_1], hyper[BETA_2] = 0.001, 0.9, 0.999
    hyper[EPSILON] = 1e-8
    epochs = network.epochs(
        kernel_input(X, np.float64), Y, sw, 8, params, hyper, np.zeros_like(params),
        np.zeros_like(params), True, 0.0, None, np.empty_like(params), np.empty(2),
    )  # fmt: skip
    for t in range(1, 201):
        oracle._get_updates([np.zeros(1)])  # scikit-learn's update t
        # One epoch of one batch, as update t (adam_t counts those before).
        epochs.run(np.arange(8), t - 1)
        assert hyper[ADAM_LR_T] == oracle.learning_rate, t


def test_clipping_spares_gradients_below_the_threshold():
    """A threshold no batch gradient reaches leaves the model bit-identical."""
    X, y = make_regression(64, 4, random_state=0)
    kw = dict(solver="sgd", batch_size=16, max_iter=3, random_state=0,
              hidden_layer_sizes=(5,))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = fastbp.MLPRegressor(**kw).fit(X, y)
        loose = fastbp.MLPRegressor(max_grad_norm=1e300, **kw).fit(X, y)
    for a, b in zip(plain.coefs_ + plain.intercepts_,
                    loose.coefs_ + loose.intercepts_, strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_clipped_update_is_bounded():
    X, y = make_regression(64, 4, random_state=0)
    kw = dict(
        solver="sgd",
        momentum=0.0,
        learning_rate_init=0.1,
        batch_size=64,
        max_iter=1,
        shuffle=False,
        random_state=0,
        hidden_layer_sizes=(5,),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = fastbp.MLPRegressor(**dict(kw, learning_rate_init=1e-300)).fit(X, y)
        before = np.concatenate([c.ravel() for c in start.coefs_ + start.intercepts_])
        clipped = fastbp.MLPRegressor(max_grad_norm=0.5, **kw).fit(X, y)
    after = np.concatenate([c.ravel() for c in clipped.coefs_ + clipped.intercepts_])
    # One batch, no momentum: the step is lr * clipped gradient.
    assert np.linalg.norm(after - before) <= 0.1 * 0.5 * (1 + 1e-12)
    assert np.linalg.norm(after - before) > 0.1 * 0.5 * 0.99


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_learning_rate_schedule_matches_sklearn(schedule):
    ours = LearningRateSchedule(0.1, schedule, 0.5, "sgd")
    theirs = SGDOptimizer([np.zeros(1)], 0.1, schedule, 0.9, True, 0.5)
    for step in range(1, 40):
        ours.iteration_ends(step * 100)
        theirs.iteration_ends(step * 100)
        assert ours.learning_rate == theirs.learning_rate
        if step % 3 == 0:
            assert ours.trigger_stopping("m", False) == theirs.trigger_stopping(
                "m", False
            )
            assert ours.learning_rate == theirs.learning_rate


@pytest.mark.parametrize("solver", ["lbfgs", "cg"])
def test_full_batch_solvers_reach_sklearn_lbfgs_minimum(solver):
    X, y = make_regression(80, 4, noise=0.5, random_state=0)
    kw = dict(
        hidden_layer_sizes=(3,),
        activation="identity",
        alpha=1.0,
        max_iter=5000,
        tol=1e-12,
        random_state=0,
    )
    with warnings.catch_warnings():
        # At tol=1e-12 both line searches end on "precision loss" at the
        # minimum; the oracle is the loss value reached.
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = fastbp.MLPRegressor(solver=solver, **kw).fit(X, y)
        theirs = SKRegressor(solver="lbfgs", **kw).fit(X, y)
    assert abs(ours.loss_ - theirs.loss_) <= 1e-6 * theirs.loss_
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-4, atol=1e-4)


_LONG_FIT = textwrap.dedent(
    """
    import signal, sys, warnings
    # Python installs its KeyboardInterrupt handler at start-up unless SIGINT
    # is ignored, which a process inherits when the test suite runs as a
    # background job of a non-interactive shell: install it as a terminal's
    # Python has it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np
    import fastbp
    rng = np.random.RandomState(0)
    X = rng.randn(20000, 50)
    y = rng.randint(0, 5, 20000)
    # Never stops by itself before max_iter (tens of seconds): a signal that
    # is not honoured fails the "interrupted" assertion below.
    est = fastbp.MLPClassifier((64,), max_iter=3000, tol=0, n_iter_no_change=10**9,
                               verbose=True, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    assert any("interrupted" in str(w.message) for w in caught)
    # A usable model: finite weights, finite predictions, training resumable.
    assert all(np.isfinite(p).all() for p in est.coefs_ + est.intercepts_)
    assert np.isfinite(est.predict_proba(X[:5])).all()
    n_iter = est.n_iter_
    est.partial_fit(X[:100], y[:100])
    print("N_ITER", n_iter, flush=True)
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery needs POSIX")
def test_ctrl_c_stops_within_one_epoch():
    proc = subprocess.Popen(
        # Unbuffered: each verbose line reaches us as its epoch ends, so the
        # signal lands during the next epoch, not after a buffer flush.
        [sys.executable, "-u", "-c", _LONG_FIT],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = 0
    for line in proc.stdout:
        if line.startswith("Iteration"):
            seen += 1
            if seen == 3:
                proc.send_signal(signal.SIGINT)
                break
    rest = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, rest
    n_iter = int(rest.split("N_ITER")[1].split()[0])
    # The signal arrived during epoch 4 at the latest: training stops at the
    # next epoch boundary.
    assert seen <= n_iter <= seen + 2, rest


def test_verbose_reports_compilation_only_when_it_happens(capsys):

    from fastbp._numba import compile_report

    @numba.njit
    def fresh(x):  # a new function: compiles on its first call
        return x + 1

    with compile_report(True):
        fresh(1)
    out = capsys.readouterr().out
    assert "fastbp: compiling kernels" in out
    assert "fastbp: compiled 1 functions in" in out
    with compile_report(True):
        fresh(2)  # already compiled: nothing to say
    with compile_report(False):
        numba.njit(lambda x: x * 2)(3)  # compiles, but not verbose
    assert capsys.readouterr().out == ""

    X, y = make_regression(40, 3, random_state=0)
    kw = dict(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastbp.MLPRegressor(**kw).fit(X, y)  # compiled (or loaded) here
        capsys.readouterr()
        fastbp.MLPRegressor(verbose=True, **kw).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss" in out and "compil" not in out


def test_call_at_checks_types_when_the_caller_compiles():
    # A call through an address is typed by the table's signature: arguments
    # of other types fail to compile (they would be read with the wrong
    # layout), and a member returning another type is refused its address.
    from numba.core import types
    from numba.core.errors import TypingError

    from fastbp._kernels import activations as _activations
    from fastbp._numba import KernelTable, call_at
    from fastbp._numba.calls import LINKED

    if numba.config.DISABLE_JIT:
        pytest.skip("types are only checked when compiling")
    prototype = _activations.FORWARD.prototype

    @numba.njit
    def forward_2d(address, z):
        call_at(address, prototype, (z, z))

    address = _activations.FORWARD.address(_activations.RELU, np.float64)
    # numba's public path: no overload of call_at matches, numba says so.
    message = "the table's members take" if LINKED else "call_at"
    with pytest.raises(TypingError, match=message):
        forward_2d(address, np.zeros((2, 2)))

    @numba.njit
    def returns_a_float(z, zpre):
        return 1.0

    if not LINKED:  # numba's public path: the "address" is the member's code
        return
    from fastbp._numba.linking import kernel_address

    table = KernelTable(_activations.FORWARD.argtypes, types.none, {0: returns_a_float})
    with pytest.raises(TypeError, match="returns float64"):
        table.address(0, np.float64)
    argtypes = _activations.FORWARD.argtypes(np.float64)
    assert kernel_address(returns_a_float, argtypes, types.float64) > 0


@pytest.mark.kernel
@pytest.mark.parametrize("flag", [True, False])
def test_parallel_for_runs_each_index_once_with_the_callers_arguments(flag):
    # The launcher compiled once calls the worker by address with a pointer to
    # the caller's tuple: every index runs exactly once (``+=`` would show a
    # repeat), and every field (arrays, a float, a boolean) reads back as the
    # caller passed it, on as many threads as numba has.

    from fastbp._numba import parallel_for, worker_args

    @numba.njit(no_cpython_wrapper=True)
    def worker(ctx, i):
        out, scale, flag, rows = worker_args(ctx)
        out[i] += scale * rows[i] if flag else -1.0

    @numba.njit
    def run(out, scale, flag, rows):
        parallel_for(worker, (out, scale, flag, rows), np.int64(rows.shape[0]))

    rows = np.arange(1000, dtype=np.float64)
    out = np.zeros_like(rows)
    run(out, 2.5, flag, rows)
    np.testing.assert_array_equal(out, 2.5 * rows if flag else -np.ones_like(rows))


def _types_negative_cache():
    """Classes numba's ``types.Type`` has found not to be its subclasses."""
    import abc

    return {ref() for ref in abc._get_dump(numba.types.Type)[2]}


def test_bundle_classes_get_numbas_tuple_type_without_a_class_search():
    # numba types a value by its class.  A named tuple class has no rule of
    # its own, so its first value makes numba test the class against every
    # numba type class (the search leaves it in their negative caches); a
    # class registered by ``bundle`` gets numba's tuple rule directly: the
    # same type, no search.
    from fastbp._numba import bundle

    fields = ["values", "count", "flag"]
    Plain = namedtuple("Plain", fields)
    Registered = bundle(namedtuple("Registered", fields))
    items = (np.zeros(3), np.int64(2), None)
    plain_type = numba.typeof(Plain(*items))
    registered_type = numba.typeof(Registered(*items))
    member_types = [numba.typeof(item) for item in items]
    assert Plain in _types_negative_cache()
    assert Registered not in _types_negative_cache()
    assert plain_type == numba.types.BaseTuple.from_types(member_types, Plain)
    assert registered_type == numba.types.BaseTuple.from_types(member_types, Registered)
    assert isinstance(registered_type, numba.types.NamedTuple)


def test_every_named_tuple_of_the_kernel_modules_is_registered():
    # Derived from the kernel modules, so a new bundle class that misses
    # ``bundle`` fails here; the eight a fit uses must be among them.
    import importlib

    from numba.extending import typeof_impl

    from fastbp._kernels import backprop as _backprop
    from fastbp._kernels import epoch as _epoch
    from fastbp._kernels import update as _update
    from fastbp._numba import cache

    found = set()
    for filename in cache._KERNEL_MODULES:
        module = importlib.import_module("fastbp." + filename[:-3].replace("/", "."))
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, tuple)
                    and hasattr(obj, "_fields")
                    and obj.__module__ == module.__name__):  # fmt: skip
                found.add(obj)
    assert {_backprop.Data, _backprop.Net, _backprop.Workspace,
            _backprop.Dropout, _epoch.EpochBundle,
            _update.Optimizer, _update.Blocks} <= found  # fmt: skip
    tuple_rule = typeof_impl.dispatch(tuple)
    for cls in found:
        assert typeof_impl.registry.get(cls) is tuple_rule, cls


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="counts compiled code")
def test_new_networks_reuse_the_kernel_addresses_of_the_process(monkeypatch):
    # Every partial_fit call builds a new network; the kernels' addresses
    # depend on the argument types only, so a network of other sizes,
    # trained and predicting with the same types, asks numba for none of
    # them again.
    from fastbp._numba import calls

    if not calls.LINKED:
        pytest.skip("numba's public path has no addresses to look up")
    X = np.random.RandomState(0).standard_normal((40, 5))
    y = np.arange(40) % 3
    classes = np.arange(3)
    fastbp.MLPClassifier(random_state=0).partial_fit(X, y, classes=classes)
    lookups = []
    entry_point = calls.linking._entry_point
    monkeypatch.setattr(
        calls.linking,
        "_entry_point",
        lambda *args: lookups.append(args) or entry_point(*args),
    )
    model = fastbp.MLPClassifier((7, 4), random_state=1)
    model.partial_fit(X, y, classes=classes)
    model.partial_fit(X, y)
    model.predict(X)
    # The activation of the first fit, for the same dtype: no lookup at all.
    assert lookups == []


def test_models_of_one_size_predict_through_their_own_networks():
    # Prediction networks are cached by structure: models with the same layer
    # sizes but another activation, or another output (classifier and
    # regressor), must each predict as scikit-learn's model of the same seed.
    from sklearn.neural_network import MLPClassifier as SKClassifier

    X, y = make_regression(60, 4, random_state=0)
    labels = (y > 0).astype(int) + (y > 50)
    kw = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for activation in ("relu", "tanh", "logistic", "relu"):
            ours = fastbp.MLPClassifier(activation=activation, **kw).fit(X, labels)
            theirs = SKClassifier(activation=activation, **kw).fit(X, labels)
            np.testing.assert_allclose(
                ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-10, atol=1e-12
            )
            ours = fastbp.MLPRegressor(activation=activation, **kw).fit(X, y)
            theirs = SKRegressor(activation=activation, **kw).fit(X, y)
            np.testing.assert_allclose(
                ours.predict(X), theirs.predict(X), rtol=1e-10, atol=1e-9
            )


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="counts compiled code")
def test_epoch_and_prediction_loops_are_compiled_for_each_dtype_once():
    # Kernels take typed arrays: each loop has a float64 and a float32
    # variant (the float64 code is not reused with the arrays reinterpreted),
    # and another float32 fit compiles nothing more.
    from fastbp._kernels import backprop as _backprop
    from fastbp._kernels import epoch as _epoch
    from fastbp._kernels import full_batch as _full_batch
    from fastbp._kernels import update as _update

    loops = (
        _epoch.run_epoch.kernel,
        _backprop.predict_rows.kernel,
        _backprop.batch_gradients,
        _update.finish_and_step,
        _full_batch.loss_grad.kernel,
    )
    X = np.random.RandomState(0).standard_normal((300, 6))
    y = np.arange(300) % 3
    signatures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for dtype in (np.float64, np.float32, np.float32):
            for solver in ("adam", "lbfgs"):
                model = fastbp.MLPClassifier(
                    solver=solver, max_iter=2, random_state=0
                ).fit(X.astype(dtype), y)
                assert model.predict_proba(X.astype(dtype)).dtype == dtype
                assert model.coefs_[0].dtype == dtype
            signatures.append([set(loop.overloads) for loop in loops])
    assert all(signatures[0])  # every loop ran
    for loop_signatures in signatures[1]:
        float32_in = ["float32" in str(sig) for sig in loop_signatures]
        assert any(float32_in) and not all(float32_in)
    assert signatures[2] == signatures[1]


_PRODUCT = PRODUCT.prototype


@numba.njit
def _call_product(address, op, n, p, q, A, B, C):
    call_at(address, _PRODUCT, (op, n, p, q, A, 0, B, 0, C, 0))


@pytest.mark.kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, SMALL_ROWS, 7])
@pytest.mark.parametrize("code", [BLAS, LOOPS])
def test_both_products_compute_each_layer_product(code, n, dtype):
    # Oracle: numpy's matmul on the same row-major blocks.  The loops are
    # correct for any number of rows (training uses them up to SMALL_ROWS).
    rng = np.random.RandomState(n)
    p, q = 5, 3
    address = PRODUCT.address(code, dtype)
    cases = {
        NN: (rng.standard_normal((n, p)), rng.standard_normal((p, q)), (n, q)),
        TN: (rng.standard_normal((n, p)), rng.standard_normal((n, q)), (p, q)),
        NT: (rng.standard_normal((n, p)), rng.standard_normal((q, p)), (n, q)),
    }
    for op, (A, B, shape) in cases.items():
        A, B = A.astype(dtype), B.astype(dtype)
        C = np.full(shape, np.nan, dtype=dtype)  # every entry must be written
        _call_product(address, op, n, p, q, A.ravel(), B.ravel(), C.ravel())
        # einsum's own loops: numpy's matmul on these tiny float32 blocks
        # raised a spurious "invalid value" warning on a fresh CI machine.
        spec = {NN: "ij,jk->ik", TN: "ij,ik->jk", NT: "ij,kj->ik"}[op]
        expected = np.einsum(spec, A, B)
        np.testing.assert_allclose(C, expected, rtol=10 * TOL[dtype], atol=0)


@pytest.mark.kernel
def test_a_float_array_of_another_dtype_is_refused_not_misread():
    # The dtype-free loops re-type every byte array with the parameters' item
    # size: a float64 target beside float32 parameters must raise, not be
    # read as float32 bytes.
    from fastbp._network import Network, kernel_input
    from fastbp._params import ParamLayout

    layout = ParamLayout([3, 4, 2])
    network = Network(layout, np.array([0]), 0)
    X = np.ones((5, 3), dtype=np.float32)
    params = np.zeros(layout.n_params, dtype=np.float32)
    grad = np.empty_like(params)
    Y = np.zeros((5, 2))  # float64
    sw = np.ones(5, dtype=np.float32)
    with pytest.raises(
        TypeError, match="Data.Y is float64, the parameters are float32"
    ):
        network.loss_grad(kernel_input(X, np.float32), Y, sw, params, 0.0, grad)
    value = network.loss_grad(
        kernel_input(X, np.float32), Y.astype(np.float32), sw, params, 0.0, grad
    )
    assert np.isfinite(value)
