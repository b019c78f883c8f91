"""scikit-learn's callback API (``sklearn.callback``), where it is installed.

scikit-learn 1.9 ships an experimental callback API: an estimator mixing in
``CallbackSupportMixin`` gets ``set_callbacks``, and reports a tree of tasks
to the callbacks (``ProgressBar``, ``ScoringMonitor``, ...).  fastbp's fit is
the root task; its subtasks are the epochs of the stochastic solvers and the
iterations of ``lbfgs``/``cg``.  Every hook runs in Python between two
compiled calls, never inside a kernel, and reads copies of the parameters,
so callbacks do not change the model (a callback may only ask a stochastic
fit to stop after an epoch, by returning True from ``on_fit_task_end``).

With an older scikit-learn nothing is imported from ``sklearn.callback``,
``CallbackSupportMixin`` is an empty stand-in, and every hook is a no-op.
"""

from sklearn.utils import _safe_indexing

from ._validation import FULL_BATCH_SOLVERS

try:
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # scikit-learn < 1.9: no callback API
    HAS_CALLBACK_API = False

    class CallbackSupportMixin:
        """Stand-in for scikit-learn's mixin where the callback API is absent."""

else:
    HAS_CALLBACK_API = True


def init_fit_context(estimator, incremental):
    """Set up the callbacks and the root task of a fit or partial_fit call.

    Called before the estimator's snapshot is taken, so that a failed fit,
    which restores the snapshot, still has its callbacks torn down by
    scikit-learn's ``_fit_context``.  A no-op without callbacks, and on a
    second call within the same fit (classifier ``partial_fit`` calls it
    before ``_fit`` does).
    """
    if not HAS_CALLBACK_API or hasattr(estimator, "_callback_fit_ctx"):
        return
    if not (
        hasattr(estimator, "_skl_callbacks")
        or hasattr(estimator, "_parent_callback_ctx")
    ):
        return
    if estimator.solver in FULL_BATCH_SOLVERS:
        # One task per scipy iteration, plus the one begun after the last.
        max_subtasks = estimator.max_iter + 1
    else:
        max_subtasks = 1 if incremental else estimator.max_iter
    estimator._init_callback_context(max_subtasks=max_subtasks)


class FitHooks:
    """The callback hooks of one fit: the root task and one task per step.

    Every method is a no-op when the fit has no callback context.

    Parameters
    ----------
    estimator : BaseMultilayerPerceptron
    X, y : validated training data (``y`` as the user gave it, not encoded)
    sample_weight : ndarray or None
        The user's validated sample weights (None if not given), passed to
        the callbacks as metadata as scikit-learn does.

    """

    def __init__(self, estimator, X, y, sample_weight):
        self.estimator = estimator
        self.context = getattr(estimator, "_callback_fit_ctx", None)
        self.active = self.context is not None
        self.X = X
        self.y = y
        self.metadata = (
            None if sample_weight is None else {"sample_weight": sample_weight}
        )
        self._task_data = (X, y, self.metadata)
        self._task = None

    def fit_begin(self):
        """Begin the root task (after validation)."""
        if self.active:
            self.context.call_on_fit_task_begin(
                estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata
            )

    def fit_end(self):
        """End the root task; the estimator itself is the fitted model."""
        if self.active:
            self.context.call_on_fit_task_end(
                estimator=self.estimator,
                X=self.X,
                y=self.y,
                metadata=self.metadata,
                reconstruction_attributes={},
            )

    def restrict_to_rows(self, rows):
        """Report only ``rows`` as the steps' training data (early stopping)."""
        if not self.active:
            return
        metadata = self.metadata
        if metadata is not None:
            metadata = {"sample_weight": metadata["sample_weight"][rows]}
        self._task_data = (
            _safe_indexing(self.X, rows),
            _safe_indexing(self.y, rows),
            metadata,
        )

    def step_begin(self, task_name, params, layout):
        """Begin the task of one epoch or iteration, at parameters ``params``."""
        if not self.active:
            return
        self._task = self.context.subcontext(task_name=task_name)
        X, y, metadata = self._task_data
        self._task.call_on_fit_task_begin(
            estimator=self.estimator,
            X=X,
            y=y,
            metadata=metadata,
            reconstruction_attributes=lambda: _attributes(params, layout),
        )

    def step_end(self, params, layout):
        """End the current step's task; returns True if a callback asks to stop."""
        if not self.active or self._task is None:
            return False
        task, self._task = self._task, None
        X, y, metadata = self._task_data
        return bool(
            task.call_on_fit_task_end(
                estimator=self.estimator,
                X=X,
                y=y,
                metadata=metadata,
                reconstruction_attributes=lambda: _attributes(params, layout),
            )
        )

    def close_step(self):
        """End a begun task that never ran (the one after scipy's last iteration)."""
        if self.active and self._task is not None:
            task, self._task = self._task, None
            task.call_on_fit_task_end(estimator=self.estimator)


def _attributes(params, layout):
    """``coefs_``/``intercepts_`` of a copy of ``params``: a model as of now."""
    coefs, intercepts = layout.unpack(params.copy())
    return {"coefs_": coefs, "intercepts_": intercepts}
