"""Two versions of the hot path against each other, in alternating runs.

    python -m bench.ab BASE [OTHER] [--pairs 4] [--bench breakdown|hot] [-- ARGS...]

This 2-vCPU virtual machine runs the same code up to twice as fast at one moment as at another, and
a single run of a hot-path benchmark moves by several microseconds from one run to the next: a
change's effect only shows in runs of both versions taken in turns. ``BASE`` and ``OTHER`` are git
revisions, or ``.`` for the working tree as it is (uncommitted changes included; the default for
``OTHER``). Each revision is checked out in a temporary worktree and run with this interpreter; the
first run of each (numba compiles its cache there) is not counted, and each pair alternates which
version goes first. ``--bench breakdown`` (default) is the in-process replay
(``bench.breakdown``), ``--bench hot`` the full benchmark against the fake in its own process
(``bench.hot_path --entry ws --mode place``); ARGS go to the benchmark.

Prints every run's P50 and P99, the median P50 of each version, and the median of the paired
differences (OTHER - BASE).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import REPO
from bench import hot_path as hot

# benchmark: (module, its arguments, the result line compared)
_BENCHES = {
    "breakdown": ("breakdown", [], "frame -> order bytes written"),
    "hot": ("hot_path", ["--entry", "ws", "--mode", "place"], "frame handed over -> order bytes written"),
}


def module(tree: Path, name: str) -> str:
    """``bench.<name>``, or where revisions before ``bench/`` kept it (``venues/binance/bench_<name>.py``)."""
    if (tree / "bench" / f"{name}.py").is_file() or not (tree / "venues" / "binance" / f"bench_{name}.py").is_file():
        return f"bench.{name}"
    return f"venues.binance.bench_{name}"


class BenchError(RuntimeError):
    pass


def parse(out: str, marker: str) -> tuple[float, float]:
    """(P50, P99) in µs from the benchmark's line that starts with ``marker``."""
    for line in out.splitlines():
        if marker in line:
            m = re.search(r"p50=\s*([\d.]+) us.*?p99=\s*([\d.]+) us", line)
            if m:
                return float(m.group(1)), float(m.group(2))
    raise BenchError(f"no {marker!r} line with p50 and p99 in the benchmark's output:\n{out[-2000:]}")


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The source tree of ``rev``: this working tree for ``.``, else a temporary git worktree."""
    if rev == ".":
        yield REPO
        return
    tmp = Path(tempfile.mkdtemp(prefix="hft-ab-"))
    tree = tmp / "tree"
    res = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise BenchError(f"cannot check out {rev!r}: {res.stderr.strip()}")
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
        with contextlib.suppress(OSError):
            tmp.rmdir()


def run_once(tree: Path, bench: str, args: list[str], line: str | None = None) -> tuple[float, float]:
    name, fixed, marker = _BENCHES[bench]
    marker = line or marker
    full = [sys.executable, "-m", module(tree, name), *fixed, *args]
    if "--data" not in args:
        full += ["--data", str(hot.DEFAULT_DATA)]
    res = subprocess.run(full, cwd=tree, capture_output=True, text=True)  # cwd first on sys.path
    if res.returncode != 0:
        raise BenchError(f"benchmark failed in {tree} (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return parse(res.stdout, marker)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Arguments after -- go to the benchmark itself."
    )
    ap.add_argument("base", help="git revision, or . for the working tree")
    ap.add_argument("other", nargs="?", default=".", help="git revision, or . (default)")
    ap.add_argument("--pairs", type=int, default=4, help="alternating pairs of runs (default 4)")
    ap.add_argument("--bench", choices=sorted(_BENCHES), default="breakdown")
    ap.add_argument(
        "--line",
        help="compare the result line containing this text (default: frame -> order bytes written; "
        "e.g. 'its read callback ends' for when uvloop actually sends)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    extra = argv[cut + 1 :]  # for the benchmark
    if a.pairs < 1:
        print("error: --pairs must be at least 1", file=sys.stderr)
        return 2
    try:
        with checkout(a.base) as base, checkout(a.other) as other:
            trees = {"base": base, "other": other}
            short = ["--ticks", "100"] if a.bench == "breakdown" else ["--ticks", "300", "--max-rounds", "1"]
            for tree in trees.values():  # fills numba's cache for that tree; not counted
                try:
                    run_once(tree, a.bench, [*extra, *short])
                except BenchError:
                    # compiling a fresh tree takes seconds, in which the fake of the full benchmark
                    # can stream its whole capture past a feed not yet listening: once more, cached
                    run_once(tree, a.bench, [*extra, *short])
            results: dict[str, list[tuple[float, float]]] = {"base": [], "other": []}
            for i in range(a.pairs):
                order = ("base", "other") if i % 2 == 0 else ("other", "base")
                for name in order:
                    p50, p99 = run_once(trees[name], a.bench, extra, a.line)
                    results[name].append((p50, p99))
                    rev = a.base if name == "base" else a.other
                    print(f"pair {i + 1} {name:>5} ({rev}): p50 {p50:.1f} us  p99 {p99:.1f} us", flush=True)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    b = [p for p, _ in results["base"]]
    o = [p for p, _ in results["other"]]
    diffs = [y - x for x, y in zip(b, o, strict=True)]
    print(
        f"{a.bench}: base {a.base} median p50 {statistics.median(b):.1f} us; other {a.other} median p50 "
        f"{statistics.median(o):.1f} us; paired difference (other - base) median {statistics.median(diffs):+.1f} us, "
        f"range {min(diffs):+.1f} to {max(diffs):+.1f} us over {a.pairs} pairs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
