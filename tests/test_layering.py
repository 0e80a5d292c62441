"""The layering of the packages, read from their imports (every ``import``/``from`` statement,
module-level or inside a function, and every ``importlib.import_module("...")`` of a literal name):

- the engine's core (``engine/`` but ``engine/runners/`` and ``engine/cli.py``) imports nothing
  from ``venues``, ``sim``, ``strategies`` or ``reports``: they import it;
- ``venues`` and ``sim`` do not import each other or the runners;
- ``strategies`` and ``reports`` import neither ``venues``, ``sim`` nor the runners;
- nothing installed imports the benchmarks (``bench/`` is not installed), but for the CLI's
  ``hft bench``, which runs them from a source checkout.

A failure lists every offending ``file:line`` and what it imports."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "venues", "sim", "strategies", "reports")
ENTRY = "engine/cli.py"  # the composition root's command line: it may name every package


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, level: int, path: Path) -> str:
    """The absolute name of a (possibly relative) import in the file at ``path``."""
    if not level:
        return name
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in a file, wherever it stands. ``from m
    import x`` yields ``m.x`` too, as ``x`` may be a submodule."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, path)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if arg.value.startswith("."):
                    anchor = next((k.value for k in node.keywords if k.arg == "package"), None)
                    if not isinstance(anchor, ast.Constant):
                        continue
                    level = len(arg.value) - len(arg.value.lstrip("."))
                    yield node.lineno, ".".join([*anchor.value.split(".")[: 1 - level or None], arg.value[level:]])
                else:
                    yield node.lineno, arg.value


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def forbidden(rel: str) -> tuple[str, ...]:
    """What the file at ``rel`` (relative to the repository, POSIX) must not import."""
    if rel == ENTRY:
        return ()
    if rel.startswith("engine/runners/"):
        return ("bench",)
    if rel.startswith("engine/"):
        return ("venues", "sim", "strategies", "reports", "bench")
    if rel.startswith("venues/"):
        return ("sim", "engine.runners", "bench")
    if rel.startswith("sim/"):
        return ("venues", "engine.runners", "bench")
    return ("venues", "sim", "engine.runners", "bench")  # strategies/, reports/


def violations() -> list[str]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            rules = forbidden(rel)
            seen = set()
            for line, name in imports(path):
                bad = next((r for r in rules if _within(name, r)), None)
                if bad is not None and line not in seen:
                    seen.add(line)
                    found.append(f"{rel}:{line}: imports {name} (no {bad} from here)")
    return found


def test_the_packages_import_only_down_the_layers() -> None:
    found = violations()
    assert not found, "layering violations:\n" + "\n".join(found)


def test_the_import_walk_sees_every_form_of_import(tmp_path: Path, monkeypatch) -> None:
    """Function-level imports, relative ones and ``importlib.import_module`` of a literal count."""
    pkg = tmp_path / "engine" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    src = pkg / "mod.py"
    src.write_text(
        "import importlib\n"
        "from engine import model\n"
        "def f():\n"
        "    from sim.kernel import run_rows\n"
        "    return importlib.import_module('venues.binance.feed')\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "__import__('reports.pnl')\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    names = {name for _, name in imports(src)}
    assert {"engine.model", "sim.kernel", "venues.binance.feed", "reports.pnl"} <= names
    assert {"engine.sub.sibling", "engine.other.thing"} <= names
    lines = sorted({line for line, name in imports(src) if any(_within(name, r) for r in forbidden("engine/x.py"))})
    assert lines == [4, 5, 8]
    assert forbidden(ENTRY) == () and "sim" not in forbidden("engine/runners/backtest.py")
