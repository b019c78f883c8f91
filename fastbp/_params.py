"""The flat parameter vector and its per-layer views.

All coefficients and intercepts of a network live in one contiguous 1-D
array, in scikit-learn's packing order (``_pack`` in
``sklearn/neural_network/_multilayer_perceptron.py``)::

    [coefs_[0].ravel(), ..., coefs_[L-1].ravel(), intercepts_[0], ..., intercepts_[L-1]]

The gradient vector has the same layout, so optimizers update every layer
with one loop over one array, and L-BFGS/CG see exactly the vector
scikit-learn hands to scipy.  ``coefs_`` and ``intercepts_`` are views into
the flat vector.
"""

import numpy as np


class ParamLayout:
    """Offsets of each layer's coefficients and intercepts in the flat vector.

    Parameters
    ----------
    layer_units : sequence of int
        ``[n_features, *hidden_layer_sizes, n_outputs]``.

    """

    def __init__(self, layer_units):
        self.layer_units = np.asarray(layer_units, dtype=np.int64)
        fan_in = self.layer_units[:-1]
        fan_out = self.layer_units[1:]
        coef_sizes = fan_in * fan_out
        self.coef_offsets = np.concatenate([[0], np.cumsum(coef_sizes)[:-1]]).astype(
            np.int64
        )
        n_coefs = int(coef_sizes.sum())
        self.intercept_offsets = (
            n_coefs + np.concatenate([[0], np.cumsum(fan_out)[:-1]])
        ).astype(np.int64)
        self.n_params = n_coefs + int(fan_out.sum())

    @property
    def n_layers(self):
        """Number of weight layers (``n_layers_ - 1`` in scikit-learn)."""
        return len(self.layer_units) - 1

    def coef_view(self, params, i):
        """Return layer ``i``'s coefficient matrix as a view into ``params``."""
        fi, fo = int(self.layer_units[i]), int(self.layer_units[i + 1])
        start = int(self.coef_offsets[i])
        return params[start : start + fi * fo].reshape(fi, fo)

    def intercept_view(self, params, i):
        """Return layer ``i``'s intercept vector as a view into ``params``."""
        start = int(self.intercept_offsets[i])
        return params[start : start + int(self.layer_units[i + 1])]

    def unpack(self, params):
        """Return ``(coefs, intercepts)``: lists of views into ``params``."""
        coefs = [self.coef_view(params, i) for i in range(self.n_layers)]
        intercepts = [self.intercept_view(params, i) for i in range(self.n_layers)]
        return coefs, intercepts

    def pack(self, coefs, intercepts, dtype):
        """Copy per-layer arrays into a new flat vector of ``dtype``."""
        params = np.empty(self.n_params, dtype=dtype)
        for i in range(self.n_layers):
            self.coef_view(params, i)[...] = coefs[i]
            self.intercept_view(params, i)[...] = intercepts[i]
        return params


def glorot_uniform(layout, init_factors, random_state, dtype):
    """Draw initial parameters exactly as scikit-learn's MLP does.

    For each layer in order, the coefficients and then the intercepts are drawn
    from ``U(-b, b)`` with ``b = sqrt(factor / (fan_in + fan_out))``, in
    float64 from ``random_state``, then cast to ``dtype``.  ``factor`` is 2 for
    logistic layers and 6 otherwise (Glorot & Bengio, 2010).

    Parameters
    ----------
    layout : ParamLayout
    init_factors : sequence of float
        One factor per weight layer.
    random_state : numpy.random.RandomState
    dtype : numpy dtype

    Returns
    -------
    params : ndarray of shape (layout.n_params,)

    """
    params = np.empty(layout.n_params, dtype=dtype)
    for i in range(layout.n_layers):
        fan_in, fan_out = int(layout.layer_units[i]), int(layout.layer_units[i + 1])
        bound = np.sqrt(init_factors[i] / (fan_in + fan_out))
        coef = random_state.uniform(-bound, bound, (fan_in, fan_out))
        intercept = random_state.uniform(-bound, bound, fan_out)
        layout.coef_view(params, i)[...] = coef
        layout.intercept_view(params, i)[...] = intercept
    return params
