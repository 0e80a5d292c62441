"""numba's cache is keyed by all compiled sources together (``engine.jitcache``): an edit of
``engine/book.py`` must not leave ``sim/kernel.py``'s cached kernel running the old book code."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from engine import jitcache


def test_every_cached_numba_module_is_listed() -> None:
    """A new module with cached compiled functions must join the hash, or edits to it (and to
    what it inlines) would not start a fresh cache."""
    found = set()
    for pkg in ("engine", "sim", "venues", "reports", "strategies"):
        for p in (jitcache.ROOT / pkg).rglob("*.py"):
            if re.search(r"^@\S*jit\(.*cache=True", p.read_text(), re.M):
                found.add(p.relative_to(jitcache.ROOT).as_posix())
    assert found == set(jitcache.COMPILED)


def test_any_compiled_source_edit_changes_the_cache_dir(tmp_path: Path, monkeypatch) -> None:
    for rel in jitcache.COMPILED:
        dst = tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(jitcache.ROOT / rel, dst)
    monkeypatch.setattr(jitcache, "ROOT", tmp_path)
    seen = {jitcache.source_hash()}
    for rel in ("engine/book.py", "sim/queue.py", "venues/binance/numbers.py"):
        with open(tmp_path / rel, "a") as fh:
            fh.write("\n# an edit\n")
        seen.add(jitcache.source_hash())
    assert len(seen) == 4
    assert jitcache._base() == tmp_path / ".numba_cache"


def test_old_generations_are_pruned(tmp_path: Path) -> None:
    base = tmp_path / "cache"
    gens = []
    for i in range(6):
        g = base / f"gen{i}"
        g.mkdir(parents=True)
        os.utime(g, (1000 + i, 1000 + i))
        gens.append(g)
    jitcache._prune(base, gens[-1])
    assert sorted(p.name for p in base.iterdir()) == ["gen3", "gen4", "gen5"]


def test_an_operators_cache_dir_is_kept(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert jitcache.configure() == str(tmp_path)
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path)
