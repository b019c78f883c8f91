"""How kernels call kernels: :func:`call_separately`, and :func:`call_at`.

Two implementations, chosen once per process (the ``"linking"`` entry of
``internals.INTERNALS``):

* :mod:`.linking` (numba and llvmlite internals): a callee is compiled once
  and called by symbol, a table member at its address; a kernel's code is
  never compiled into its callers, and only the members a network uses are
  compiled;
* numba's public path: plain calls (numba compiles every callee into each
  caller), and a dispatch on the member's code (every member compiled into
  the caller).  Same results; slower first fits.
"""

import importlib

import numba
import numba.extending as _numba_extending
import numpy as np
from numba import types

from . import internals


def _linking():
    return importlib.import_module(".linking", __package__)


#: Whether kernels call each other through :mod:`.linking`'s internals.
LINKED = not numba.config.DISABLE_JIT and internals.usable(
    "linking", lambda: _linking().check()
)
linking = _linking() if LINKED else None


def call_separately(kernel, args):
    """Call ``kernel(*args)`` from a kernel without compiling it into the caller.

    numba links the code of every function a kernel calls into the kernel and
    has LLVM optimise and emit all of it again, so a function called from
    three levels up is compiled four times.  ``call_separately`` instead calls
    the callee's own compiled code through its symbol (:mod:`.linking`): each
    kernel's code is optimised and emitted once (a first fit compiled ~35%
    faster, see ``python -m bench.compile_profile``).  The callee is compiled
    for the argument types (literals are passed as their plain types),
    exceptions propagate as for a plain call, and the caller's cache entry
    records the callee so that a process loading the caller from the cache
    loads the callee first.  The price is a call LLVM cannot inline: use it
    between kernels that do real work, not for scalar helpers.

    On numba's public path, and under ``NUMBA_DISABLE_JIT=1``, it is a plain
    call.
    """
    return kernel(*args)


def call_at(address, prototype, args):
    """Call member ``address`` of the table whose prototype is ``prototype``.

    ``address`` comes from :meth:`KernelTable.address`; ``args`` must have
    exactly the table's argument types (checked when the caller compiles).
    Through :mod:`.linking`, nothing of the callee is compiled into the
    caller, and the caller's machine code does not depend on which member it
    calls.  On numba's public path (and under ``NUMBA_DISABLE_JIT=1``) the
    address is the member's code.
    """
    return prototype.fastbp_table.kernels[address](*args)


if LINKED:
    call_separately = linking.call_separately  # noqa: F811
    call_at = linking.call_at  # noqa: F811
elif not numba.config.DISABLE_JIT:

    @_numba_extending.overload(call_separately)
    def _call_separately_public(kernel, args):
        # The callee passed in is a function value: with numba's public
        # compile options too (``compile_policy`` unusable), numba then refuses
        # to cache the caller ("uses dynamic globals") and each process
        # compiles it again.  Inlining this call would avoid that, but
        # numba's inliner miscompiled the epoch (wrong losses), so it is not.
        callee = kernel.dispatcher

        def plain_call(kernel, args):
            return callee(*args)

        return plain_call

    # Inlined, so that the prototype (a function value) is never passed to a
    # compiled call (see above); checked against numba's own paths in tests.
    @_numba_extending.overload(call_at, inline="always")
    def _call_at_public(address, prototype, args):
        table = prototype.dispatcher.fastbp_table
        argtypes = tuple(
            t.copy(readonly=False) if isinstance(t, types.Array) else t
            for t in (types.unliteral(t) for t in args)
        )
        if argtypes != table.expected_argtypes(argtypes):
            return None  # numba then raises its TypingError
        chain = table.chain()

        def dispatch(address, prototype, args):
            return chain(address, args)

        return dispatch


def _chain(members):
    """``f(address, args)`` calling the member whose code is ``address``."""
    (code, kernel), rest = members[0], members[1:]
    if not rest:

        def last(address, args):
            return kernel(*args)

        return numba.njit(last)
    tail = _chain(rest)

    def link(address, args):
        if address == code:
            return kernel(*args)
        return tail(address, args)

    return numba.njit(link)


def bundle(cls):
    """Register the named tuple class ``cls`` as an argument type of kernels.

    numba types an argument by dispatching on its class.  A named tuple class
    has no rule of its own, so the first value of each made numba test the
    class against every numba type class it knows (~130 abstract base
    classes): 0.3-1.3 ms per class, and ~270 objects (a weak reference and
    its callback in each of their negative caches) that the collector then
    walks until the process exits; a fit used seven such classes.
    Registered, ``cls`` goes straight to numba's own rule for tuples: the
    types are the same.  Returns ``cls``.
    """
    _numba_extending.typeof_impl.register(cls)(
        _numba_extending.typeof_impl.dispatch(tuple)
    )
    return cls


def array_type(dtype, ndim=1):
    """Numba's type of a C-contiguous ``ndim``-d array of numpy ``dtype``."""
    return types.Array(numba.from_dtype(np.dtype(dtype)), ndim, "C")


class KernelTable:
    """Kernels of one signature, one per code, chosen by a network at run time.

    The activation of each hidden layer and the loss are data of the network,
    not of the kernels: the kernels that run a network call the chosen member
    through its address (:func:`call_at`), so that one compiled epoch serves
    every activation and loss, and a process compiles only the members its
    networks use (a kernel holding every member's loops behind a run-time
    switch compiled them all: ~1-2 s of each first fit of a dtype).

    Parameters
    ----------
    argtypes : callable
        ``argtypes(dtype)``: the numba argument types of every member for a
        float dtype; callers pass exactly these types.
    restype : numba type
        What every member returns.
    kernels : dict
        Code -> kernel made by ``jit(from_python=False)``.  The
        member of the smallest code is the table's ``prototype``: callers
        name it to :func:`call_at`, which types the call by the table's
        signature (nothing is compiled for it).

    """

    def __init__(self, argtypes, restype, kernels):
        self.argtypes = argtypes
        self.restype = restype
        self.kernels = dict(kernels)
        self.prototype = self.kernels[min(self.kernels)]
        self.prototype.fastbp_table = self
        # (code, dtype) -> address: a fit makes a new network, and asking
        # numba again for an entry point (signature lookup, compiler lock)
        # was ~1 ms of every fit.  Addresses stay valid for the process.
        self._addresses = {}
        self._codes = {}
        self._chain = None

    def address(self, code, dtype):
        """Address of member ``code`` compiled (or loaded) for ``dtype``.

        On numba's public path (and under ``NUMBA_DISABLE_JIT=1``) the
        "address" is the code itself, which :func:`call_at` dispatches on.
        """
        key = (int(code), np.dtype(dtype).str)
        address = self._addresses.get(key)
        if address is None:
            address = key[0]
            if LINKED:
                kernel = self.kernels[key[0]]
                address = linking.kernel_address(
                    kernel, self.argtypes(dtype), self.restype
                )
            self._addresses[key] = address
            self._codes[(address, key[1])] = key[0]
        return address

    def code_of(self, address, dtype):
        """The code whose address for ``dtype`` this table handed out, else None."""
        return self._codes.get((address, np.dtype(dtype).str))

    def expected_argtypes(self, argtypes):
        """The members' argument types for the float dtype of ``argtypes``.

        Read-only arrays count as writable (the same data model; members never
        write to the arrays they only read); the dtype is the first array's.
        """
        first = next(t for t in argtypes if isinstance(t, types.Array))
        return tuple(self.argtypes(np.dtype(str(first.dtype))))

    def chain(self):
        """The public path's :func:`call_at`: a dispatch on the member's code.

        A chain of plain kernels, ``if address == code: member(*args)``, one
        per member: every member is compiled into the caller.
        """
        if self._chain is None:
            self._chain = _chain(sorted(self.kernels.items()))
        return self._chain

    def compile_all(self, dtype):
        """Compile (or load) every member for ``dtype`` (:func:`fastbp.warm_cache`)."""
        for code in self.kernels:
            self.address(code, dtype)
