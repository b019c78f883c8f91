"""fastbp: JIT-compiled backpropagation for scikit-learn's MLP estimators."""

from ._multilayer_perceptron import MLPClassifier, MLPRegressor

__version__ = "0.1.0"

__all__ = ["MLPClassifier", "MLPRegressor", "__version__"]
