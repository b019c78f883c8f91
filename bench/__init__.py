"""fastbp's benchmarks: one case registry, a pytest-benchmark suite, a report.

* :mod:`bench.cases`    the registry of benchmark cases (data, estimator
  parameters, dtype, epochs), shrunk by ``FASTBP_BENCH_SMOKE=1``;
* :mod:`bench.runners`  how each implementation (fastbp, scikit-learn, PyTorch)
  is trained and timed, the GEMM reference rate (and the rate of a network's
  own products alone), the FLOP accounting and the whole processes (with the
  no-work ``dummy`` floor of the grid search);
* :mod:`bench.test_bench` the pytest-benchmark suite (``pytest bench``);
* :mod:`bench.report`   ``python -m bench.report``: the side-by-side table and
  the scaling plot.
"""
