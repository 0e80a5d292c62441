"""``hft doctor``: the operator guide's runbooks run against a running daemon and its host.

Each check prints pass/warn/fail/skip with the guide's next step (its section quoted); the exit
code is 1 when any check failed, 0 otherwise (warnings included), 2 on bad arguments. Read-only:
the doctor sends GETs and reads files; the fixes it names are printed, never run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable

from engine.daemon.checks import facts as facts_mod
from engine.daemon.checks.model import FAIL, PASS, SECTIONS, SKIP, WARN, Facts, Result
from engine.daemon.checks.runbooks import SECTION_CHECKS

_MARK = {PASS: "PASS", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="run the operator guide's runbooks against a running daemon (read-only)",
        description="Run the troubleshooting guide's decision trees against a running daemon and its host. "
        "Every check prints pass/warn/fail with the guide's next step. Exit code 1 when a check fails.",
    )
    p.add_argument("--url", default=os.environ.get("HFT_URL", facts_mod.DEFAULT_URL),
                   help="the daemon's API (default $HFT_URL or %(default)s)")  # fmt: skip
    p.add_argument("--log-dir", help="the component log directory (default: the config's daemon.log_dir, "
                   f"else {facts_mod.DEFAULT_LOG_DIR})")  # fmt: skip
    p.add_argument("--config", help=f"the daemon's config (default {facts_mod.DEFAULT_CONFIG} when it exists)")
    p.add_argument("--pid-file", help="the daemon's pid file (default: daemon.pid_file, else "
                   f"{facts_mod.DEFAULT_PID_FILE})")  # fmt: skip
    p.add_argument("--prometheus-url", help="check that this Prometheus scrapes the daemon (env HFT_PROMETHEUS_URL)")
    p.add_argument(
        "--only",
        action="append",
        metavar="SECTION",
        help=f"run only these sections (repeat or comma-separate): {', '.join(SECTIONS)}",
    )
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(func=cmd_doctor)


def parse_sections(only: Iterable[str] | None) -> list[str]:
    """The sections to run, in the guide's order; a bad name is a clear error naming it."""
    if not only:
        return list(SECTIONS)
    wanted = {s.strip().replace("-", "_") for item in only for s in item.split(",") if s.strip()}
    bad = sorted(wanted - set(SECTIONS))
    if bad:
        raise ValueError(f"--only: unknown section {', '.join(bad)} (choose from {', '.join(SECTIONS)})")
    return [s for s in SECTIONS if s in wanted]


def run_checks(f: Facts, sections: Iterable[str]) -> list[Result]:
    out: list[Result] = []
    seen: set[tuple[str, str, str]] = set()
    for s in sections:
        for r in SECTION_CHECKS[s](f):
            key = (r.check, r.status, r.detail)
            if key not in seen:  # e.g. the process check of both §1.2 and §2.1: say it once
                seen.add(key)
                if f.url != facts_mod.DEFAULT_URL:  # the signed commands go to this daemon too
                    r.next_step = r.next_step.replace("hft ctl ", f"hft ctl --url {f.url} ")
                out.append(r)
    return out


def exit_code(results: Iterable[Result]) -> int:
    return 1 if any(r.status == FAIL for r in results) else 0


def render_text(results: list[Result], url: str) -> str:
    lines = [f"hft doctor: {url}"]
    section = None
    for r in results:
        if r.section != section:
            section = r.section
            lines.append(f"\n== {section}")
        lines.append(f"[{_MARK.get(r.status, r.status)}] {r.check}: {r.detail}")
        if r.next_step and r.status in (WARN, FAIL):
            lines.append(f"       next: {r.next_step}")
    counts = {s: sum(1 for r in results if r.status == s) for s in (PASS, WARN, FAIL, SKIP)}
    lines.append(f"\n{counts[PASS]} pass, {counts[WARN]} warn, {counts[FAIL]} fail, {counts[SKIP]} skipped")
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        sections = parse_sections(args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.url.startswith(("http://", "https://")):
        print(f"error: --url: must start with http:// or https://, got {args.url!r}", file=sys.stderr)
        return 2
    want = frozenset() if len(sections) == len(SECTIONS) else frozenset(sections)
    f = facts_mod.gather(
        args.url,
        log_dir=args.log_dir,
        config=args.config,
        pid_file=args.pid_file,
        prometheus_url=args.prometheus_url,
        want=want,
    )
    results = run_checks(f, sections)
    if args.json:
        doc = {"url": f.url, "ok": exit_code(results) == 0, "results": [r.to_json() for r in results]}
        print(json.dumps(doc, indent=2))
    else:
        print(render_text(results, f.url))
    return exit_code(results)
