"""Every compiled entry Python can call refuses bad arrays; none crashes.

The three kernels fastbp calls from Python (``run_epoch``, ``loss_grad``,
``predict_rows``) are called here with the arguments a real fit passed them,
each array in turn replaced by one of another dtype, another shape or a
non-contiguous view, and with out-of-range values.  Compiled code does no
bounds checks, so a case that reached a kernel could crash the process: the
cases run in a child process, which names each case before trying it.
"""

import json
import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent(
    """
    import json, sys, warnings

    import numpy as np
    import scipy.sparse as sp

    import fastbp
    from fastbp import _network
    from fastbp._kernels import epoch as _epoch, full_batch as _full_batch

    ENTRIES = {
        "run_epoch": (_epoch, "run_epoch"),
        "loss_grad": (_full_batch, "loss_grad"),
        "predict_rows": (_network, "predict_rows"),
    }
    captured = {}


    def capture(name, kernel):
        def record(*args):
            captured.setdefault(name, args)
            return kernel(*args)

        return record


    originals = {name: getattr(mod, attr) for name, (mod, attr) in ENTRIES.items()}
    for name in ("loss_grad", "predict_rows"):
        mod, attr = ENTRIES[name]
        setattr(mod, attr, capture(name, originals[name]))
    # The epoch runner checks its bundle once and calls the kernel itself.
    epoch_kernel = originals["run_epoch"].kernel
    originals["run_epoch"].kernel = capture("run_epoch", epoch_kernel)

    rng = np.random.RandomState(0)
    X = rng.standard_normal((300, 5))
    y = np.arange(300) % 3
    if sys.argv[1] == "sparse":
        X = sp.csr_matrix(np.where(X > 0.5, X, 0.0))
    kw = dict(hidden_layer_sizes=(6, 4), activation=sys.argv[2], max_iter=2,
              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fastbp.MLPClassifier(dropout=float(sys.argv[3]), **kw).fit(X, y).predict(X)
        fastbp.MLPClassifier(solver="lbfgs", **kw).fit(X, y)
    for name, (mod, attr) in ENTRIES.items():
        setattr(mod, attr, originals[name])
    originals["run_epoch"].kernel = epoch_kernel


    def arrays(value, path=()):
        # Every array in an argument list, with its path through the bundles.
        if isinstance(value, np.ndarray):
            yield path, value
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                yield from arrays(item, (*path, i))


    def replace(value, path, new):
        if not path:
            return new
        items = list(value)
        items[path[0]] = replace(value[path[0]], path[1:], new)
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)


    OTHER_DTYPE = {"f8": np.float32, "f4": np.float64, "i8": np.int32,
                   "u8": np.int64, "b1": np.int8}
    ROW_LISTS = {"run_epoch": [(1,)], "loss_grad": [(3,)]}  # fewer rows are valid


    def mutations(name, args):
        for path, a in arrays(args):
            label = "/".join(map(str, path))
            other = a.astype(OTHER_DTYPE[a.dtype.str[1:]])
            yield f"{label} dtype", replace(args, path, other)
            yield f"{label} ndim", replace(args, path, a[None])
            if a.ndim and a.shape[-1] > 1:
                strided = np.repeat(a, 2, axis=-1)[..., ::2]
                if not strided.flags.c_contiguous:  # an empty view is
                    yield f"{label} strided", replace(args, path, strided)
            if a.ndim and a.shape[0] and path not in ROW_LISTS.get(name, ()):
                half = a[: a.shape[0] // 2].copy()
                yield f"{label} shorter", replace(args, path, half)


    def values(name, args):
        lead = (0,) if name == "run_epoch" else ()

        def at(*path):
            return (*lead, *path)

        data, net = (args[0][0], args[0][1]) if name == "run_epoch" else args[:2]
        rows_path = {"run_epoch": (1,), "loss_grad": (3,), "predict_rows": (3,)}[name]
        n = len(args[rows_path[0]]) if name != "run_epoch" else len(args[1])
        rows = args[rows_path[0]]
        yield "row index too large", replace(args, rows_path, rows + n + 1000)
        yield "negative row index", replace(args, rows_path, rows - n - 1)
        yield "bogus activation address", replace(
            args, at(1, 3), net.act_forward + 8)
        yield "bogus loss address", replace(args, at(1, 6), np.int64(12345))
        yield "bogus product address", replace(args, at(1, 8), np.int64(-1))
        yield "coefficients beyond the parameters", replace(
            args, at(1, 1), net.coef_off + 10**6)
        yield "layer sizes beyond the parameters", replace(
            args, at(1, 0), net.layer_units * 100)
        if data.is_sparse:
            indices = data.X_indices.copy()
            indices[0] = 10**6
            yield "sparse column out of range", replace(args, at(0, 2), indices)
            indptr = data.X_indptr.copy()
            indptr[1], indptr[2] = indptr[2] + 5, indptr[1]
            yield "decreasing indptr", replace(args, at(0, 3), indptr)
        if name == "run_epoch":
            yield "batch larger than the workspace", replace(args, (2,), 10**6)
            yield "more chunks than the workspace", replace(args, (3,), 1000)
            yield "no chunk", replace(args, (3,), 0)
            yield "both optimizers", replace(args, (5,), True)
        if name == "loss_grad":
            yield "more rows than the workspace", replace(
                args, (3,), np.repeat(args[3], 100))
            yield "more chunks than the workspace", replace(args, (5,), 1000)
        if name == "predict_rows":
            yield "hi beyond the rows", replace(args, (5,), 10**6)
            yield "lo after hi", replace(args, (4,), args[5] + 1)
            yield "blocks larger than the workspace", replace(args, (6,), 10**6)
            yield "workspace offsets beyond it", replace(args, (8,), args[8] + 10**6)


    results = []
    for name, args in captured.items():
        kernel = originals[name]
        kernel(*args)  # the captured arguments themselves are valid
        for case, bad in (*mutations(name, args), *values(name, args)):
            # Named before it runs: if the process dies, the parent says which.
            print(json.dumps([name, case, None]), flush=True)
            try:
                kernel(*bad)
                outcome = "no exception"
            except (TypeError, ValueError) as exc:
                outcome = type(exc).__name__
            except Exception as exc:
                outcome = f"unexpected {type(exc).__name__}: {exc}"
            print(json.dumps([name, case, outcome]), flush=True)
    """
)


@pytest.mark.parametrize(
    "kind, activation, dropout",
    [("dense", "relu", 0.0), ("sparse", "gelu", 0.2)],
)
def test_compiled_entries_refuse_bad_arrays_without_crashing(kind, activation, dropout):
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, activation, str(dropout)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    last = lines[-1] if lines else None
    assert done.returncode == 0, (
        f"child died ({done.returncode}) at {last}: {done.stderr[-2000:]}"
    )
    outcomes = {(name, case): outcome for name, case, outcome in lines if outcome}
    assert {name for name, _ in outcomes} == {"run_epoch", "loss_grad", "predict_rows"}
    assert len(outcomes) > 150
    wrong = {
        key: o for key, o in outcomes.items() if o not in ("TypeError", "ValueError")
    }
    assert not wrong
