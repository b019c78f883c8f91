"""The documentation is tested code.

* Every ```python block of every page in ``docs/`` runs, the blocks of one
  page in order in one namespace (other fences, e.g. ```bash or ```text, are
  for what cannot run here).
* Every example in the public docstrings runs as a doctest.
* Every example of the gallery (``docs/examples/plot_*.py``) is run by the
  docs build (sphinx-gallery; CI builds with warnings as errors, and a failing
  example fails the build); here it is only checked that each one will run
  and is linked.
* The formulas of ``docs/backprop.md`` are checked against the kernels: the
  activation table and the loss table are parsed from the page, their numpy
  expressions evaluated, and compared with the compiled forward, derivative
  and loss kernels and with central differences.
"""

import doctest
import pathlib
import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.special import ndtr, xlogy  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastbp  # noqa: E402
from fastbp import (  # noqa: E402
    _display,
    _gradient_check,
    _multilayer_perceptron,
    _warm,
)
from fastbp._kernels import activations as _activations  # noqa: E402
from fastbp._kernels import losses as _losses  # noqa: E402
from fastbp._numba import call_at  # noqa: E402

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
BACKPROP = DOCS / "backprop.md"

FENCE = re.compile(r"^(```+)([^\n`]*)\n(.*?)^\1[ \t]*$", re.DOTALL | re.MULTILINE)
#: Fence languages that look like Python but would silently not be run.
UNRUN_PYTHON = {"py", "python3", "pycon", "ipython", "{code-block} python"}


def _fences(path):
    """``(language, body)`` of every fenced block of a page, in order."""
    text = path.read_text(encoding="utf-8")
    return [(m.group(2).strip(), m.group(3)) for m in FENCE.finditer(text)]


PAGES = sorted(DOCS.glob("*.md"))
PAGES_WITH_CODE = [p for p in PAGES if any(lang == "python" for lang, _ in _fences(p))]


# --------------------------------------------------------------------------- #
# (a) Code blocks of the pages
# --------------------------------------------------------------------------- #
def test_pages_found():
    names = {p.name for p in PAGES}
    assert {"index.md", "backprop.md", "user-guide.md", "api.md"} <= names
    assert "backprop.md" in {p.name for p in PAGES_WITH_CODE}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_python_block_escapes_the_tests(page):
    """Python must be fenced as ```python to run; anything else is not Python."""
    for lang, _ in _fences(page):
        assert lang not in UNRUN_PYTHON, (
            f"{page.name}: a ```{lang} block would not be run by the tests; "
            "fence it as ```python (or ```text for output)"
        )


#: Pages whose examples need an optional module (skipped without it).
PAGE_REQUIRES = {"callbacks.md": ["sklearn.callback", "rich"]}


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_page_code_blocks_run(page, tmp_path, monkeypatch):
    """Run a page's ```python blocks in order, sharing one namespace."""
    for module in PAGE_REQUIRES.get(page.name, []):
        pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)  # examples may write files (models, plots)
    namespace = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    blocks = [body for lang, body in _fences(page) if lang == "python"]
    try:
        for k, body in enumerate(blocks, 1):
            code = compile(body, f"{page.name}[python block {k}]", "exec")
            with warnings.catch_warnings():
                # The examples stop training after a few epochs on purpose.
                warnings.simplefilter("ignore", ConvergenceWarning)
                exec(code, namespace)
    finally:
        plt.close("all")


# --------------------------------------------------------------------------- #
# (a') The example gallery
# --------------------------------------------------------------------------- #
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))


def _sphinx_conf():
    namespace = {"__file__": str(DOCS / "conf.py")}
    exec(
        compile((DOCS / "conf.py").read_text(encoding="utf-8"), "conf.py", "exec"),
        namespace,
    )
    return namespace


def test_every_page_is_in_the_index():
    """Each page is reachable from the index's table of contents."""
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    toctree = index.split("```{toctree}", 1)[1].split("```", 1)[0]
    entries = {line.strip() for line in toctree.splitlines()}
    for page in PAGES:
        if page.name != "index.md":
            assert page.stem in entries, f"{page.name} is not in index.md's toctree"


def test_gallery_runs_every_example():
    conf = _sphinx_conf()
    assert "sphinx_gallery.gen_gallery" in conf["extensions"]
    gallery = conf["sphinx_gallery_conf"]
    assert gallery["examples_dirs"] == "examples"
    assert gallery.get("plot_gallery", True) in (True, "True")
    assert not gallery.get("only_warn_on_example_error", False)
    assert len(EXAMPLES) >= 6
    pattern = re.compile(gallery["filename_pattern"])
    for example in EXAMPLES:
        # sphinx-gallery runs a file when the pattern matches its path.
        assert pattern.search(str(example)), f"{example.name} would not be run"
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    assert "auto_examples/index" in index


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_gallery_example_is_well_formed(example):
    """A title in the docstring, valid Python, and no pyplot window of its own."""
    source = example.read_text(encoding="utf-8")
    compile(source, example.name, "exec")
    docstring = source.split('"""')[1].strip().splitlines()
    assert docstring[0].startswith("=") and docstring[2].startswith("=")
    assert "plt.show()" not in source  # sphinx-gallery collects the figures


# --------------------------------------------------------------------------- #
# (b) Docstring examples
# --------------------------------------------------------------------------- #
DOCTEST_MODULES = [fastbp, _multilayer_perceptron, _gradient_check, _display, _warm]
PUBLIC = {
    "MLPClassifier": fastbp.MLPClassifier,
    "MLPRegressor": fastbp.MLPRegressor,
    "check_gradients": fastbp.check_gradients,
    "TrainingCurveDisplay": fastbp.TrainingCurveDisplay,
    "warm_cache": fastbp.warm_cache,
}


def _docstring_tests():
    finder = doctest.DocTestFinder(recurse=True, exclude_empty=True)
    found = {}
    for module in DOCTEST_MODULES:
        for test in finder.find(module):
            if test.examples:
                found[test.name] = test
    return [found[name] for name in sorted(found)]


DOCSTRING_TESTS = _docstring_tests()


def test_docstring_examples_exist():
    names = [t.name for t in DOCSTRING_TESTS]
    assert sum(len(t.examples) for t in DOCSTRING_TESTS) > 0
    for public in PUBLIC:
        assert any(n.split(".")[-1] == public or f".{public}." in n for n in names), (
            f"{public} has no docstring example"
        )


@pytest.mark.parametrize("test", DOCSTRING_TESTS, ids=lambda t: t.name)
def test_docstring_example(test):
    runner = doctest.DocTestRunner(
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    )
    report = []
    globs = dict(test.globs)
    test = doctest.DocTest(
        test.examples, globs, test.name, test.filename, test.lineno, test.docstring
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            result = runner.run(test, out=report.append, clear_globs=True)
    finally:
        plt.close("all")
    assert result.attempted > 0
    assert result.failed == 0, "".join(report)


# --------------------------------------------------------------------------- #
# (c) The backprop page's tables against the kernels
# --------------------------------------------------------------------------- #
def _table(path, header_marker):
    """Rows (lists of cells, backticks stripped) of the table whose header
    contains ``header_marker``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    headers = [
        k
        for k, line in enumerate(lines)
        if line.startswith("|") and header_marker in line
    ]
    assert len(headers) == 1, f"no single table with {header_marker!r} in {path.name}"
    rows = []
    for line in lines[headers[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(
            [c[1:-1] if c.startswith("`") and c.endswith("`") else c for c in cells]
        )
    return rows


def _activation_table():
    rows = _table(BACKPROP, "derivative `f'(z)` from `y = f(z)`")
    return {
        name: (forward, derivative, needs_z == "yes")
        for name, forward, derivative, needs_z in rows
    }


def _loss_table():
    rows = _table(BACKPROP, "output activation `yhat = g(z)`")
    return {name: (g, loss, dl_dz) for name, _, g, loss, dl_dz in rows}


def _Phi(z):
    return ndtr(z)


def _phi(z):
    return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)


def _evaluate(expr, **names):
    value = eval(
        expr,
        {"__builtins__": {}},
        {"np": np, "Phi": _Phi, "phi": _phi, "xlogy": xlogy, **names},
    )
    return np.broadcast_to(
        np.asarray(value, dtype=np.float64), next(iter(names.values())).shape
    )


# The activation and loss kernels run as the training kernels run them: from
# compiled code, called at the address a network holds (fastbp._numba.call_at).
_FORWARD = _activations.FORWARD.prototype
_DERIVATIVE = _activations.DERIVATIVE.prototype
_OUTPUT = _losses.OUTPUT.prototype
_DELTA = _losses.DELTA.prototype


@numba.njit
def _call_forward(address, z, zpre):
    call_at(address, _FORWARD, (z, zpre))


@numba.njit
def _call_derivative(address, y, zpre, delta):
    call_at(address, _DERIVATIVE, (y, zpre, delta))


@numba.njit
def _call_output(address, z, n_out):
    call_at(address, _OUTPUT, (z, n_out))


@numba.njit
def _call_delta(address, z, n_out, Y, sample_weight, rows, delta):
    return call_at(address, _DELTA, (z, n_out, Y, sample_weight, rows, delta, False))


def _kernel_forward(code, Z):
    """The forward kernel on ``Z`` as one flat block (how the kernels call it)."""
    Y = Z.copy()
    Zpre = np.empty_like(Z)
    address = _activations.FORWARD.address(code, Z.dtype)
    _call_forward(address, Y.reshape(-1), Zpre.reshape(-1))
    return Y, Zpre


def _kernel_derivative(code, Y, Zpre):
    delta = np.ones_like(Y)
    address = _activations.DERIVATIVE.address(code, Y.dtype)
    _call_derivative(address, Y.reshape(-1), Zpre.reshape(-1), delta.reshape(-1))
    return delta


def _kernel_loss(code, Z, m, Y, w, rows, delta):
    """The loss kernel (plain value) on ``Z`` as one flat block."""
    address = _losses.DELTA.address(code, Z.dtype)
    return _call_delta(address, Z.reshape(-1), m, Y, w, rows, delta.reshape(-1))


#: Pre-activations: a grid over the working range, the kink at 0 included.
Z_GRID = np.concatenate([np.linspace(-6.0, 6.0, 241), [0.0, 1e-3, -1e-3]]).reshape(
    -1, 4
)


def test_activation_table_lists_every_activation():
    table = _activation_table()
    assert set(table) == set(_activations.HIDDEN_ACTIVATIONS)
    needs_z = {name for name, (_, _, needs) in table.items() if needs}
    assert needs_z == set(_activations.NEEDS_PREACTIVATION)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(_activations.HIDDEN_ACTIVATIONS))
def test_activation_table_matches_kernels(name, dtype):
    forward, derivative, needs_z = _activation_table()[name]
    code = _activations.HIDDEN_ACTIVATIONS[name]
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    atol = 1e-15 if dtype == np.float64 else 1e-7
    Z = Z_GRID.astype(dtype)

    Y, Zpre = _kernel_forward(code, Z)
    assert Y.dtype == dtype
    np.testing.assert_allclose(
        Y, _evaluate(forward, z=Z.astype(np.float64)), rtol=rtol, atol=atol
    )

    # The documented derivative, from the cached output only (``z`` is not
    # even defined unless the table says it is needed).
    names = {"y": Y.astype(np.float64)}
    if needs_z:
        names["z"] = Z.astype(np.float64)
    documented = _evaluate(derivative, **names)
    if not needs_z:
        Zpre = np.empty(0, dtype=dtype)  # what the kernels pass
    kernel = _kernel_derivative(code, Y, Zpre)
    assert kernel.dtype == dtype
    np.testing.assert_allclose(kernel, documented, rtol=rtol, atol=10 * atol)


#: Activations whose forward has a kink at 0 (central differences straddle it).
KINKED = {"relu", "leaky_relu", "elu"}


@pytest.mark.parametrize("name", sorted(_activations.HIDDEN_ACTIVATIONS))
def test_activation_derivative_is_the_derivative_of_the_forward(name):
    """The table's derivative against central differences of the forward kernel."""
    _, derivative, needs_z = _activation_table()[name]
    code = _activations.HIDDEN_ACTIVATIONS[name]
    Z = Z_GRID.copy()
    if name in KINKED:
        Z = np.where(np.abs(Z) < 1e-2, 0.5, Z)
    h = 1e-6
    plus, _ = _kernel_forward(code, Z + h)
    minus, _ = _kernel_forward(code, Z - h)
    finite_diff = (plus - minus) / (2 * h)
    Y, _ = _kernel_forward(code, Z)
    names = {"y": Y, "z": Z} if needs_z else {"y": Y}
    np.testing.assert_allclose(
        _evaluate(derivative, **names), finite_diff, rtol=1e-6, atol=1e-8
    )


def test_loss_table_lists_every_loss():
    table = _loss_table()
    assert set(table) == set(_losses.LOSSES)
    for _, _, dl_dz in table.values():
        assert dl_dz == "yhat - y"


def _targets(name, rng, n, m):
    if name == "log_loss":
        return np.eye(m)[rng.randint(m, size=n)]  # one-hot: rows sum to one
    if name == "binary_log_loss":
        return rng.randint(2, size=(n, m)).astype(np.float64)
    if name == "poisson":
        return rng.poisson(1.5, size=(n, m)).astype(np.float64)  # zeros included
    return rng.normal(size=(n, m))


@pytest.mark.parametrize("name", sorted(_losses.LOSSES))
def test_matched_output_delta_is_yhat_minus_y(name):
    """``dl/dz = yhat - y`` for the documented loss, and the kernel agrees."""
    g, loss, dl_dz = _loss_table()[name]
    code = _losses.LOSSES[name]
    rng = np.random.RandomState(0)
    n, m = 12, 3
    Z = rng.normal(scale=2.0, size=(n, m))
    Y = _targets(name, rng, n, m)
    w = rng.uniform(0.5, 2.0, size=n)
    h = 1e-6

    def doc_loss(z, y):
        return float(
            eval(loss, {"__builtins__": {}}, {"np": np, "xlogy": xlogy, "z": z, "y": y})
        )

    yhat = np.array([_evaluate(g, z=Z[i]) for i in range(n)])
    documented_delta = np.array(
        [_evaluate(dl_dz, yhat=yhat[i], y=Y[i]) for i in range(n)]
    )
    # The claim itself: central differences of the documented loss.
    finite_diff = np.empty_like(Z)
    for i in range(n):
        for j in range(m):
            e = np.zeros(m)
            e[j] = h
            finite_diff[i, j] = (
                doc_loss(Z[i] + e, Y[i]) - doc_loss(Z[i] - e, Y[i])
            ) / (2 * h)
    np.testing.assert_allclose(finite_diff, documented_delta, rtol=1e-6, atol=1e-8)

    # The kernel: same loss, same prediction, delta = w * (yhat - y).
    rows = np.arange(n, dtype=np.int64)
    Zk = Z.copy()
    delta = np.empty_like(Z)
    loss_sum = _kernel_loss(code, Zk, m, Y, w, rows, delta)
    expected_sum = sum(w[i] * doc_loss(Z[i], Y[i]) for i in range(n))
    np.testing.assert_allclose(loss_sum, expected_sum, rtol=1e-12)
    np.testing.assert_allclose(Zk, yhat, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        delta, w[:, None] * documented_delta, rtol=1e-12, atol=1e-14
    )
    Zp = Z.copy()
    _call_output(_losses.OUTPUT.address(code, Zp.dtype), Zp.reshape(-1), m)
    np.testing.assert_allclose(Zp, yhat, rtol=1e-12, atol=1e-15)

    # And the kernel's delta is the gradient of the kernel's own loss.
    def kernel_loss(Zin):
        return _kernel_loss(code, Zin.copy(), m, Y, w, rows, np.empty(Zin.size))

    kernel_fd = np.empty_like(Z)
    for i in range(n):
        for j in range(m):
            E = np.zeros_like(Z)
            E[i, j] = h
            kernel_fd[i, j] = (kernel_loss(Z + E) - kernel_loss(Z - E)) / (2 * h)
    np.testing.assert_allclose(kernel_fd, delta, rtol=1e-5, atol=1e-7)
