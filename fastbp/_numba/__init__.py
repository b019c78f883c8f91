"""Everything fastbp asks of numba, llvmlite and OpenBLAS beyond plain ``njit``.

The kernels (the modules of :mod:`fastbp._kernels`) are written against this
package's names only; no other module of fastbp imports ``numba.core``,
``numba.np.ufunc`` or ``llvmlite``, or reads an underscore attribute of a numba
object (``tests/test_layout.py`` checks it).

========================  =====================================================
module                    what it holds
========================  =====================================================
:mod:`.compile`           :func:`jit`, the one decorator factory (options,
                          optimisation level, compile counting)
:mod:`.cache`             numba's on-disk cache, attached at first compile and
                          hardened (inter-process lock, package-wide key)
:mod:`.threads`           numba's thread pool and ``n_jobs``; fastbp's calls
                          take turns on numba's workqueue layer
:mod:`.blas_pools`        other OpenBLAS pools kept off the kernels' cores
:mod:`.calls`             kernels calling kernels (:func:`call_separately`,
                          :func:`call_at` members of a :class:`KernelTable`)
:mod:`.linking`           their internal path: by symbol and by address
:mod:`.parallel`          :func:`parallel_for`: one compiled parallel launcher
:mod:`.gemm`              BLAS ``gemm`` at raw addresses
========================  =====================================================
"""

from .calls import KernelTable, array_type, bundle, call_at, call_separately
from .compile import (
    FASTMATH,
    LEAF,
    ORCHESTRATOR,
    compile_report,
    counting_compiles,
    jit,
    smaller,
)
from .parallel import parallel_for, worker_args
from .threads import kernel_threads, max_threads, resolve_n_jobs

__all__ = [
    "FASTMATH",
    "LEAF",
    "ORCHESTRATOR",
    "KernelTable",
    "array_type",
    "bundle",
    "call_at",
    "call_separately",
    "compile_report",
    "counting_compiles",
    "jit",
    "kernel_threads",
    "max_threads",
    "parallel_for",
    "resolve_n_jobs",
    "smaller",
    "worker_args",
]
