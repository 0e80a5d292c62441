"""The guide's error messages (§12.1 and the other quoted ones) with cause, resolution and
runbook, and the scan of the component logs for them (the doctor's ``logs`` section)."""

from __future__ import annotations

from dataclasses import dataclass

from engine import messages as guide
from engine.daemon.checks.model import FAIL, PASS, WARN, Facts, Result


@dataclass(frozen=True)
class Message:
    text: str  # as the guide quotes it; matched case-insensitively
    cause: str
    resolution: str
    runbook: str
    fatal: bool = False  # the process stops on it: a failure while the daemon is down


#: §12.1 messages after which the process stops (a start-up failure, an allocation failure)
_FATAL = {
    guide.FAILED_TO_LOAD_CONFIGURATION,
    guide.DATABASE_CONNECTION_FAILED,
    guide.FAILED_TO_BIND_PORT,
    guide.MEMORY_ALLOCATION_FAILED,
}

# §12.1 from the catalogue the daemon's own lines are written from (engine.messages: the guide's
# cause and next step, corrected where the venues contradict the guide); then the guide's other
# quoted messages (operator-surface §5.2)
_OTHERS = (
    Message("Segmentation fault", "the process crashed", "read system.log before the crash; report it",
            "§2.1", fatal=True),
    Message("Permission denied", "the daemon cannot read or write a file",
            "chown the install and log directories to the daemon's user", "§2.1 cause 4", fatal=True),
    Message("error while loading shared libraries", "a shared library is missing",
            "./scripts/install_dependencies.sh", "§2.1 cause 5", fatal=True),
    Message("Too many open files", "file-descriptor exhaustion",
            "raise ulimit -n and LimitNOFILE; look for socket leaks", "§6.3"),
    Message("listen key expired", "the user-data stream's listen key was not refreshed",
            "refresh is automatic; if it keeps failing, check the API key's permissions", "§8.1"),
    Message("Invalid symbol", "the pair was delisted or is misspelt",
            "./scripts/list_symbols.sh binance | grep BTC-USDT; fix the strategy config", "§4.3, §8.1"),
    Message("Access denied", "geographic or IP restriction",
            "verify server location; ask the exchange for a whitelist", "§8.4"),
    Message("IP not allowed", "geographic or IP restriction",
            "verify server location; ask the exchange for a whitelist", "§8.4"),
)  # fmt: skip
MESSAGES: tuple[Message, ...] = (
    *(Message(m.text, m.cause, m.next_step, m.runbook, fatal=m.text in _FATAL) for m in guide.CATALOGUE),
    *_OTHERS,
)

#: the log files the scan reads, errors.log first (every WARNING or worse lands there)
SCANNED_LOGS = ("errors.log", "system.log", "exchanges.log", "market_data.log", "orders.log",
                "risk.log", "strategies.log")  # fmt: skip


def scan(facts: Facts, daemon_up: bool) -> list[Result]:
    """One result per guide message found in the log tails: the count, the last line, the guide's
    cause and resolution. A fatal message is a failure while the daemon is down (it is why it
    stopped) and a warning while it runs (from an earlier start, or a component's)."""
    if facts.log_dir is None or not facts.logs:
        where = facts.log_dir or "the log directory"
        return [Result("logs", "log files", WARN, f"no component log found in {where}",
                       "§1.3: pass --log-dir (the daemon's daemon.log_dir)")]  # fmt: skip
    results = []
    for msg in MESSAGES:
        needle = msg.text.lower()
        hits: list[tuple[str, str]] = []
        seen: set[str] = set()
        for name in SCANNED_LOGS:
            for line in facts.logs.get(name, ()):
                # errors.log repeats every WARNING of the component logs: count a line once
                if needle in line.lower() and line not in seen:
                    seen.add(line)
                    hits.append((name, line))
        if not hits:
            continue
        status = FAIL if msg.fatal and not daemon_up else WARN
        name, last = hits[-1]
        results.append(
            Result(
                "logs",
                f'"{msg.text}"',
                status,
                f"{len(hits)} line(s); last in {name}: {last.strip()[:300]} (cause: {msg.cause})",
                f"{msg.runbook}: {msg.resolution}",
            )
        )
    if not results:
        files = ", ".join(sorted(facts.logs))
        results.append(Result("logs", "guide messages", PASS, f"none of the guide's error messages in {files}"))
    return results
