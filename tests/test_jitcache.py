"""numba's cache is kept per package and keyed by the compiled sources of the package and of what
it inlines (``engine.jitcache``): an edit of ``engine/book.py`` must not leave ``sim/kernel.py``'s
cached kernel running the old book code."""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from engine import jitcache

REPO = Path(__file__).resolve().parents[1]
#: every folder that may hold compiled code: the installed packages and the benchmarks
FOLDERS = ("engine", "sim", "venues", "reports", "strategies", "bench")


def _caches(tree: ast.AST) -> bool:
    """Whether the module calls ``njit``/``jit`` (``nb.njit``, ``numba.jit``...) with
    ``cache=True``: as a decorator or as a call."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("njit", "jit") and any(
                k.arg == "cache" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords
            ):
                return True
    return False


def _cached_modules() -> dict[str, set[str]]:
    """package -> its modules (relative to the package) with cached compiled functions."""
    found: dict[str, set[str]] = {}
    for pkg in FOLDERS:
        for p in (REPO / pkg).rglob("*.py"):
            if _caches(ast.parse(p.read_text(), str(p))):
                found.setdefault(pkg, set()).add(p.relative_to(REPO / pkg).as_posix())
    return found


def test_every_cached_numba_module_is_registered_by_its_package() -> None:
    """A new module with cached compiled functions must be in its package's ``register`` list
    (its ``__init__``), or edits to what it inlines would not start a fresh cache for it."""
    found = _cached_modules()
    assert {"engine", "sim", "venues"} <= set(found)
    for pkg in FOLDERS:
        importlib.import_module(pkg)  # its __init__ registers
    registered = jitcache.registered()
    missing = [
        f"{pkg}/{rel}"
        for pkg, rels in found.items()
        for rel in rels
        if pkg not in registered or rel not in registered[pkg].compiled
    ]
    assert not missing, f"compiled with cache=True but not registered in the package's __init__: {missing}"
    stale = [f"{p.name}/{rel}" for p in registered.values() for rel in p.compiled if rel not in found.get(p.name, ())]
    assert not stale, f"registered but holding no cached compiled function: {stale}"


def _copy(tmp: Path) -> dict[str, jitcache.Package]:
    """The registered packages' compiled files, copied under ``tmp``, and a registry of the copies."""
    for pkg in ("engine", "sim", "venues", "bench"):
        importlib.import_module(pkg)
    registry = {}
    for name, pkg in jitcache.registered().items():
        for rel in pkg.compiled:
            dst = tmp / name / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(pkg.root / rel, dst)
        registry[name] = jitcache.Package(name, tmp / name, pkg.compiled, pkg.inlines)
    return registry


def test_an_edit_changes_the_key_of_its_package_and_of_those_that_inline_it(tmp_path: Path) -> None:
    registry = _copy(tmp_path)
    assert set(registry["sim"].inlines) == {"engine"} and set(registry["venues"].inlines) == {"engine"}

    def keys() -> dict[str, str]:
        return {name: jitcache.cache_key(name, registry) for name in registry}

    def edit(rel: str) -> None:
        with open(tmp_path / rel, "a") as fh:
            fh.write("\n# an edit\n")

    before = keys()
    edit("engine/book.py")  # inlined by sim's kernel, venues' depth apply and compiled strategies
    after = keys()
    assert {n for n in registry if after[n] != before[n]} == {"engine", "sim", "venues", "strategies"}
    edit("sim/kernel.py")
    again = keys()
    assert {n for n in registry if again[n] != after[n]} == {"sim"}  # engine's own cache stays warm
    edit("venues/binance/numbers.py")
    last = keys()
    assert {n for n in registry if last[n] != again[n]} == {"venues"}


def test_compiled_functions_are_cached_in_their_packages_directory() -> None:
    """The locator is installed and answers for the registered packages' functions."""
    for module, package in (
        ("engine.book", "engine"),
        ("sim.kernel", "sim"),
        ("venues.binance.depth_apply", "venues"),
        ("bench.reports", "bench"),
    ):
        mod = importlib.import_module(module)
        where = jitcache.cache_dir(package)
        assert where is not None and re.fullmatch(f"{package}-[0-9a-f]{{16}}", where.name)
        own = [f for f in vars(mod).values() if getattr(getattr(f, "py_func", None), "__module__", "") == module]
        assert own, module
        for f in own:
            assert Path(f._cache.cache_path).parent == where, (module, f)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_a_package_inlining_another_recompiles_when_that_one_changes(tmp_path: Path) -> None:
    """End to end in fresh processes: ``pb`` inlines ``pa``; after an edit of ``pa`` alone, ``pb``'s
    cached function is compiled again (numba alone would load it: ``pb``'s own file did not
    change). An operator's ``NUMBA_CACHE_DIR`` holds the packages' directories."""
    _write(tmp_path / "src/pa/__init__.py", 'from engine import jitcache\njitcache.register(__name__, ("f.py",))\n')
    _write(tmp_path / "src/pa/f.py", "import numba\n@numba.njit(cache=True)\ndef value():\n    return 1\n")
    _write(
        tmp_path / "src/pb/__init__.py",
        'from engine import jitcache\njitcache.register(__name__, ("g.py",), inlines=("pa",))\n',
    )
    _write(
        tmp_path / "src/pb/g.py",
        """\
        import numba
        from pa.f import value
        @numba.njit(cache=True)
        def twice():
            return 2 * value()
        """,
    )
    cache = tmp_path / "operator-cache"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src"), "NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"}

    def run() -> tuple[str, str]:
        out = subprocess.run(
            [sys.executable, "-c", "from pb.g import twice; print('result', twice())"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=300,
        )
        return out.stdout.splitlines()[-1], out.stdout

    assert run()[0] == "result 2"
    result, log = run()
    assert result == "result 2" and "data loaded" in log and "data saved" not in log  # from the cache
    _write(tmp_path / "src/pa/f.py", "import numba\n@numba.njit(cache=True)\ndef value():\n    return 5\n")
    result, log = run()
    assert result == "result 10"
    dirs = sorted(p.name.split("-")[0] for p in cache.iterdir())
    assert dirs == ["pa", "pa", "pb", "pb"]  # a generation each before and after the edit


def test_importing_the_packages_does_not_load_numba() -> None:
    code = "import engine, sim, venues, reports, strategies, sys; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_old_generations_of_a_package_are_pruned(tmp_path: Path) -> None:
    base = tmp_path / ".numba_cache"
    gens = []
    for i in range(6):
        g = base / f"sim-{i:016x}"
        g.mkdir(parents=True)
        os.utime(g, (1000 + i, 1000 + i))
        gens.append(g)
    (base / "engine-0000000000000000").mkdir()  # another package's
    (base / "0123456789abcdef").mkdir()  # one directory for all, before packages kept their own
    (base / "not-ours").mkdir()
    jitcache._prune(base, gens[-1], "sim")
    assert sorted(p.name for p in base.iterdir()) == [
        "engine-0000000000000000",
        "not-ours",
        f"sim-{3:016x}",
        f"sim-{4:016x}",
        f"sim-{5:016x}",
    ]


def test_the_install_step_loads_every_packages_compiled_code(capsys) -> None:
    """``scripts/setup.sh`` runs ``engine.runners.warm_cache``: the replay kernels, the compiled
    path's loop and the Binance feed's code are compiled (or loaded) there, and it says so."""
    from engine.runners import warm_cache
    from venues.binance.depth_apply import apply_depth

    assert warm_cache.main() == 0
    out = capsys.readouterr().out
    assert "replay kernels:" in out and "compiled path:" in out and "compiled code ready in" in out
    assert apply_depth.signatures  # the feed's signature is compiled, not left to the first frame
    assert "engine.runners.warm_cache" in (REPO / "scripts" / "setup.sh").read_text()
