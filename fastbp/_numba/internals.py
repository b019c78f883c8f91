"""Which numba internals fastbp may use in this process.

Every numba or llvmlite internal fastbp relies on is named in
:data:`INTERNALS`, with what it buys and how fastbp works without it.  Before
its first use the module that needs it asks :func:`usable`, which runs a check
that the internal still looks as expected (the attributes and classes it
touches exist, with the shape fastbp assumes).  Where the check fails (a numba
release changed it), fastbp warns once and takes numba's public path: the
same results, a slower first fit.

``FASTBP_NUMBA_PUBLIC_ONLY=1`` in the environment takes every public path at
once, without warning (CI runs the test suite so); a comma-separated list of
names takes theirs only.
"""

import os
import warnings

import numba

_FORCED = os.environ.get("FASTBP_NUMBA_PUBLIC_ONLY", "").strip()
#: Take numba's public path for every internal (``FASTBP_NUMBA_PUBLIC_ONLY=1``).
PUBLIC_ONLY = _FORCED == "1"
#: The internals whose public path is forced: all with ``1``, or those named
#: (comma-separated, e.g. ``FASTBP_NUMBA_PUBLIC_ONLY=cache,blas``, to measure
#: what one buys).
_PUBLIC = (
    {name.strip() for name in _FORCED.split(",")} if _FORCED not in ("", "0") else set()
)

#: name -> (what it uses and buys; what fastbp does without it, or None where
#: fastbp cannot work without it: :func:`require`).
INTERNALS = {
    "compile_policy": (
        "numba's CPU target options _nrt, no_cpython_wrapper and "
        "no_cfunc_wrapper, config._OptLevel switched per kernel, and the "
        "dispatcher's compile method wrapped (cache attached at first "
        "compile, collector paused): see compile.jit",
        "numba.njit(cache=True) with public options only",
    ),
    "cache": (
        "numba's IndexDataCacheFile, its _source_stamp, Cache._load_overload: "
        "an inter-process lock on saves, one key for all kernel modules, loads "
        "without numba's registry refresh: see cache.py",
        "numba's own cache as cache=True sets it up",
    ),
    "linking": (
        "CodeLibrary._reload_init, llvmlite.binding.add_symbol, numba's "
        "calling convention and array structs, in intrinsics: kernels calling "
        "kernels by symbol or address (calls.py), parallel_for's one launcher "
        "(parallel.py), float arrays as bytes (erased.py)",
        None,  # no public path yet: the plain typed kernels will replace them
    ),
    "blas": (
        "numba's numba_xxgemm helper called at raw addresses: one gemm "
        "function for both dtypes: see gemm.py",
        "np.dot on views of the flat buffers",
    ),
    "openblas": (
        "OpenBLAS's exported blas_cpu_number, blas_server_avail and "
        "blas_thread_shutdown_, in the loaded libraries found from "
        "/proc/self/maps: the kernels' BLAS set to one thread without "
        "threadpoolctl's scan of every loaded library (~30 ms of each "
        "process's first fit), and the OpenBLAS workers a user's last product "
        "left spinning stopped before a kernel runs (a digits fit right after "
        "a 300x300 product ran its first ~0.1 s at 7.0 instead of 3.0 "
        "ms/epoch): see blas_pools.py",
        "threadpoolctl limits every BLAS library to one thread during kernel "
        "calls; no pool is stopped",
    ),
}

_usable = {}


def forced(name):
    """Whether ``FASTBP_NUMBA_PUBLIC_ONLY`` forces the public path of ``name``."""
    return PUBLIC_ONLY or name in _PUBLIC


def usable(name, check):
    """Whether the internal ``name`` (a key of :data:`INTERNALS`) may be used.

    ``check()`` runs once per process (never where the public path is
    forced by ``FASTBP_NUMBA_PUBLIC_ONLY``); when
    it returns False or raises, fastbp warns once with a
    ``RuntimeWarning`` and the caller takes the public path.
    """
    ok = _usable.get(name)
    if ok is None:
        ok = False
        if not forced(name):
            try:
                ok = bool(check())
            except Exception:  # an internal that changed shape: public path
                ok = False
            if not ok:
                what, instead = INTERNALS[name]
                warnings.warn(
                    f"fastbp: numba {numba.__version__} no longer has the "
                    f"internals fastbp expects for {name!r} ({what}); using "
                    f"{instead} instead: same results, slower first fits.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        _usable[name] = ok
    return ok


def require(name, check):
    """Raise ``ImportError`` unless the internal ``name`` looks as expected.

    For the internals fastbp has no public path for yet (``None`` in
    :data:`INTERNALS`): a numba release that changed them fails at import,
    with a message, instead of in compiled code.  Checked even under
    :data:`PUBLIC_ONLY`.
    """
    try:
        ok = bool(check())
    except Exception:  # an internal that changed shape
        ok = False
    if not ok:
        raise ImportError(
            f"fastbp does not support numba {numba.__version__}: its internals "
            f"for {name!r} ({INTERNALS[name][0]}) are not as fastbp expects. "
            "Install a numba version within fastbp's declared range."
        )
