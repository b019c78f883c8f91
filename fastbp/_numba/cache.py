"""numba's on-disk cache for fastbp's kernels: attached at first compile, hardened.

Internals used (the ``"cache"`` entry of :data:`.internals.INTERNALS`):
numba's ``FunctionCache``, ``CompileResultCacheImpl`` and its locator
classes, ``IndexDataCacheFile``, ``Cache._load_overload`` and
``Dispatcher._cache``.  Without them (or with ``FASTBP_NUMBA_PUBLIC_ONLY=1``),
a kernel gets numba's own cache, as ``cache=True`` sets it up.
"""

import hashlib
import os
import time
import warnings

from numba.core.caching import (
    CompileResultCacheImpl,
    FunctionCache,
    IndexDataCacheFile,
    InTreeCacheLocator,
    UserProvidedCacheLocator,
)
from numba.core.runtime import rtsys as _nrt_runtime

from . import internals

try:  # POSIX advisory locks; elsewhere saves are unlocked (numba's default)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

_NUMBA_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(_NUMBA_DIR)


def _kernel_modules():
    """The files whose code can end up in a compiled kernel (derived, never kept).

    Every module of this package (the decorator's options and the calling
    code it generates), and every module of fastbp (and of its kernels
    package) that applies the decorator.  Paths relative to the fastbp
    package.
    """
    names = [os.path.join("_numba", name) for name in sorted(os.listdir(_NUMBA_DIR))
             if name.endswith(".py")]  # fmt: skip
    for folder in ("", "_kernels"):
        for name in sorted(os.listdir(os.path.join(_PACKAGE_DIR, folder))):
            if name.endswith(".py"):
                path = os.path.join(_PACKAGE_DIR, folder, name)
                with open(path, encoding="utf-8") as f:
                    if "@jit(" in f.read():
                        names.append(os.path.join(folder, name))
    return tuple(names)


#: Modules whose compiled code can end up inside another kernel.
_KERNEL_MODULES = _kernel_modules()


_stamp = None


def _source_stamp():
    """The cache key of every kernel: all kernel modules, and how kernels call.

    Kernels compiled through :mod:`.linking` call their callees by symbol
    and table members at addresses; on numba's public path they call them
    plainly and dispatch on codes.  Code of one kind must never be loaded in
    a process of the other (a table code called as an address crashes), so
    the two are cached apart.
    """
    global _stamp
    if _stamp is None:
        from .calls import LINKED  # imported by the time anything compiles

        digest = hashlib.sha256()
        for name in _KERNEL_MODULES:
            with open(os.path.join(_PACKAGE_DIR, name), "rb") as f:
                digest.update(f.read())
        _stamp = ("fastbp", digest.hexdigest(), "linked" if LINKED else "public")
    return _stamp


class _LockedIndexDataCacheFile(IndexDataCacheFile):
    """numba's cache index and data files: locked saves, unreadable entries dropped.

    Two processes compiling different signatures at once (GridSearchCV or
    dask workers, parallel test runs on a cold cache) could both pick the
    same data file number and leave an index entry pointing at the other's
    machine code, which crashed the next process that loaded it.  The index
    is re-read inside the lock.

    numba unpickles a whole index before it compares its source stamp, so an
    index written by another fastbp (types that no longer exist) or a
    damaged file failed every later fit; such an index or data file is read
    as missing (one warning), and the next save replaces it.  So is a data
    file that holds another kernel's code (copied over, or an index pointing
    at the wrong file), before any of it is loaded.
    """

    def __init__(self, qualname, **kwargs):
        super().__init__(**kwargs)
        self._qualname = qualname

    def _load_index(self):
        try:
            return super()._load_index()
        except Exception as exc:  # unreadable: another version's, or damaged
            _warn_unreadable(self._index_path, exc)
            return {}

    def load(self, key):
        try:
            data = super().load(key)
        except Exception as exc:  # a damaged data file: compile again
            _warn_unreadable(self._cache_path, exc)
            return None
        if data is not None and not self._holds(key, data):
            _warn_unreadable(self._cache_path, "another kernel's code")
            return None
        return data

    def _holds(self, key, data):
        """Whether ``data`` is the reduced compile result of this kernel for ``key``.

        numba's reduced form is ``(library, fndesc, environment, signature,
        ...)`` and ``key`` starts with the argument types.
        """
        try:
            fndesc, signature = data[1], data[3]
            return fndesc.qualname == self._qualname and tuple(signature.args) == tuple(
                key[0]
            )
        except Exception:  # not the form fastbp knows: not loaded
            return False

    def save(self, key, data):
        if fcntl is None:  # pragma: no cover
            return super().save(key, data)
        lock_path = os.path.join(self._cache_path, self._index_name + ".lock")
        with open(lock_path, "a+") as lock:
            _lock_patiently(lock, lock_path)
            try:
                # Who holds it, for a process that waits (see _lock_patiently).
                lock.truncate(0)
                lock.write(str(os.getpid()))
                lock.flush()
                return super().save(key, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


#: Seconds a save waits for another process's cache lock before saying so.
LOCK_PATIENCE = 10.0


def _lock_patiently(lock, lock_path):
    """Take ``lock`` exclusively; say once if another process holds it long.

    A save holds the lock for milliseconds; one held for longer than
    :data:`LOCK_PATIENCE` seconds (a stopped or hung process, a slow network
    file system) would otherwise make a fit wait silently.
    """
    deadline = time.monotonic() + LOCK_PATIENCE
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    lock.seek(0)
    holder = lock.read().strip() or "unknown"
    _warn_once(
        "lock",
        f"fastbp: waiting for numba's cache lock {lock_path}, held for more than "
        f"{LOCK_PATIENCE:g} s by process {holder}; the fit goes on once it is "
        "released (end that process, or point NUMBA_CACHE_DIR elsewhere).",
    )
    fcntl.flock(lock, fcntl.LOCK_EX)


def _built_ahead(path):
    """Whether ``path`` is a directory that already holds cache index files."""
    try:
        return any(name.endswith(".nbi") for name in os.listdir(path))
    except OSError:
        return False


def _fastbp_locator(cls):
    """Numba's locator class ``cls`` keyed on all kernel modules, read-only too.

    * Its source stamp is :func:`_source_stamp`: numba keys a function's
      cache on its own source file, but a kernel's machine code includes the
      kernels it calls from other files.
    * A directory that is not writable but already holds a cache (built
      ahead of time with :func:`fastbp.warm_cache`, then mounted read-only,
      as in a container image) is used for loading; numba accepts only
      writable directories, and recompiled at every start instead.
    """

    class Locator(cls):
        def ensure_cache_path(self):
            try:
                super().ensure_cache_path()
            except OSError:
                if not _built_ahead(self.get_cache_path()):
                    raise

        def get_source_stamp(self):
            return _source_stamp()

    Locator.__name__ = Locator.__qualname__ = "Fastbp" + cls.__name__
    return Locator


class _CacheImpl(CompileResultCacheImpl):
    _locator_classes = [
        _fastbp_locator(cls) if cls in (UserProvidedCacheLocator, InTreeCacheLocator)
        else cls
        for cls in CompileResultCacheImpl._locator_classes
    ]  # fmt: skip


class _KernelCache(FunctionCache):
    """numba's per-function cache, hardened for fastbp's kernels.

    * Saves are locked (:class:`_LockedIndexDataCacheFile`).
    * A save that fails (a read-only or full disk) leaves the kernel compiled
      in memory, with one warning per process.
    * Loads skip numba's refresh of every typing and lowering registry
      (importing a few dozen of its modules), which only a compilation
      needs: ~0.25 s of a warm process's first fit, and ~27k objects the
      garbage collector walks until exit.  A kernel compiled without
      reference counting loads without initialising numba's runtime either
      (~40 ms).  A kernel that must be compiled still gets the full refresh
      (numba's compiler does it first).
    """

    _impl_class = _CacheImpl

    def __init__(self, py_func, nrt):
        super().__init__(py_func)
        self._nrt = nrt
        self._cache_file = _LockedIndexDataCacheFile(
            py_func.__qualname__,
            cache_path=self._cache_path,
            filename_base=self._impl.filename_base,
            source_stamp=_source_stamp(),
        )

    def load_overload(self, sig, target_context):
        if self._nrt:
            _nrt_runtime.initialize(target_context)
        return self._load_overload(sig, target_context)

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError as exc:
            _warn_once(
                "save",
                f"fastbp: could not save a compiled kernel to numba's cache in "
                f"{self._cache_path} ({exc}); it stays compiled in this process "
                "only.",
            )


def _check_cache_internals():
    """Numba's cache classes still look as :class:`_KernelCache` expects."""
    return (
        all(hasattr(FunctionCache, name)
            for name in ("_impl_class", "_load_overload", "save_overload"))
        and isinstance(getattr(CompileResultCacheImpl, "_locator_classes", None), list)
        and {UserProvidedCacheLocator, InTreeCacheLocator}
        <= set(CompileResultCacheImpl._locator_classes)
        and all(hasattr(IndexDataCacheFile, name)
                for name in ("save", "_load_index", "_save_index"))
        and callable(getattr(_nrt_runtime, "initialize", None))
    )  # fmt: skip


def attach_cache(dispatcher):
    """Give ``dispatcher`` its on-disk cache (at its first compilation or load).

    numba's ``cache=True`` sets a kernel's cache up when the kernel is
    defined, for all of fastbp's kernels at import where a fit uses 15.  With
    numba's cache internals as expected, the cache is a :class:`_KernelCache`;
    otherwise numba's own.  Where no directory is usable at all, kernels
    compile in memory, with one warning.
    """
    try:
        if internals.usable("cache", _check_cache_internals):
            dispatcher._cache = _KernelCache(
                dispatcher.py_func, dispatcher.targetoptions.get("_nrt", True)
            )
        else:
            dispatcher.enable_caching()
    except RuntimeError as exc:
        # numba found no usable cache directory at all (package directory,
        # user cache and NUMBA_CACHE_DIR): compile in memory.
        warn_no_cache(exc)


_warned = set()


def _warn_once(what, message):
    if what not in _warned:
        _warned.add(what)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _warn_unreadable(path, reason):
    """Say once that an entry in ``path`` was ignored (``reason``: an exception)."""
    if isinstance(reason, BaseException):
        reason = f"{type(reason).__name__}: {reason}"
    _warn_once(
        "unreadable",
        f"fastbp: ignored an unreadable entry of numba's cache in {path} "
        f"({reason}); the kernel is compiled again and the entry replaced.",
    )


def warn_no_cache(exc):
    """Say once that kernels compile in every process (no cache directory)."""
    _warn_once(
        "no cache",
        f"fastbp: no writable location for numba's compile cache ({exc}); "
        "kernels will be compiled in every process. Set NUMBA_CACHE_DIR to "
        "a writable directory to keep them between processes.",
    )
