"""The package's layout: numba's internals live in ``fastbp._numba`` only.

Every numba, llvmlite or OpenBLAS internal fastbp uses sits in one
subpackage, checked before use, with numba's public path where the check
fails (``fastbp._numba.internals``).  These tests read the source (nothing
else says where an import or an attribute access happens) and force the
checks to fail in child processes.
"""

import ast
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp
from fastbp._numba import internals

PACKAGE = os.path.dirname(os.path.abspath(fastbp.__file__))
#: Modules and packages of numba's that are not its public API.
PRIVATE_MODULES = ("numba.core", "numba.np", "numba.misc", "numba._", "llvmlite")


def _outside_modules():
    """Every module of fastbp outside ``fastbp._numba``."""
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d not in ("_numba", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, PACKAGE), ast.parse(f.read(), path)


def _root(node):
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _violations(tree):
    """Imports of numba's non-public modules and its underscore attributes."""
    numba_names = {"numba", "llvmlite"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PRIVATE_MODULES):
                    found.append((node.lineno, f"import {alias.name}"))
                if alias.name.split(".")[0] in numba_names:
                    numba_names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith(PRIVATE_MODULES):
                found.append((node.lineno, f"from {node.module} import ..."))
            if node.module.split(".")[0] in numba_names:
                numba_names.update(a.asname or a.name for a in node.names)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and _root(node) in numba_names
        ):
            found.append((node.lineno, f"{_root(node)}...{node.attr}"))
        elif isinstance(node, ast.keyword) and node.arg == "_nrt":
            found.append((node.lineno, "_nrt="))
    return found


def test_no_module_outside_the_internals_package_reaches_into_numba():
    found = {name: _violations(tree) for name, tree in _outside_modules()}
    assert not {name: v for name, v in found.items() if v}, found


def test_the_layout_check_finds_what_it_looks_for():
    planted = textwrap.dedent(
        """
        import numba
        import llvmlite.binding as ll
        from numba.core import types
        from numba import config as c
        x = numba.config._OptLevel
        y = c._OptLevel
        numba.njit(_nrt=False)
        """
    )
    assert [line for line, _ in _violations(ast.parse(planted))] == [3, 4, 6, 7, 8]


def test_every_internal_says_what_it_buys_and_what_replaces_it():
    for name, internal in internals.INTERNALS.items():
        assert internal.uses.endswith(".py)"), name  # where it is used
        assert re.search(r"\d+(\.\d+)? m?s\b", internal.buys), name  # measured
        assert len(internal.instead) > 20, name  # every one has a public path


_BROKEN = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np

    which = sys.argv[1]
    if which == "blas":  # numba's helper takes one more argument
        from numba import types
        from numba.np.linalg import _BLAS
        declared = _BLAS.numba_xxgemm
        _BLAS.numba_xxgemm = classmethod(lambda cls, dtype: types.ExternalFunction(
            "numba_xxgemm", types.intc(*declared(dtype).sig.args, types.intp)))
    elif which == "compile_policy":
        from numba.core import config
        del config._OptLevel
    elif which == "cache":
        from numba.core.caching import CompileResultCacheImpl as impl
        impl._locator_classes = tuple(impl._locator_classes)
    elif which == "linking":  # numba's code libraries lost their _reload_init
        from numba.core.codegen import JITCodeLibrary
        for cls in JITCodeLibrary.__mro__:
            init = vars(cls).get("__init__")
            names = getattr(getattr(init, "__code__", None), "co_names", ())
            if "_reload_init" in names:
                cls.__init__ = (lambda f: lambda self, *a, **k: f(self, *a, **k))(init)
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(300, 5)), np.arange(300) % 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", "Stochastic Optimizer")
        try:
            import fastbp
        except ImportError as exc:
            print(json.dumps({"import_error": str(exc)}))
            sys.exit()
        from fastbp._numba import internals

        model = fastbp.MLPClassifier(hidden_layer_sizes=(7,), max_iter=5,
                                     random_state=0).fit(X, y)
        model.predict_proba(X)
    print(json.dumps({
        "usable": internals._usable,
        "warnings": [str(w.message) for w in caught],
        "coefs": [c.tolist() for c in model.coefs_],
    }))
    """
)


def _child(which, tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("FASTBP_NUMBA_PUBLIC_ONLY", None)
    root = os.path.dirname(PACKAGE)
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _BROKEN, which], capture_output=True,
                         text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("which", ["blas", "compile_policy", "cache", "linking"])
def test_a_changed_internal_falls_back_to_numbas_public_path(which, tmp_path):
    # As if a numba release had changed the internal: one warning naming
    # it, numba's public path, the model of the intact process.  Both
    # processes share one cache: code compiled on one path is never loaded
    # on the other (linked code loaded where tables hold codes crashed).
    intact, broken = _child("nothing", tmp_path), _child(which, tmp_path)
    assert not intact["warnings"] and all(intact["usable"].values()), intact
    assert broken["usable"][which] is False, broken
    (warning,) = broken["warnings"]
    assert f"for {which!r}" in warning, warning
    for a, b in zip(intact["coefs"], broken["coefs"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
