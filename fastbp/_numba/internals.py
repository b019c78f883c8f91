"""Which numba internals fastbp may use in this process.

Every numba or llvmlite internal fastbp relies on is named in
:data:`INTERNALS`, with what it buys and how fastbp works without it.  Before
its first use the module that needs it asks :func:`usable`, which runs a check
that the internal still looks as expected (the attributes and classes it
touches exist, with the shape fastbp assumes).  Where the check fails (a numba
release changed it), fastbp warns once and takes numba's public path: the
same results, a slower first fit.

``FASTBP_NUMBA_PUBLIC_ONLY=1`` in the environment takes every public path but
``linking``'s at once, without warning (CI runs the test suite so); a
comma-separated list of names takes theirs only (CI runs the kernel tests
with ``linking``).
"""

import os
import warnings
from dataclasses import dataclass

import numba

_FORCED = os.environ.get("FASTBP_NUMBA_PUBLIC_ONLY", "").strip()
#: Take numba's public path for every internal but ``linking``
#: (``FASTBP_NUMBA_PUBLIC_ONLY=1``).  ``linking``'s public path is forced by
#: name only: together with ``compile_policy``'s, numba cannot cache the
#: kernels that call kernels (see ``calls.py``), so every process of such a
#: run would compile them again.
PUBLIC_ONLY = _FORCED == "1"
#: The internals whose public path is forced: all with ``1``, or those named
#: (comma-separated, e.g. ``FASTBP_NUMBA_PUBLIC_ONLY=cache,blas``, to measure
#: what one buys).
_PUBLIC = (
    {name.strip() for name in _FORCED.split(",")} if _FORCED not in ("", "0") else set()
)


@dataclass(frozen=True)
class Internal:
    """One internal: what it touches, what it buys (measured), the public path."""

    uses: str
    buys: str
    instead: str


#: Every internal fastbp uses.  Gains were measured on the 2-core machines
#: fastbp is developed on (numba 0.68.1): whole processes that import, fit
#: digits for 50 epochs and predict, with the internal's public path forced
#: (``FASTBP_NUMBA_PUBLIC_ONLY=<name>``), alternated with the intact code,
#: median of 3; "cold" is an empty cache (intact: 4.0 s), "warm" a full one
#: (intact: 1.50 s, scikit-learn's 1.50 s).
INTERNALS = {
    "compile_policy": Internal(
        "numba's CPU target options _nrt, no_cpython_wrapper and "
        "no_cfunc_wrapper, config._OptLevel switched per kernel, and the "
        "dispatcher's compile method wrapped (see compile.py)",
        "cold process 1.8 s shorter (5.8 s public), warm 0.30 s: no "
        "reference counting or unused entry wrappers, -O1 for orchestrators, "
        "no garbage collection during compilation",
        "numba.njit(cache=True) with public options only",
    ),
    "cache": Internal(
        "numba's FunctionCache, CompileResultCacheImpl and its locators, "
        "IndexDataCacheFile, Cache._load_overload, Dispatcher._cache "
        "(see cache.py)",
        "warm process 0.23 s shorter (loads without numba's registry "
        "refresh); no crash when two processes fill one cache (locked "
        "saves), one key for all kernel modules, read-only caches built "
        "ahead, damaged entries and failed saves survived",
        "numba's own cache as cache=True sets it up",
    ),
    "linking": Internal(
        "CodeLibrary._reload_init, llvmlite.binding.add_symbol, numba's "
        "calling convention, in intrinsics (see linking.py)",
        "a first fit's compilation 2.8-3.2 s instead of 14.4-14.6 s (16 "
        "compilations instead of 77), the same for a first float32 fit: "
        "each kernel compiled once instead of into every caller, only the "
        "activations and losses a network uses; the chunks and blocks of a "
        "batch run in parallel; warm processes the same",
        "plain numba calls (every callee compiled into its callers), "
        "activations, losses and products chosen by code, and the chunks "
        "and blocks of a batch run one after another",
    ),
    "blas": Internal(
        "numba's numba_xxgemm helper, declared with untyped pointers (see gemm.py)",
        "cold process 0.6 s shorter (4.6 s public), warm 0.12 s: one gemm "
        "function for both dtypes, no view or contiguity checks compiled "
        "into the kernels",
        "np.dot on views of the flat buffers",
    ),
    "openblas": Internal(
        "OpenBLAS's exported blas_cpu_number, blas_server_avail and "
        "blas_thread_shutdown_ in the libraries listed by /proc/self/maps "
        "(see blas_pools.py)",
        "no threadpoolctl scan of every loaded library (~30 ms of a first "
        "fit; processes within 0.05 s of the public path); the OpenBLAS "
        "workers a user's last product left spinning are stopped (a digits "
        "fit right after a 300x300 product ran its first ~0.1 s at 7.0 "
        "instead of 3.0 ms/epoch)",
        "threadpoolctl limits every BLAS library to one thread during kernel "
        "calls; no pool is stopped",
    ),
}

_usable = {}


def forced(name):
    """Whether ``FASTBP_NUMBA_PUBLIC_ONLY`` forces the public path of ``name``."""
    return (PUBLIC_ONLY and name != "linking") or name in _PUBLIC


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
                internal = INTERNALS[name]
                warnings.warn(
                    f"fastbp: numba {numba.__version__} no longer has the "
                    f"internals fastbp expects for {name!r} ({internal.uses}); "
                    f"using {internal.instead} instead: same results, slower "
                    "first fits.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        _usable[name] = ok
    return ok
