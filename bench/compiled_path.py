"""``python -m bench.compiled_path CONFIG [--out DIR] [--act-on-trades] [--repeat N] [--json]``

Runs a backtest config on the compiled path and prints its summary with the time of each phase.
``--repeat N`` runs it N times in this process and prints the median of each phase (the first run
included: the compiled code is loaded when ``engine.runners.compiled`` is imported, before any run). The
replay's CPU time is printed beside its wall time: on a shared machine the wall time also counts
the time other processes held the core. ``--out`` keeps the event log
of the last run. Errors are one line and exit code 2, as ``hft``'s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

PHASES = ("setup_s", "read_s", "replay_s", "replay_cpu_s", "write_s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compiled_path", description=__doc__.splitlines()[2])
    ap.add_argument("config", type=Path)
    ap.add_argument("--out", type=Path, help="run directory for the event log (default: a temporary one)")
    ap.add_argument("--act-on-trades", action="store_true", help="the strategy also acts after every trade")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the summary of the last run as JSON")
    a = ap.parse_args(argv)
    from engine.errors import HftError

    try:
        from engine.runners.compiled import run_compiled
        from engine.runners.spec import load_run_spec

        if a.repeat < 1:
            raise HftError(f"--repeat must be >= 1, got {a.repeat}")
        if a.out is not None and a.out.exists() and any(a.out.iterdir()):
            raise HftError(f"run directory {a.out} is not empty; choose another --out")
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(a.repeat):
                spec = load_run_spec(a.config)
                if a.act_on_trades:
                    for st in spec.strategies:
                        st.params["act_on_trades"] = True
                last = i == a.repeat - 1
                run_dir = a.out if last and a.out is not None else Path(tmp) / f"run-{i}"
                runs.append(run_compiled(spec, run_dir))
    except HftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = runs[-1]
    if a.json:
        print(json.dumps(summary, indent=2, default=float))
        return 0
    med = {k: statistics.median(r[k] for r in runs) for k in PHASES}
    rows = summary["rows"]
    print(
        f"{rows:,} rows, {summary['book_updates']:,} book messages, {summary['strategy'].get('wakes', 0):,} wakes, "
        f"{summary['orders_submitted']:,} orders, {summary['fills']:,} fills, net P&L {summary['net_pnl']:.2f}"
    )
    print(
        f"median of {len(runs)}: replay {med['replay_s'] * 1e3:.1f} ms ({rows / med['replay_s'] / 1e6:.2f} M rows/s), "
        f"its CPU time {med['replay_cpu_s'] * 1e3:.1f} ms ({rows / med['replay_cpu_s'] / 1e6:.2f} M rows/s); "
        f"setup {med['setup_s'] * 1e3:.1f} ms, read {med['read_s'] * 1e3:.1f} ms, "
        f"write {med['write_s'] * 1e3:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
