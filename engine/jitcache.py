"""numba's on-disk cache, one directory per package, named by the source it was compiled from.

numba checks a cached function against its own file only. Our kernels compile in functions and
constants of other files (``sim/kernel.py`` and ``venues/binance/depth_apply.py`` inline
``engine/book.py``), so after an edit of ``engine/book.py`` a cached kernel would still run the old
book code: wrong results, or writes past an array that has since changed shape.

So every package that compiles registers, in its own ``__init__``, the modules with
``@njit(cache=True)`` functions it holds and the packages whose compiled code those inline::

    from engine import jitcache as _jitcache
    _jitcache.register(__name__, ("kernel.py", "queue.py"), inlines=("engine",))

and a cache locator of ours (numba looks a function's cache up through the classes in
``numba.core.caching.CacheImpl._locator_classes``, first that answers wins) puts the cache of any
function defined under a registered package in ``<base>/<package>-<key>/``, ``key`` a hash of the
package's registered files and those of every package it inlines, transitively. An edit of
``engine/book.py`` gives engine, sim and venues new directories; an edit of ``sim/kernel.py``
gives sim one and leaves engine's cache as it is. The index of each function also records that
key and its own file's hash, so a compiled module a package forgot to register is still checked
against its own source (``tests/test_jitcache.py`` makes forgetting one fail anyway).

Why a locator rather than one ``NUMBA_CACHE_DIR`` named by a hash over every package's files (as
before, whether from a list in the core or taken lazily from the packages' registrations): numba
reads ``NUMBA_CACHE_DIR`` once, and functions are looked up in the cache as their module is
imported, so that one name has to be fixed before the packages compiled later have registered
(the engine's book is loaded before ``sim`` or ``bench`` is imported), which put every package's
files back in the core; and any edit anywhere started every package cold. A locator is asked
per function when it is decorated, after its package's ``__init__`` has registered it and
imported what it inlines, so each package keeps its own list and the core names none of theirs.
It is installed when numba's caching module is imported (a one-shot import hook), so importing
the engine does not load numba. numba names the class ``CacheImpl`` (0.68) or ``_CacheImpl``
(earlier); should neither hold the list, importing numba fails naming this module rather than
running stale code.

``base`` is numba's ``NUMBA_CACHE_DIR`` when an operator sets one (the packages' directories go
inside it), else ``.numba_cache`` beside the packages when that is writable, else
``$XDG_CACHE_HOME/hft/numba``; when none can be created, numba's own locators take over. An
operator's ``NUMBA_CACHE_LOCATOR_CLASSES`` replaces numba's list, ours included, and is respected
as such. Each package keeps its ``_KEEP`` most recently used directories (switching branches back
and forth stays warm) and prunes older ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # where the packages live (the checkout, or site-packages)
_KEEP = 3  # cache generations kept per package
_CACHING = "numba.core.caching"
_LEGACY = re.compile(r"[0-9a-f]{16}")  # one directory for every package, before packages kept their own


@dataclass(frozen=True)
class Package:
    """A package's compiled modules (paths relative to ``root``) and the packages they inline."""

    name: str
    root: Path
    compiled: tuple[str, ...]
    inlines: tuple[str, ...] = ()


_registry: dict[str, Package] = {}
_dirs: dict[str, tuple[str, Path | None]] = {}  # package -> (key, directory) in this process
_lock = threading.Lock()


def register(package: str, compiled: Iterable[str], inlines: Iterable[str] = (), root: Path | None = None) -> Package:
    """Register ``package``'s modules with cached compiled functions (relative to its directory)
    and the packages whose compiled functions or constants they inline. Call it from the
    package's ``__init__``, before any of those modules is imported."""
    if root is None:
        root = Path(sys.modules[package].__file__ or "").resolve().parent
    pkg = Package(package, Path(root), tuple(compiled), tuple(inlines))
    with _lock:
        _registry[package] = pkg
        _dirs.pop(package, None)
    return pkg


def registered() -> dict[str, Package]:
    return dict(_registry)


def _lookup(name: str, registry: Mapping[str, Package] | None) -> Package:
    if registry is not None:
        return registry[name]
    if name not in _registry:
        importlib.import_module(name)  # its __init__ registers it
    if name not in _registry:
        raise LookupError(f"package {name!r} registered no compiled modules with engine.jitcache")
    return _registry[name]


def closure(name: str, registry: Mapping[str, Package] | None = None) -> list[Package]:
    """``name`` and every package it inlines, transitively, sorted by name."""
    seen: dict[str, Package] = {}
    todo = [name]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen[n] = pkg = _lookup(n, registry)
            todo.extend(pkg.inlines)
    return [seen[n] for n in sorted(seen)]


def cache_key(name: str, registry: Mapping[str, Package] | None = None) -> str:
    """A hash of the registered compiled sources of ``name`` and of everything it inlines."""
    h = hashlib.sha256()
    for pkg in closure(name, registry):
        h.update(f"\0package {pkg.name}\0".encode())
        for rel in sorted(pkg.compiled):
            h.update(f"\0{rel}\0".encode())
            try:
                h.update((pkg.root / rel).read_bytes())
            except OSError:
                h.update(b"\0missing\0")
    return h.hexdigest()[:16]


def _base() -> Path:
    with contextlib.suppress(ImportError):
        from numba.core import config

        if config.CACHE_DIR:  # NUMBA_CACHE_DIR, as numba read it
            return Path(config.CACHE_DIR)
    if os.access(ROOT, os.W_OK):
        return ROOT / ".numba_cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hft" / "numba"


def _prune(base: Path, current: Path, package: str) -> None:
    """Remove all but the ``_KEEP`` most recently used directories of ``package`` under ``base``
    (``current`` included), and the one-for-all directories of the design before this one."""
    own = re.compile(re.escape(package) + r"-[0-9a-f]{16}")
    with contextlib.suppress(OSError):
        dirs = [p for p in base.iterdir() if p.is_dir() and p != current]
        old = sorted((p for p in dirs if own.fullmatch(p.name)), key=lambda p: p.stat().st_mtime)
        doomed = old[: max(len(old) - (_KEEP - 1), 0)]
        if base.name == ".numba_cache":  # ours alone: an operator's directory may hold anything
            doomed += [p for p in dirs if _LEGACY.fullmatch(p.name)]
        for p in doomed:
            shutil.rmtree(p, ignore_errors=True)


def _current(name: str) -> tuple[str, Path | None]:
    """``name``'s key and cache directory in this process, taken once: the directory created,
    marked used and its package's older ones pruned (``None`` when it cannot be created)."""
    if name in _dirs:
        return _dirs[name]
    key = cache_key(name)  # outside the lock: it may import the packages ``name`` inlines
    with _lock:
        if name not in _dirs:
            base = _base()
            current: Path | None = base / f"{name}-{key}"
            try:
                current.mkdir(parents=True, exist_ok=True)
                os.utime(current)
                _prune(base, current, name)
            except OSError:
                current = None
            _dirs[name] = (key, current)
        return _dirs[name]


def cache_dir(name: str) -> Path | None:
    """Where ``name``'s compiled functions are cached in this process."""
    return _current(name)[1]


def owner(py_file: str | os.PathLike[str]) -> Package | None:
    """The registered package whose directory holds ``py_file``."""
    path = Path(os.path.realpath(py_file))
    for pkg in _registry.values():
        if path.is_relative_to(pkg.root.resolve()):
            return pkg
    return None


def _digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


# --- the locator, installed into numba when numba.core.caching is imported ---------------------
def _install(caching: Any) -> None:
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)  # 0.68 / older
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list):
        raise ImportError(
            f"engine.jitcache: numba {sys.modules['numba'].__version__} has no CacheImpl._locator_classes "
            "list; cached kernels could run stale code of the modules they inline"
        )
    if any(getattr(c, "_hft_package_locator", False) for c in classes):
        return

    class PackageCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
        """Functions of a registered package: cached in ``cache_dir(package)``, stamped with the
        package's key and their own file's hash."""

        _hft_package_locator = True

        def __init__(self, py_func: Any, py_file: str) -> None:
            pkg = owner(py_file)
            assert pkg is not None
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            key, where = _current(pkg.name)
            self._cache_path = os.path.join(str(where), self.get_suitable_cache_subpath(py_file))
            self._stamp = (key, _digest(py_file))

        def get_cache_path(self) -> str:
            return self._cache_path

        def get_source_stamp(self) -> Any:
            return self._stamp

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            pkg = owner(py_file) if os.path.exists(py_file) else None
            if pkg is None or cache_dir(pkg.name) is None:
                return None  # not ours, or nowhere to write: numba's own locators
            return super().from_function(py_func, py_file)

    classes.insert(0, PackageCacheLocator)


class _InstallOnImport:
    """A one-shot import hook: runs ``_install`` right after numba's caching module executes, so
    the locator is in place before any function is decorated and numba loads only when used."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != _CACHING:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        inner = loader.exec_module

        def exec_module(module: Any) -> None:
            inner(module)
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
            _install(module)

        loader.exec_module = exec_module  # this module's own loader instance
        return spec


def _hook() -> None:
    if _CACHING in sys.modules:
        _install(sys.modules[_CACHING])
    elif not any(type(f).__name__ == "_InstallOnImport" for f in sys.meta_path):
        sys.meta_path.insert(0, _InstallOnImport())


_hook()
