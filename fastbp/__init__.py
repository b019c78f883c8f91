"""fastbp: JIT-compiled backpropagation for scikit-learn's MLP estimators."""

from ._display import TrainingCurveDisplay
from ._gradient_check import check_gradients
from ._multilayer_perceptron import MLPClassifier, MLPRegressor
from ._warm import warm_cache

__version__ = "0.1.0"

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "TrainingCurveDisplay",
    "__version__",
    "check_gradients",
    "warm_cache",
]
