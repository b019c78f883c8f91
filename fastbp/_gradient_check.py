"""Finite-difference check of the backprop gradient of an MLP estimator.

The gradient ``fit`` follows comes from fused, parallel kernels.  This module
compares it, parameter by parameter, with central finite differences of the
same objective, in float64, on a private copy of the estimator.
"""

import copy

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

from ._numba import kernel_threads
from ._params import ParamLayout
from ._validation import check_hidden_layer_sizes


def check_gradients(estimator, X, y, sample_weight=None, *, epsilon=1e-6):
    """Compare the backprop gradient with central finite differences.

    The objective is the one ``fit`` minimises (see
    ``loss_and_gradients``): the weighted mean data loss plus the L2 term
    ``alpha / 2 * ||W||^2`` divided by the weight sum, with ``X`` taken as one
    batch.  For every parameter ``p_i`` (every entry of ``coefs_`` and
    ``intercepts_``) the derivative is estimated as
    ``(f(p + epsilon e_i) - f(p - epsilon e_i)) / (2 epsilon)`` and compared
    with the backprop gradient.  Everything is computed in float64, whatever
    the model's dtype.

    ``dropout`` is not applied: the objective is that of the whole network
    (as in prediction), not of a randomly thinned one.

    The estimator is never modified: the check works on a copy.  If it is not
    fitted, the copy's parameters are initialised exactly as ``fit`` would
    initialise them (the same Glorot draws from ``random_state``, which is not
    advanced), without any training.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        A fastbp estimator, fitted or not.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets, in the same form as for ``fit``.
    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.
    epsilon : float, default=1e-6
        Step of the central differences, in parameter units.  Their truncation
        error is ``O(epsilon**2)`` and their rounding error
        ``O(1e-16 / epsilon)``; ``1e-6`` balances the two in float64.

    Returns
    -------
    max_relative_error : float
        ``max_i |fd_i - bp_i| / max(max_i |bp_i|, max_i |fd_i|)`` over all
        parameters (0.0 when both gradients vanish).  Normalising by the
        largest gradient entry rather than entry by entry keeps tiny gradient
        entries, whose finite differences are pure rounding noise, from
        dominating.  For smooth activations it is around ``1e-9`` or below.

    Raises
    ------
    TypeError
        If ``estimator`` is not a fastbp MLP estimator, or the input has the
        wrong type.
    ValueError
        If ``epsilon`` is not a positive finite number, or the input is
        invalid (it goes through the validation of ``loss_and_gradients``,
        and of ``fit`` for an unfitted estimator).

    See Also
    --------
    MLPClassifier.loss_and_gradients : The objective and its backprop gradient.

    Notes
    -----
    Activations with a kink (``relu``, ``leaky_relu``, and ``elu`` with its
    jump in the second derivative) are not differentiable where a hidden
    pre-activation is exactly zero.  If a pre-activation lies within about
    ``epsilon`` of a kink, the two evaluations of the central difference fall
    on different linear pieces and that entry's finite difference is wrong
    by up to the size of the gradient: a large error there is an artefact of
    the check, not a backprop bug.  With continuous data and random weights
    this is rare; to rule it out, check a smooth activation (``tanh``,
    ``logistic``, ``softplus``, ``gelu``) on the same network, or repeat with
    a smaller ``epsilon``.

    The check costs two evaluations of the objective per parameter: use a
    small network and a few dozen samples.

    Examples
    --------
    >>> import numpy as np
    >>> from fastbp import MLPClassifier, check_gradients
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(30, 4))
    >>> y = rng.randint(3, size=30)
    >>> clf = MLPClassifier(hidden_layer_sizes=(5,), activation="tanh", random_state=0)
    >>> bool(check_gradients(clf, X, y) < 1e-6)
    True
    >>> hasattr(clf, "coefs_")  # the check does not fit the estimator
    False

    """
    if not (hasattr(estimator, "loss_and_gradients") and hasattr(estimator, "fit")):
        raise TypeError(
            "check_gradients expects a fastbp MLPClassifier or MLPRegressor, got "
            f"{type(estimator).__name__}."
        )
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.number):
        raise TypeError(f"epsilon must be a real number, got {epsilon!r}.")
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive finite number, got {epsilon}.")
    epsilon = float(epsilon)

    work = _float64_copy(estimator, X, y)
    # Backprop gradient, through the public method (validates the input).
    _, coef_grads, intercept_grads = work.loss_and_gradients(X, y, sample_weight)
    network, params, Xk, Y, sw = work._objective_inputs(X, y, sample_weight)
    layout = network.layout
    backprop = layout.pack(coef_grads, intercept_grads, np.float64)

    # ``params`` is a fresh packed vector owned by this function: perturbing it
    # touches neither the estimator nor its copy.
    alpha = float(work.alpha)
    scratch_grad = np.empty_like(params)
    finite_diff = np.empty(layout.n_params)
    with kernel_threads(work.n_jobs):
        for k in range(layout.n_params):
            original = params[k]
            params[k] = original + epsilon
            loss_plus = network.loss_grad(Xk, Y, sw, params, alpha, scratch_grad)
            params[k] = original - epsilon
            loss_minus = network.loss_grad(Xk, Y, sw, params, alpha, scratch_grad)
            params[k] = original
            finite_diff[k] = (loss_plus - loss_minus) / (2.0 * epsilon)

    scale = max(np.max(np.abs(backprop)), np.max(np.abs(finite_diff)))
    error = np.max(np.abs(finite_diff - backprop))
    if error == 0.0:
        return 0.0
    return float(error / max(scale, np.finfo(np.float64).tiny))


def _float64_copy(estimator, X, y):
    """A copy of ``estimator`` with float64 parameters, initialised if unfitted."""
    if hasattr(estimator, "coefs_"):
        work = copy.copy(estimator)
        work.coefs_ = [np.array(c, dtype=np.float64) for c in estimator.coefs_]
        work.intercepts_ = [
            np.array(b, dtype=np.float64) for b in estimator.intercepts_
        ]
        return work

    # Unfitted: the first steps of ``fit`` on a clone (whose random_state is a
    # copy), up to and including the Glorot draws, without training.
    work = clone(estimator)
    work._validate_params()
    hidden_layer_sizes = check_hidden_layer_sizes(work.hidden_layer_sizes)
    names = work._hidden_activations(len(hidden_layer_sizes))
    X, y = work._validate_input(X, y, incremental=False, reset=True)
    y = work._encode_target(y)
    if y.ndim == 1:
        y = y.reshape((-1, 1))
    layer_units = [X.shape[1], *hidden_layer_sizes, y.shape[1]]
    work._random_state = check_random_state(work.random_state)
    # Drawn in the dtype fit would use (that of X), then widened.
    params = work._initialize(y, layer_units, names, X.dtype).astype(np.float64)
    work.coefs_, work.intercepts_ = ParamLayout(layer_units).unpack(params)
    return work
