"""Compile every kernel a configuration needs ahead of time: :func:`warm_cache`."""

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from ._kernels.activations import DERIVATIVE, FORWARD
from ._kernels.losses import DELTA, OUTPUT
from ._kernels.update import PARALLEL_MIN_PARAMS
from ._numba import counting_compiles

#: Rows of the tiny training set: batches of 200 are split into two chunks.
_N_ROWS = 300


def warm_cache(
    dtypes=("float64",), sparse=False, dropout=False, clipping=False, verbose=False
):
    """Compile (or load) the kernels of every training configuration.

    Numba compiles fastbp's kernels the first time a configuration needs them
    and caches the machine code on disk, so only the first process pays.  Call
    this once where that cost should be paid instead: while building a
    container image, in a CI setup step, or on a cluster's shared
    ``NUMBA_CACHE_DIR`` before the workers start.  Later processes that use
    the same cache directory then load every kernel they need.

    Each dtype and input kind named compiles the kernels of mini-batch
    training with ``adam`` and ``sgd`` (batches of one chunk and of several
    chunks run in parallel), online learning (``batch_size=1``), the
    full-batch solvers (``lbfgs`` and ``cg``), networks large enough to update
    their weights in parallel, and prediction, with the kernels of every
    activation and loss.  Kernels already in the cache are loaded, not
    compiled.

    Parameters
    ----------
    dtypes : sequence of {"float64", "float32"} or dtypes, default=("float64",)
        The input dtypes fits will use (a model trains in its input's dtype).
    sparse : bool, default=False
        Also compile the kernels for scipy sparse input.
    dropout : bool, default=False
        Also compile the kernels of training with ``dropout`` (any rate above
        0 uses the same kernels).
    clipping : bool, default=False
        Also compile the kernels of training with gradient clipping
        (``max_grad_norm``; any threshold uses the same kernels).
    verbose : bool, default=False
        Print what is compiled and how long it took.

    Returns
    -------
    n_compiled : int
        Number of functions numba compiled (0 when the cache was warm).

    Examples
    --------
    >>> import fastbp
    >>> n_compiled = fastbp.warm_cache(dtypes=["float64"])

    """
    from ._multilayer_perceptron import MLPClassifier

    names = []
    for dtype in dtypes:
        dtype = np.dtype(dtype)
        if dtype not in (np.float64, np.float32):
            raise ValueError(f"dtypes must be float64 or float32, got {dtype}.")
        names.append(dtype)
    if not isinstance(sparse, (bool, np.bool_)):
        raise TypeError(f"sparse must be a bool, got {sparse!r}.")
    if not isinstance(dropout, bool):
        raise TypeError(f"dropout must be a bool, got {dropout!r}.")
    if not isinstance(clipping, bool):
        raise TypeError(f"clipping must be a bool, got {clipping!r}.")

    rng = np.random.RandomState(0)
    # Wide enough input that one hidden layer of 400 units reaches the
    # parallel weight update.
    n_features = PARALLEL_MIN_PARAMS // 400 + 1
    X = rng.standard_normal((_N_ROWS, n_features))
    y = np.arange(_N_ROWS) % 3
    # Each stochastic configuration compiles its own epoch kernel: the
    # optimizer, clipping, dropout and what runs in parallel are compiled in.
    stochastic = [
        dict(hidden_layer_sizes=(4,), batch_size=200),  # chunks in parallel
        dict(hidden_layer_sizes=(4,), batch_size=1),  # online, one chunk
        dict(hidden_layer_sizes=(400,), batch_size=200),  # parallel update
        dict(hidden_layer_sizes=(400,), batch_size=1),
    ]
    stochastic = [dict(p, solver=s) for s in ("adam", "sgd") for p in stochastic]
    if clipping:
        stochastic += [dict(p, max_grad_norm=1.0) for p in stochastic]
    if dropout:
        stochastic += [dict(p, dropout=0.5) for p in stochastic]
    configurations = [
        *stochastic,
        dict(hidden_layer_sizes=(4,), solver="lbfgs"),
        dict(hidden_layer_sizes=(400,), solver="lbfgs"),
    ]
    with counting_compiles() as counter:
        for dtype in names:
            inputs = [("dense", X.astype(dtype))]
            if sparse:
                inputs.append(("sparse", sp.csr_matrix(X.astype(dtype))))
            before = counter.count
            # Every activation's and loss's own kernels (the configurations
            # below use relu and log_loss only).
            for table in (FORWARD, DERIVATIVE, OUTPUT, DELTA):
                table.compile_all(dtype)
            for kind, Xk in inputs:
                for params in configurations:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        clf = MLPClassifier(max_iter=1, random_state=0, **params)
                        clf.fit(Xk, y).predict(Xk)
                if verbose:
                    print(
                        f"fastbp.warm_cache: {dtype.name} {kind} input: "
                        f"{counter.count - before} functions compiled",
                        flush=True,
                    )
                before = counter.count
    return counter.count
