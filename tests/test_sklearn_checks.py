"""scikit-learn's estimator contract, with no expected failures."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastbp

# A few epochs, as scikit-learn's own test_common does for its MLP: the checks
# are about the API contract, not convergence, so ConvergenceWarning is noise.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks(
    [fastbp.MLPClassifier(max_iter=100), fastbp.MLPRegressor(max_iter=100)]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
