"""The estimators: MLPClassifier and MLPRegressor.

Orchestration only: validate, initialise, loop over epochs (one compiled call
each), apply the stopping rule, report, and commit the result in one step.
The numeric work lives in the kernel modules.  The control flow mirrors
``sklearn/neural_network/_multilayer_perceptron.py`` line for line where
scikit-learn has the behaviour, so that the same ``random_state`` gives the
same model.
"""

import functools
import warnings
from collections import namedtuple
from contextlib import contextmanager

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    is_classifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, get_scorer, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import (
    check_array,
    check_consistent_length,
    check_random_state,
    column_or_1d,
)
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import check_is_fitted, validate_data

from ._callbacks import CallbackSupportMixin, FitHooks, init_fit_context
from ._kernels import full_batch as _full_batch
from ._kernels.activations import activation_codes
from ._kernels.losses import LOSSES, OUTPUT_ACTIVATION, REPORTED
from ._kernels.optimizers import STOCHASTIC_SOLVERS, OptimizerState
from ._network import Network, kernel_input
from ._numba import compile_report, kernel_threads
from ._params import ParamLayout, glorot_uniform
from ._validation import (
    FULL_BATCH_SOLVERS,
    PARAMETER_CONSTRAINTS,
    check_class_weight,
    check_dropout,
    check_finite_weights,
    check_hidden_layer_sizes,
    check_layer_shapes,
    check_parameter_count,
    check_poisson_target,
    check_sample_weight,
    check_sparse_structure,
    check_weight_sum,
    resolve_activations,
)

_LOSS_OF_OUTPUT = {act: loss for loss, act in OUTPUT_ACTIVATION.items()}

#: scikit-learn's message when training ends with non-finite weights (code
#: matches on it); fastbp's own advice follows it where it has some.
NON_FINITE_WEIGHTS = (
    "Solver produced non-finite parameter weights. The input data may"
    " contain large values and need to be preprocessed."
)


def _diverged_message(epoch, last_update=False):
    what = (
        "the last update made the network's outputs non-finite"
        if last_update
        else "the weights became non-finite"
    )
    return (
        f"{NON_FINITE_WEIGHTS} Training diverged in epoch {epoch}: {what} (NaN "
        "or inf). Lower learning_rate_init, scale the input (e.g. "
        "StandardScaler), or set max_grad_norm to clip the gradients."
    )


@contextmanager
def _restored_on_failure(estimator):
    """Leave ``estimator`` exactly as it was if the block raises.

    A fit replaces every array and list it changes, never mutates one in
    place, so a shallow copy of the attributes is a complete snapshot.
    """
    snapshot = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(snapshot)
        raise


#: What the epochs of a stochastic call train on: the training rows (``X`` as
#: validated, ``Xk``, ``Y``, ``sample_weight`` as the kernels take them), the
#: batch size, the validation set scored after each epoch (early stopping's
#: split or the one given to ``fit``; else None), its scorer (None:
#: scikit-learn's accuracy / R^2, ``"loss"``, or a scorer) and, for
#: ``"loss"``, the validation set as the kernels take it (``Xk``, ``Y``,
#: weights).
_StochasticData = namedtuple(
    "_StochasticData",
    [
        "X",
        "Xk",
        "Y",
        "sample_weight",
        "batch_size",
        "X_val",
        "y_val",
        "sw_val",
        "scorer",
        "val_kernel",
    ],
)


def _append_rows(history, rows):
    """``gradient_norms_`` with ``rows`` appended (a new array)."""
    if history is None or history.shape[1] != rows[0].shape[0]:
        return np.vstack(rows)
    return np.vstack([history, *rows])


def _make_network(layer_units, hidden_codes, loss_code):
    """A :class:`fastbp._network.Network` of this structure (tuples of ints)."""
    hidden_codes = np.array(hidden_codes, dtype=np.int64)
    return Network(ParamLayout(list(layer_units)), hidden_codes, loss_code)


#: :func:`_make_network`, one network per structure for predictions.
#: Networks hold no parameters, only the structure and (for predictions) the
#: workspace layout and kernel addresses, so every model of one structure
#: predicts through the same one.
_shared_network = functools.lru_cache(maxsize=16)(_make_network)


class BaseMultilayerPerceptron(CallbackSupportMixin, BaseEstimator):
    """Shared machinery of :class:`MLPClassifier` and :class:`MLPRegressor`.

    Not meant to be used directly.
    """

    _parameter_constraints: dict = dict(PARAMETER_CONSTRAINTS)

    def __init__(
        self,
        hidden_layer_sizes,
        activation,
        solver,
        alpha,
        batch_size,
        learning_rate,
        learning_rate_init,
        power_t,
        max_iter,
        loss,
        shuffle,
        random_state,
        tol,
        verbose,
        warm_start,
        momentum,
        nesterovs_momentum,
        early_stopping,
        validation_fraction,
        beta_1,
        beta_2,
        epsilon,
        n_iter_no_change,
        max_fun,
        max_grad_norm,
        n_jobs,
        scoring=None,
        dropout=0.0,
    ):
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.max_grad_norm = max_grad_norm
        self.n_jobs = n_jobs
        self.scoring = scoring
        self.dropout = dropout

    # ------------------------------------------------------------------ #
    # Structure: everything the kernels need, derived from fitted state.
    # ------------------------------------------------------------------ #
    def _hidden_activations(self, n_hidden):
        return resolve_activations(self.activation, n_hidden)

    def _network(self, layer_units, reported=False, shared=False):
        """The kernels' view of the network; ``reported``: scikit-learn's loss value.

        Training uses the value scikit-learn reports (``loss_curve_``, the
        stopping rules and L-BFGS decide on it); ``loss_and_gradients`` the
        objective whose gradient the kernels compute.  ``shared``: the
        network comes from a small per-process cache by structure (building
        one, its layout and parameter blocks was a third of a one-row
        prediction); a network that will hold training or objective
        workspaces is always a new one.
        """
        names = self._hidden_activations(len(layer_units) - 2)
        structure = (
            tuple(int(u) for u in layer_units),
            tuple(int(c) for c in activation_codes(names)),
            LOSSES[_LOSS_OF_OUTPUT[self.out_activation_]] + REPORTED * reported,
        )
        return (_shared_network if shared else _make_network)(*structure)

    def _fitted_network(self, for_prediction=False):
        """``(network, params)`` of the fitted model.

        ``for_prediction``: the network is a shared one (see :meth:`_network`).
        """
        coefs, intercepts, dtype = self._checked_weights()
        layer_units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        network = self._network(layer_units, shared=for_prediction)
        params = network.layout.pack(coefs, intercepts, dtype)
        return network, params

    def _checked_weights(self):
        """``(coefs, intercepts, dtype)`` of the fitted weights, checked.

        ``coefs_`` and ``intercepts_`` may have been set by hand: their shapes
        must chain from ``n_features_in_`` to ``n_outputs_`` (scikit-learn's
        products raise ``ValueError`` otherwise; the kernels would read out of
        bounds).  Weights that are not float32 or float64 (integers,
        booleans, float16) compute in float64, as numpy's products promote
        them in scikit-learn.  NaN or infinite weights raise ``ValueError``
        (scikit-learn predicts NaN from them).
        """
        coefs = [np.asarray(c) for c in self.coefs_]
        intercepts = [np.asarray(b) for b in self.intercepts_]
        if not coefs or len(coefs) != len(intercepts):
            raise ValueError(
                f"coefs_ and intercepts_ must be lists of the same non-zero "
                f"length, got {len(coefs)} and {len(intercepts)}."
            )
        fan_in = self.n_features_in_
        for i, (coef, intercept) in enumerate(zip(coefs, intercepts, strict=True)):
            if coef.ndim != 2 or coef.shape[0] != fan_in:
                raise ValueError(
                    f"coefs_[{i}] has shape {coef.shape}; layer {i} takes "
                    f"{fan_in} inputs, so it must have shape ({fan_in}, n_units)."
                )
            fan_in = coef.shape[1]
            if intercept.shape != (fan_in,):
                raise ValueError(
                    f"intercepts_[{i}] has shape {intercept.shape}, but "
                    f"coefs_[{i}] has {fan_in} columns."
                )
        n_outputs = getattr(self, "n_outputs_", fan_in)
        if fan_in != n_outputs:
            raise ValueError(
                f"coefs_[-1] has {fan_in} columns, but the model has "
                f"n_outputs_={n_outputs}."
            )
        check_finite_weights(coefs, intercepts)
        dtype = np.result_type(*coefs, *intercepts)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        return coefs, intercepts, dtype

    def _init_factors(self, names):
        """Glorot factor per weight layer: 2 for logistic layers, else 6.

        scikit-learn uses one factor from its single activation for every
        layer, output included; with one activation per layer, each hidden
        layer uses its own and the output layer that of the last hidden layer.
        With no hidden layer, the output layer's is that of ``activation``, as
        in scikit-learn.
        """
        per_hidden = [2.0 if name == "logistic" else 6.0 for name in names]
        if not per_hidden:
            return [2.0 if self.activation == "logistic" else 6.0]
        return per_hidden + [per_hidden[-1]]

    # ------------------------------------------------------------------ #
    # Fitting: validate, initialise or continue, train, commit.
    # ------------------------------------------------------------------ #
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        X_val=None,
        y_val=None,
        sample_weight_val=None,
    ):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels or a label-indicator matrix in
            classification, real numbers in regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.
        X_val : {array-like, sparse matrix} of shape (n_val, n_features), \
                default=None
            A validation set of one's own (fastbp; as scikit-learn's
            ``HistGradientBoosting*.fit``), scored after every epoch with
            ``scoring``.  With ``early_stopping=True`` it replaces the
            ``validation_fraction`` split: all of ``X`` trains.  With
            ``early_stopping=False`` the scores are only recorded in
            ``validation_scores_`` (monitoring; ``best_validation_score_``
            stays None, as no weights are restored).  Stochastic solvers
            only: with ``solver='lbfgs'`` or ``'cg'``, which have no epochs
            (and ignore ``early_stopping``, as scikit-learn's MLP does), a
            validation set raises ``ValueError``.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), \
                default=None
            Targets of ``X_val``; required with it.  A classifier's labels
            must be among the training classes.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation score (not multiplied by
            ``class_weight``).

        Returns
        -------
        self : object
            Returns a trained MLP model.

        """
        validation = None
        if X_val is not None or y_val is not None:
            if y_val is None:
                raise ValueError("X_val is provided, but y_val was not provided.")
            if X_val is None:
                raise ValueError("y_val is provided, but X_val was not provided.")
            if self.solver in FULL_BATCH_SOLVERS:
                raise ValueError(
                    f"X_val and y_val are only used by the stochastic solvers "
                    f"('sgd', 'adam'), which score them after every epoch; "
                    f"solver={self.solver!r} has no epochs."
                )
            validation = (X_val, y_val, sample_weight_val)
        elif sample_weight_val is not None:
            raise ValueError(
                "sample_weight_val is provided, but X_val and y_val were not."
            )
        return self._fit(
            X, y, sample_weight=sample_weight, incremental=False, validation=validation
        )

    def _fit(
        self, X, y, sample_weight=None, incremental=False, classes=None, validation=None
    ):
        # Callbacks are set up before the snapshot: a failed call restores it,
        # and scikit-learn's _fit_context still tears them down.
        init_fit_context(self, incremental)
        with _restored_on_failure(self):
            if incremental:
                self._start_partial_fit(y, classes)
            return self._train(X, y, sample_weight, incremental, validation)

    def _start_partial_fit(self, y, classes):
        """Set up what the first ``partial_fit`` call needs (classifier: labels)."""

    def _train(self, X, y, sample_weight, incremental, validation=None):
        if incremental:
            # scikit-learn's _fit_context skips parameter validation in
            # partial_fit once fitted, but set_params may have changed them.
            self._validate_params()
        scorer = self._resolve_scoring()
        hidden_layer_sizes = check_hidden_layer_sizes(self.hidden_layer_sizes)
        names = self._hidden_activations(len(hidden_layer_sizes))
        dropout_rates = check_dropout(self.dropout, len(hidden_layer_sizes))
        if any(dropout_rates) and self.solver in FULL_BATCH_SOLVERS:
            raise ValueError(
                f"dropout is for the stochastic solvers ('sgd', 'adam'): "
                f"solver={self.solver!r} minimises one deterministic objective. "
                "Set dropout=0."
            )
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")

        first_pass = not hasattr(self, "coefs_") or (
            not self.warm_start and not incremental
        )
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        dtype = X.dtype
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X, dtype)
        if validation is not None:
            validation = self._validate_validation_set(*validation, y, dtype)
        hooks = FitHooks(self, X, y, sample_weight)
        sample_weight = self._apply_class_weight(
            y, sample_weight, X, dtype, incremental
        )
        if self.loss == "poisson":
            check_poisson_target(y)
        y = self._encode_target(y)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        layer_units = [X.shape[1], *hidden_layer_sizes, y.shape[1]]
        check_parameter_count(layer_units)

        self._random_state = check_random_state(self.random_state)
        if first_pass:
            params = self._initialize(y, layer_units, names, dtype)
        else:
            # Continue from coefs_/intercepts_ as they are now (also when set
            # by hand).
            check_layer_shapes(self.coefs_, self.intercepts_, layer_units)
            check_finite_weights(self.coefs_, self.intercepts_)
            params = ParamLayout(layer_units).pack(self.coefs_, self.intercepts_, dtype)
        self.n_outputs_ = y.shape[1]
        # Trained with the loss value scikit-learn reports and decides on.
        network = self._network(layer_units, reported=True)

        hooks.fit_begin()
        with compile_report(self.verbose), kernel_threads(self.n_jobs):
            if self.solver in FULL_BATCH_SOLVERS:
                params = self._fit_full_batch(
                    X, y, sample_weight, params, network, hooks
                )
            else:
                data = self._prepare_stochastic(
                    X, y, sample_weight, params, hooks, validation, scorer
                )
                self._optimizer = self._optimizer_state(params, incremental)
                dropout = None
                if any(dropout_rates):
                    # Drawn after the split and before the shuffles; a model
                    # without dropout draws nothing (scikit-learn's draws).
                    seed = self._random_state.randint(np.iinfo(np.int32).max)
                    dropout = ([0.0, *dropout_rates, 0.0], seed)
                params = self._run_epochs(
                    data, params, network, first_pass, incremental, hooks, dropout
                )

        if not np.all(np.isfinite(params)):
            raise ValueError(NON_FINITE_WEIGHTS)
        self.coefs_, self.intercepts_ = network.layout.unpack(params)
        hooks.fit_end()
        return self

    def _initialize(self, y, layer_units, names, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = OUTPUT_ACTIVATION[self.loss]
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        layout = ParamLayout(layer_units)
        params = glorot_uniform(
            layout, self._init_factors(names), self._random_state, dtype
        )
        self.gradient_norms_ = np.empty((0, layout.n_layers))
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
        return params

    def _optimizer_state(self, params, incremental):
        """The optimizer of this call: new for fit, continued by partial_fit.

        ``partial_fit`` continues the previous call's state (on a copy), or
        creates one from the current weights where there is none that fits
        them (e.g. after ``coefs_`` was set by hand).
        """
        old = getattr(self, "_optimizer", None)
        if incremental and old is not None and old.fits(params.shape[0]):
            return old.copy(params.dtype)
        return OptimizerState(
            self.solver,
            params.shape[0],
            params.dtype,
            learning_rate_init=self.learning_rate_init,
            learning_rate=self.learning_rate,
            power_t=self.power_t,
            momentum=self.momentum,
            nesterovs_momentum=self.nesterovs_momentum,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
        )

    def _prepare_stochastic(
        self, X, y, sample_weight, params, hooks, validation=None, scorer=None
    ):
        """Split off (or take) the validation set and choose the batch size."""
        dtype = params.dtype
        X_val = y_val = sw_val = None
        if validation is not None:
            # The user's own set: no split, all of X trains.
            X_val, y_val, sw_val = validation
        elif self.early_stopping:
            # Don't stratify in multilabel classification (as scikit-learn).
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            # The row indices ride along for the callbacks; extra arrays do
            # not change the split.
            X, X_val, y, y_val, sample_weight, sw_val, rows, _ = train_test_split(
                X,
                y,
                sample_weight,
                np.arange(X.shape[0]),
                random_state=self._random_state,
                test_size=self.validation_fraction,
                stratify=self._stratify_target(y) if should_stratify else None,
            )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            hooks.restrict_to_rows(rows)
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            if self._unit_weights:
                sw_val = None

        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than "
                    "sample size. It is going to be clipped"
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        val_kernel = None
        if X_val is not None and isinstance(scorer, str):  # "loss"
            Y_val = self._encode_target(y_val)
            if Y_val.ndim == 1:
                Y_val = Y_val.reshape((-1, 1))
            val_kernel = (
                kernel_input(X_val, dtype),
                np.ascontiguousarray(Y_val, dtype=dtype),
                np.ascontiguousarray(
                    np.ones(X_val.shape[0]) if sw_val is None else sw_val, dtype=dtype
                ),
            )
        return _StochasticData(
            X,
            kernel_input(X, dtype),
            np.ascontiguousarray(y, dtype=dtype),
            np.ascontiguousarray(sample_weight, dtype=dtype),
            batch_size,
            X_val,
            y_val,
            sw_val,
            scorer,
            val_kernel,
        )

    def _run_epochs(
        self, data, params, network, first_pass, incremental, hooks, dropout=None
    ):
        """scikit-learn's epoch loop, one compiled call per epoch.

        ``dropout`` is ``(rates of every layer, mask seed)`` or ``None``.
        """
        layout, opt = network.layout, self._optimizer
        n_samples = data.X.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.int64)
        grad = np.empty_like(params)
        norms = np.empty(layout.n_layers, dtype=np.float64)
        epoch_norms = []
        self.loss_curve_ = list(self.loss_curve_)
        if self.early_stopping:
            self.validation_scores_ = list(self.validation_scores_)
        elif data.X_val is not None:  # monitoring a given validation set
            self.validation_scores_ = list(self.validation_scores_ or [])
        # scikit-learn's _best_coefs: the initial weights of a first fit; on a
        # warm start, the previous call's restored weights are updated in
        # place with the new ones (they are the same arrays), so the weights
        # being trained until a better validation score is found.
        best_params = params.copy() if first_pass else params
        self.n_iter_ = 0  # every call counts its own epochs (t_ goes on)
        rates, seed = dropout if dropout is not None else (None, 0)
        epochs = network.epochs(
            data.Xk, data.Y, data.sample_weight, data.batch_size, params,
            opt.kernel_hyper(), opt.state_1, opt.state_2, opt.solver == "adam",
            self.alpha, self.max_grad_norm, grad, norms, rates, seed,
        )  # fmt: skip
        try:
            for _ in range(self.max_iter):
                if self.shuffle:
                    # Shuffle the indices, not X, exactly as scikit-learn does
                    # (sklearn.utils.shuffle's draw, without its validation).
                    perm = np.arange(n_samples)
                    self._random_state.shuffle(perm)
                    sample_idx = sample_idx[perm]
                hooks.step_begin("epoch", params, layout)
                # The learning rate may change between epochs (schedules).
                epochs.hyper[:] = opt.kernel_hyper()
                # Dropout masks are keyed on the samples seen before the
                # epoch: unique across epochs, fits and partial_fit calls.
                loss_sum, n_batches, _, opt.t = epochs.run(sample_idx, opt.t, self.t_)
                if not (self.early_stopping or np.all(np.isfinite(params))):
                    # Non-finite weights stay so: scikit-learn would train on
                    # to max_iter, then raise.  (A non-finite loss alone, as
                    # there, is recorded and training goes on.)
                    raise ValueError(_diverged_message(self.n_iter_ + 1))
                epoch_norms.append(norms / max(n_batches, 1))
                if self._end_epoch(loss_sum / n_samples, n_samples, data, network,
                                   params, hooks):  # fmt: skip
                    best_params = params.copy()
                if self._stop_after_epoch(incremental, hooks, params, layout):
                    break
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if epoch_norms:
            self.gradient_norms_ = _append_rows(
                getattr(self, "gradient_norms_", None), epoch_norms
            )
        if self.early_stopping:
            return best_params  # restore the best weights
        if self.n_iter_:
            self._check_last_step(data.X, sample_idx, network, params)
        return params

    def _end_epoch(self, loss, n_samples, data, network, params, hooks):
        """Record an epoch as scikit-learn does; True on a new best score."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n_samples
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        improved = self._update_no_improvement_count(data, network, params)
        self._optimizer.schedule.iteration_ends(self.t_)
        return improved

    def _stop_after_epoch(self, incremental, hooks, params, layout):
        """scikit-learn's stopping rule (and the callbacks' say)."""
        if hooks.step_end(params, layout):
            return True  # a callback asked to stop
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
                what,
                self.tol,
                self.n_iter_no_change,
            )
            if self._optimizer.schedule.trigger_stopping(msg, self.verbose):
                return True
            self._no_improvement_count = 0
        if incremental:
            return True
        if self.n_iter_ == self.max_iter:
            warnings.warn(
                "Stochastic Optimizer: Maximum iterations (%d) "
                "reached and the optimization hasn't converged yet." % self.max_iter,
                ConvergenceWarning,
            )
        return False

    def _update_no_improvement_count(self, data, network, params):
        """scikit-learn's stopping bookkeeping; returns True on a new best score."""
        if data.X_val is not None:
            # The score can be NaN (diverged weights): then the count is reset
            # and training goes on, as in scikit-learn.
            self.validation_scores_.append(
                self._validation_score(data, network, params)
            )
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
        if self.early_stopping:
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                return True
            return False
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]
        return False

    def _check_last_step(self, X, sample_idx, network, params):
        """Catch a last update that left finite weights with non-finite outputs.

        The epoch kernel sees each batch's loss before its update, so a blow-up
        in the very last step would go unnoticed; a forward pass over a few rows
        of the last batch (cheap) catches it.
        """
        rows = np.sort(sample_idx[-64:])
        y_pred = self._predict_params(X[rows], network, params)
        # Weights whose squared norm overflows have no finite objective either
        # (the L2 term), even where these rows' outputs saturate.  Not
        # ``params @ params``: numpy's BLAS would run it on worker threads
        # (from 10,000 entries), which then spin on the user's cores for ~0.1 s
        # after the fit.
        with np.errstate(over="ignore", invalid="ignore"):
            squared_norm = np.square(params).sum()
        if not (np.all(np.isfinite(y_pred)) and np.isfinite(squared_norm)):
            raise ValueError(_diverged_message(self.n_iter_, last_update=True))

    def _fit_full_batch(self, X, y, sample_weight, params, network, hooks):
        Xk = kernel_input(X, params.dtype)
        Y = np.ascontiguousarray(y, dtype=params.dtype)
        sw = np.ascontiguousarray(sample_weight, dtype=params.dtype)
        objective = _full_batch.FullBatchObjective(
            network, Xk, Y, sw, float(self.alpha), params.dtype
        )
        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        epoch_norms = []

        hooks.step_begin("iteration", params, network.layout)

        def callback(intermediate_result):
            epoch_norms.append(objective.layer_grad_norms())
            if hooks.active:
                x = np.asarray(intermediate_result.x).astype(params.dtype)
                hooks.step_end(x, network.layout)
                hooks.step_begin("iteration", x, network.layout)

        result = _full_batch.minimize(
            objective,
            params,
            self.solver,
            self.max_iter,
            self.max_fun,
            self.tol,
            _get_additional_lbfgs_options_dict("iprint", iprint),
            callback,
        )
        hooks.close_step()
        if self.solver == "lbfgs":
            self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        else:
            if not np.isfinite(result.fun):
                # lbfgs (as scikit-learn) stays at its last finite point and
                # warns; cg's line search can stop where the loss overflows.
                raise ValueError(
                    f"{NON_FINITE_WEIGHTS} Training diverged: cg stopped at "
                    "weights where the loss is "
                    "non-finite (NaN or inf). Scale the input and targets (e.g. "
                    "StandardScaler)."
                )
            self.n_iter_ = min(int(result.nit), self.max_iter)
            if result.status != 0:
                warnings.warn(
                    f"cg failed to converge after {self.n_iter_} iteration(s) "
                    f"(status={result.status}):\n{result.message}\n"
                    "Increase the number of iterations (max_iter) or scale the "
                    "data as shown in https://scikit-learn.org/stable/modules/"
                    "preprocessing.html",
                    ConvergenceWarning,
                )
        self.loss_ = float(result.fun)
        if epoch_norms:
            self.gradient_norms_ = np.vstack([self.gradient_norms_, *epoch_norms])
        return np.asarray(result.x).astype(params.dtype)

    # ------------------------------------------------------------------ #
    # Prediction
    # ------------------------------------------------------------------ #
    def _forward_pass_fast(self, X, check_input=True):
        """Predicted outputs (after the output activation) for X."""
        if check_input:
            # dtype="numeric" as scikit-learn's predict: string arrays are
            # rejected; kernel_input casts to the model's dtype.
            X = validate_data(
                self,
                X,
                accept_sparse=["csr", "csc"],
                reset=False,
                dtype="numeric",
            )
            check_sparse_structure(X)
        network, params = self._fitted_network(for_prediction=True)
        return self._predict_params(X, network, params)

    def _predict(self, X, check_input=True):
        return self._decode_output(self._forward_pass_fast(X, check_input=check_input))

    def _predict_params(self, X, network, params):
        with kernel_threads(self.n_jobs):
            return network.predict(kernel_input(X, params.dtype), params)

    def _score_params(self, X, y, sample_weight, network, params):
        """Validation score of the in-training parameters ``params``."""
        y_pred = self._decode_output(self._predict_params(X, network, params))
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    def _resolve_scoring(self):
        """``scoring`` as the epochs use it: None, ``"loss"`` or a scorer.

        An unknown name raises scikit-learn's ``ValueError`` (before any
        change: this runs inside ``_restored_on_failure``).
        """
        if self.scoring is None or callable(self.scoring):
            return self.scoring
        if self.scoring == "loss":
            return "loss"
        return get_scorer(self.scoring)

    def _validation_score(self, data, network, params):
        """Score of ``params`` on the validation set under ``scoring``.

        NaN where the network's outputs are not finite (diverged weights).
        """
        if data.scorer is None:
            return self._score_params(
                data.X_val, data.y_val, data.sw_val, network, params
            )
        if data.val_kernel is not None:
            # scikit-learn's reported loss (with the L2 term) on the set.
            Xk, Y, sw = data.val_kernel
            loss = network.loss_grad(
                Xk, Y, sw, params, float(self.alpha), np.empty_like(params)
            )
            return -float(loss) if np.isfinite(loss) else np.nan
        y_out = self._predict_params(data.X_val, network, params)
        if not np.isfinite(y_out).all():
            return np.nan
        # The scorer sees the estimator with the in-training weights.
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.coefs_, view.intercepts_ = network.layout.unpack(params.copy())
        if data.sw_val is None:
            return float(data.scorer(view, data.X_val, data.y_val))
        return float(
            data.scorer(view, data.X_val, data.y_val, sample_weight=data.sw_val)
        )

    def _validate_validation_set(self, X_val, y_val, sample_weight_val, y, dtype):
        """The ``fit`` validation set, validated against the training data."""
        X_val = validate_data(
            self,
            X_val,
            accept_sparse=["csr", "csc"],
            dtype=(np.float64, np.float32),
            reset=False,
        )
        check_sparse_structure(X_val, "X_val")
        y_val = self._check_y_val(y_val, y)
        check_consistent_length(X_val, y_val)
        if X_val.shape[0] < 1:
            raise ValueError("The validation set X_val has no rows.")
        if sample_weight_val is not None:
            sample_weight_val = check_sample_weight(sample_weight_val, X_val, dtype)
        return X_val, y_val, sample_weight_val

    # ------------------------------------------------------------------ #
    # Extras beyond scikit-learn
    # ------------------------------------------------------------------ #
    def loss_and_gradients(self, X, y, sample_weight=None):
        """Objective and backprop gradient at the current weights.

        The objective is the function whose gradient ``fit`` follows: the
        ``sample_weight``-weighted mean data loss plus the L2 term
        ``alpha / 2 * ||W||^2`` divided by the weight sum, with ``X`` taken
        as one batch, and the returned gradient is its gradient.  Its value
        can differ from the loss scikit-learn reports (``loss_``,
        ``loss_curve_``): for several regression outputs the squared error
        is summed over the outputs (``loss_`` averages it), and the log-loss
        is not clipped (``loss_`` clips probabilities to ``[eps, 1 - eps]``).
        ``dropout`` is not applied: this is the objective of the whole network,
        as it predicts (training with dropout follows the gradient of a
        randomly thinned network in each epoch).  See :doc:`/differences`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets, in the same form as for ``fit``.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        loss : float
            The objective's value.
        coef_grads : list of ndarray
            Gradient with respect to each ``coefs_[i]``.
        intercept_grads : list of ndarray
            Gradient with respect to each ``intercepts_[i]``.

        Examples
        --------
        >>> import numpy as np
        >>> from fastbp import MLPRegressor
        >>> rng = np.random.RandomState(0)
        >>> X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
        >>> reg = MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs",
        ...                    max_iter=200, random_state=0).fit(X, y)
        >>> loss, coef_grads, intercept_grads = reg.loss_and_gradients(X, y)
        >>> [g.shape for g in coef_grads]
        [(3, 4), (4, 1)]
        >>> bool(np.isclose(loss, reg.loss_))
        True

        """
        check_is_fitted(self)
        network, params, Xk, Y, sw = self._objective_inputs(X, y, sample_weight)
        grad = np.empty_like(params)
        with kernel_threads(self.n_jobs):
            loss = network.loss_grad(Xk, Y, sw, params, float(self.alpha), grad)
        coef_grads, intercept_grads = network.layout.unpack(grad)
        return float(loss), coef_grads, intercept_grads

    def _objective_inputs(self, X, y, sample_weight):
        """Validated kernel inputs for the objective at the current weights."""
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=not is_classifier(self),
            dtype=(np.float64, np.float32),
            reset=False,
        )
        check_sparse_structure(X)
        network, params = self._fitted_network()
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X, params.dtype)
        if is_classifier(self):
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y)
            unseen = np.setdiff1d(unique_labels(y), self.classes_)
            if len(unseen):
                raise ValueError(
                    f"y has labels {unseen} that are not in classes_ {self.classes_}."
                )
        # class_weight too: the objective is exactly the one fit minimises.
        sample_weight = self._training_weights(
            y, sample_weight, X.shape[0], params.dtype, incremental=False
        )
        if is_classifier(self):
            y = self._label_binarizer.transform(y)
        elif self.loss == "poisson":
            check_poisson_target(y)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        if y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y.shape[1]} outputs but the model has {self.n_outputs_}."
            )
        Xk = kernel_input(X, params.dtype)
        Y = np.ascontiguousarray(y, dtype=params.dtype)
        sw = np.ascontiguousarray(sample_weight, dtype=params.dtype)
        return network, params, Xk, Y, sw

    def _apply_class_weight(self, y, sample_weight, X, dtype, incremental):
        self._unit_weights = (
            sample_weight is None and getattr(self, "class_weight", None) is None
        )
        return self._training_weights(y, sample_weight, X.shape[0], dtype, incremental)

    def _training_weights(self, y, sample_weight, n_samples, dtype, incremental):
        """The per-sample weights of the objective (no side effects)."""
        if sample_weight is None:
            sample_weight = np.ones(n_samples, dtype=dtype)
        return sample_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True


class MLPClassifier(ClassifierMixin, BaseMultilayerPerceptron):
    """Multi-layer perceptron classifier, trained by compiled backpropagation.

    A drop-in replacement for :class:`sklearn.neural_network.MLPClassifier`:
    the same parameters, attributes and methods, and for the same
    ``random_state`` the same model (to rounding), computed by fused Numba
    kernels in parallel over fixed chunks of each mini-batch.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : str or list of str, default='relu'
        Activation of the hidden layers: one of 'identity', 'logistic',
        'tanh', 'relu' (as scikit-learn) or 'leaky_relu', 'elu', 'softplus',
        'gelu' (fastbp), or a list with one name per hidden layer.
    solver : {'lbfgs', 'sgd', 'adam', 'cg'}, default='adam'
        The solver: L-BFGS, SGD with (Nesterov) momentum, Adam, or (fastbp)
        full-batch nonlinear conjugate gradient.
    alpha : float, default=0.0001
        Strength of the L2 regularization term, divided by the sample weight
        sum when added to the loss.
    batch_size : int or 'auto', default='auto'
        Mini-batch size for the stochastic solvers; 'auto' is
        ``min(200, n_samples)``.  ``batch_size=1`` is online learning.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning rate schedule for ``solver='sgd'``.
    learning_rate_init : float, default=0.001
        Initial learning rate of 'sgd' and 'adam'.
    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.
    max_iter : int, default=200
        Maximum number of epochs (stochastic solvers) or iterations (lbfgs, cg).
    shuffle : bool, default=True
        Whether to shuffle samples in each epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the early-stopping split and shuffling.
    tol : float, default=1e-4
        Tolerance of the stopping rule.
    verbose : bool, default=False
        Print progress messages (scikit-learn's format).
    warm_start : bool, default=False
        Reuse the previous solution as initialisation.
    momentum : float, default=0.9
        Momentum of 'sgd'.
    nesterovs_momentum : bool, default=True
        Whether 'sgd' uses Nesterov's momentum.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified) and stop when
        the validation score stops improving; the best weights are restored.
    validation_fraction : float, default=0.1
        Held-out fraction for early stopping.
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decay rates.
    epsilon : float, default=1e-8
        Adam's numerical-stability term.
    n_iter_no_change : int, default=10
        Epochs without improvement by ``tol`` before stopping.
    max_fun : int, default=15000
        Maximum number of loss evaluations of 'lbfgs'.
    max_grad_norm : float or None, default=None
        If set, each mini-batch gradient is rescaled to at most this global L2
        norm before the optimizer step (gradient clipping).
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``, with
        scikit-learn's usual meaning.
    n_jobs : int or None, default=None
        Threads used by the kernels (None: all).  Results do not depend on it.
    scoring : str, callable or None, default=None
        The validation score of early stopping and of a validation set given
        to ``fit`` (fastbp): None is scikit-learn's (accuracy); ``'loss'`` the
        negative validation loss (scikit-learn's reported loss, L2 term
        included, on the validation set); any name
        :func:`sklearn.metrics.get_scorer` knows; or a callable
        ``scorer(estimator, X, y)`` (greater is better; called with
        ``sample_weight=`` too when the validation rows are weighted:
        ``sample_weight_val``, or the split of weighted training data).  The
        scores are computed with the weights of each epoch.  An unknown name
        raises ``ValueError`` at fit.  Stochastic solvers only (lbfgs and cg
        have no validation score).
    dropout : float or array-like of float, default=0.0
        Inverted dropout of the hidden units at training time (fastbp): a
        rate in [0, 1) for every hidden layer, or one rate per hidden layer.
        In each epoch, each unit is dropped for each sample with that
        probability and the kept ones are scaled by ``1 / (1 - rate)``;
        ``predict``, ``score`` and ``loss_and_gradients`` use the whole
        network.  The masks come from a counter-based hash of (a seed drawn
        from ``random_state`` at the start of each call, the number of
        samples seen before the epoch (``t_``), the sample, the layer, the
        unit), so a model is the same for any ``n_jobs`` and reproducible.
        ``0`` (or all zeros) is exactly the model without dropout.  Stochastic
        solvers only: with ``solver='lbfgs'`` or ``'cg'`` a positive rate
        raises ``ValueError``.

    Attributes
    ----------
    classes_ : ndarray
        Class labels.
    loss_ : float
        The loss of the last epoch or iteration, as scikit-learn reports it.
    best_loss_ : float or None
        Minimum loss reached by the stochastic solvers.
    loss_curve_ : list of float
        Loss after each epoch (stochastic solvers).
    validation_scores_ : list of float or None
        Validation score (``scoring``; default accuracy) after each epoch, with
        early stopping or a validation set given to ``fit``.
    best_validation_score_ : float or None
        Best validation score, with early stopping: the score of the restored
        (best) weights on the validation set.
    t_ : int
        Number of training samples seen.
    coefs_ : list of ndarray
        ``coefs_[i]`` is the weight matrix between layers i and i + 1.
    intercepts_ : list of ndarray
        ``intercepts_[i]`` is the bias vector of layer i + 1.
    gradient_norms_ : ndarray of shape (n_epochs, n_layers - 1)
        Mean L2 norm of each layer's coefficient gradient in each epoch (or
        iteration, for lbfgs and cg): how vanishing gradients show.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Feature names seen during fit, when X has string column names.
    n_iter_ : int
        Number of epochs (or iterations) run.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of output units.
    out_activation_ : str
        Output activation: 'softmax', or 'logistic' (binary and multilabel).

    See Also
    --------
    MLPRegressor : Multi-layer perceptron regressor.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from fastbp import MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier(max_iter=30, random_state=0).fit(X / 16, y)
    >>> clf.score(X / 16, y) > 0.95
    True

    """

    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        max_grad_norm=None,
        class_weight=None,
        n_jobs=None,
        scoring=None,
        dropout=0.0,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss="log_loss",
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            max_grad_norm=max_grad_norm,
            n_jobs=n_jobs,
            scoring=scoring,
            dropout=dropout,
        )
        self.class_weight = class_weight

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        check_sparse_structure(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)

        # Matching the scikit-learn logic: a new binarizer on a fresh fit, a
        # class check when continuing.
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`."
                    f" `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return X, y

    def _encode_target(self, y):
        """The boolean indicator matrix of ``LabelBinarizer.transform(y)``.

        Labels of a single column (binary and multiclass targets, every label
        among ``classes_``) are looked up in the sorted ``classes_`` directly:
        the binarizer validates the target again on every call, which was
        ~1.8 ms of each digits fit.  Anything else goes to the binarizer.
        """
        binarizer = self._label_binarizer
        classes = binarizer.classes_
        if (
            binarizer.y_type_ in ("binary", "multiclass")
            and len(classes) >= 2
            and isinstance(y, np.ndarray)
            and y.ndim == 1
        ):
            try:
                index = np.searchsorted(classes, y)
            except TypeError:  # labels numpy cannot order against classes_
                index = None
            if index is not None:
                np.minimum(index, len(classes) - 1, out=index)
                if np.array_equal(classes[index], y):
                    if binarizer.y_type_ == "binary":
                        return (index == 1)[:, None]
                    Y = np.zeros((y.shape[0], len(classes)), dtype=bool)
                    Y[np.arange(y.shape[0]), index] = True
                    return Y
        return binarizer.transform(y).astype(bool)

    def _stratify_target(self, y):
        return y

    def _check_y_val(self, y_val, y):
        y_val = check_array(y_val, ensure_2d=False, dtype=None, input_name="y_val")
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        multilabel = self._label_binarizer.y_type_.startswith("multilabel")
        if type_of_target(y_val).startswith("multilabel") != multilabel or (
            multilabel and y_val.shape[1] != y.shape[1]
        ):
            raise ValueError(
                f"y_val is not the same kind of target as y: y is "
                f"{self._label_binarizer.y_type_}, y_val is {type_of_target(y_val)}."
            )
        unseen = np.setdiff1d(unique_labels(y_val), self.classes_)
        if len(unseen):
            raise ValueError(
                f"y_val has labels {unseen} that are not in classes_ {self.classes_}."
            )
        return y_val

    def _training_weights(self, y, sample_weight, n_samples, dtype, incremental):
        """Return ``sample_weight`` times the class weights of ``y``'s labels.

        No side effects: ``loss_and_gradients`` uses it too.
        """
        if sample_weight is None:
            sample_weight = np.ones(n_samples, dtype=dtype)
        if self.class_weight is None:
            return sample_weight
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight 'balanced' is not supported for partial_fit: the "
                "class frequencies of one batch are not those of the data. Use "
                "sklearn.utils.class_weight.compute_class_weight('balanced', "
                "classes=classes, y=y) on the whole data and pass the result as a "
                "dict."
            )
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(
                    f"class_weight has labels {sorted(unknown, key=str)} that are "
                    f"not in classes_ {self.classes_}."
                )
        check_class_weight(self.class_weight)
        weights = compute_sample_weight(self.class_weight, y)
        sample_weight = np.ascontiguousarray(sample_weight * weights.astype(dtype))
        check_weight_sum(sample_weight, "sample_weight times class_weight")
        return sample_weight

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.

        """
        check_is_fitted(self)
        return self._predict(X)

    def _decode_output(self, y_pred):
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score_function(self, y, y_pred, sample_weight=None):
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required on the first
            call, and must equal ``classes_`` on later ones.

        Returns
        -------
        self : object
            Trained MLP model.

        """
        return self._fit(
            X, y, sample_weight=sample_weight, incremental=True, classes=classes
        )

    def _start_partial_fit(self, y, classes):
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)

    def predict_log_proba(self, X):
        """Return the log of probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The predicted log-probability of each class, in the order of
            ``classes_``.

        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The predicted probability of each class, in the order of
            ``classes_``.

        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMultilayerPerceptron):
    """Multi-layer perceptron regressor, trained by compiled backpropagation.

    A drop-in replacement for :class:`sklearn.neural_network.MLPRegressor`
    (squared error with an identity output, or the half Poisson deviance with
    an exponential output), with the extras of :class:`MLPClassifier`.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        The loss function.  For several outputs, ``loss_`` reports the squared
        error averaged over the outputs, as scikit-learn does.
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : str or list of str, default='relu'
        Hidden activation(s); see :class:`MLPClassifier`.
    solver : {'lbfgs', 'sgd', 'adam', 'cg'}, default='adam'
        The solver.
    alpha : float, default=0.0001
        Strength of the L2 regularization term.
    batch_size : int or 'auto', default='auto'
        Mini-batch size; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning rate schedule for ``solver='sgd'``.
    learning_rate_init : float, default=0.001
        Initial learning rate.
    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.
    max_iter : int, default=200
        Maximum number of epochs or iterations.
    shuffle : bool, default=True
        Whether to shuffle samples in each epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, the early-stopping split and shuffling.
    tol : float, default=1e-4
        Tolerance of the stopping rule.
    verbose : bool, default=False
        Print progress messages.
    warm_start : bool, default=False
        Reuse the previous solution as initialisation.
    momentum : float, default=0.9
        Momentum of 'sgd'.
    nesterovs_momentum : bool, default=True
        Whether 'sgd' uses Nesterov's momentum.
    early_stopping : bool, default=False
        Stop when the validation R^2 stops improving.
    validation_fraction : float, default=0.1
        Held-out fraction for early stopping.
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decay rates.
    epsilon : float, default=1e-8
        Adam's numerical-stability term.
    n_iter_no_change : int, default=10
        Epochs without improvement by ``tol`` before stopping.
    max_fun : int, default=15000
        Maximum number of loss evaluations of 'lbfgs'.
    max_grad_norm : float or None, default=None
        Gradient clipping threshold (global L2 norm per mini-batch).
    n_jobs : int or None, default=None
        Threads used by the kernels (None: all).  Results do not depend on it.
    scoring : str, callable or None, default=None
        The validation score of early stopping and of a validation set given
        to ``fit`` (fastbp): None is scikit-learn's (R^2); ``'loss'`` the
        negative validation loss (scikit-learn's reported loss, L2 term
        included, on the validation set); any name
        :func:`sklearn.metrics.get_scorer` knows; or a callable
        ``scorer(estimator, X, y)`` (greater is better; called with
        ``sample_weight=`` too when the validation rows are weighted:
        ``sample_weight_val``, or the split of weighted training data).  The
        scores are computed with the weights of each epoch.  An unknown name
        raises ``ValueError`` at fit.  Stochastic solvers only (lbfgs and cg
        have no validation score).
    dropout : float or array-like of float, default=0.0
        Inverted dropout of the hidden units at training time (fastbp): a
        rate in [0, 1) for every hidden layer, or one rate per hidden layer.
        In each epoch, each unit is dropped for each sample with that
        probability and the kept ones are scaled by ``1 / (1 - rate)``;
        ``predict``, ``score`` and ``loss_and_gradients`` use the whole
        network.  The masks come from a counter-based hash of (a seed drawn
        from ``random_state`` at the start of each call, the number of
        samples seen before the epoch (``t_``), the sample, the layer, the
        unit), so a model is the same for any ``n_jobs`` and reproducible.
        ``0`` (or all zeros) is exactly the model without dropout.  Stochastic
        solvers only: with ``solver='lbfgs'`` or ``'cg'`` a positive rate
        raises ``ValueError``.

    Attributes
    ----------
    loss_ : float
        The loss of the last epoch or iteration, as scikit-learn reports it.
    best_loss_ : float or None
        Minimum loss reached by the stochastic solvers.
    loss_curve_ : list of float
        Loss after each epoch (stochastic solvers).
    validation_scores_ : list of float or None
        Validation score (``scoring``; default R^2) after each epoch, with
        early stopping or a validation set given to ``fit``.
    best_validation_score_ : float or None
        Best validation score, with early stopping: the score of the restored
        (best) weights on the validation set.
    t_ : int
        Number of training samples seen.
    coefs_ : list of ndarray
        Weight matrices.
    intercepts_ : list of ndarray
        Bias vectors.
    gradient_norms_ : ndarray of shape (n_epochs, n_layers - 1)
        Mean L2 norm of each layer's coefficient gradient per epoch.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Feature names seen during fit, when X has string column names.
    n_iter_ : int
        Number of epochs (or iterations) run.
    n_layers_ : int
        Number of layers.
    n_outputs_ : int
        Number of outputs.
    out_activation_ : str
        'identity' or 'exp'.

    See Also
    --------
    MLPClassifier : Multi-layer perceptron classifier.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from fastbp import MLPRegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    >>> reg = MLPRegressor(solver="lbfgs", max_iter=500, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.99
    True

    """

    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        max_grad_norm=None,
        n_jobs=None,
        scoring=None,
        dropout=0.0,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss=loss,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            max_grad_norm=max_grad_norm,
            n_jobs=n_jobs,
            scoring=scoring,
            dropout=dropout,
        )

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        check_sparse_structure(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _encode_target(self, y):
        return y

    def _stratify_target(self, y):
        return None

    def _check_y_val(self, y_val, y):
        y_val = check_array(
            y_val, ensure_2d=False, dtype=(np.float64, np.float32), input_name="y_val"
        )
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        n_outputs_val = 1 if y_val.ndim == 1 else y_val.shape[1]
        if y_val.ndim > 2 or n_outputs_val != n_outputs:
            raise ValueError(
                f"y_val has {n_outputs_val} outputs but y has {n_outputs}."
            )
        if self.loss == "poisson":
            check_poisson_target(y_val)
        return y_val

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.

        """
        check_is_fitted(self)
        return self._predict(X)

    def _decode_output(self, y_pred):
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score_function(self, y, y_pred, sample_weight=None):
        return r2_score(y, y_pred, sample_weight=sample_weight)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            Trained MLP model.

        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
