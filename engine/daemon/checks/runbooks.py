"""The guide's decision trees (operator-surface.md §11: §1.2, then §2.1 to §11.2) as pure
functions of the gathered facts. Every result names the guide section it comes from, and every
command it suggests is read-only or printed for the operator to run (the doctor never mutates).
URLs in suggested commands are quoted: the guide's unquoted ``&`` and ``?`` misbehave in a shell
(operator-surface §1.4 item 4, §2.1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from engine.daemon.checks import messages
from engine.daemon.checks.model import (
    CPU_PCT,
    DISK_PCT,
    EVENT_LOOP_LAG_S,
    FAIL,
    MARKET_DATA_US,
    MEMORY_PCT,
    ORDER_US,
    P99_CRITICAL_US,
    PASS,
    PENDING_ORDER_S,
    SKIP,
    STALE_DATA_S,
    WARN,
    Facts,
    Result,
)

QUEUE_DEPTH_WARN = 1000  # inferred: the guide says "queues not full" and names no capacity
ORDER_COUNT_WARN = 100_000  # inferred: §5.3 "Order history buildup"
_ = CPU_PCT  # §5.2: CPU is sampled by ./scripts/performance_summary.sh, not by one doctor pass


def _down(f: Facts, section: str, what: str) -> Result:
    return Result(section, what, SKIP, f"daemon API not answering ({f.errors.get('status', '')})", "see startup")


def _logs(f: Facts, name: str) -> str:
    return f"{f.log_dir}/{name}" if f.log_dir else f"/var/log/hft_system/{name}"


def _iso_age(ts: Any, now: float) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return now - t.timestamp()


def _exchanges(f: Facts) -> dict[str, dict[str, Any]]:
    ex = (f.status or {}).get("exchanges")
    return {k: v for k, v in ex.items() if isinstance(v, dict)} if isinstance(ex, dict) else {}


def daemon_up(f: Facts) -> bool:
    return f.status is not None


# §1.2 -------------------------------------------------------------------------------------------


def baseline(f: Facts) -> list[Result]:
    out = []
    if f.status is None:
        out.append(
            Result(
                "baseline",
                "status API",
                FAIL,
                f.errors.get("status", "no answer"),
                f"§2.1 System fails to start: see the startup checks; tail -100 {_logs(f, 'system.log')}",
            )
        )
    else:
        s = f.status
        out.append(
            Result(
                "baseline",
                "status API",
                PASS,
                f"{s.get('mode', '?')} {s.get('version', '')} pid {s.get('pid', '?')}, "
                f"up {float(s.get('uptime_s') or 0):.0f} s",
            )
        )
        if s.get("trading_enabled") is False:
            out.append(
                Result(
                    "baseline",
                    "trading enabled",
                    WARN,
                    "trading_enabled is false: no new orders",
                    f"§4.1 step 1: hft ctl POST /api/v1/config '{{\"trading_enabled\": true}}' "
                    f'(or curl -X POST "{f.url}/api/v1/config" -d \'{{"trading_enabled": true}}\')',
                )
            )
        else:
            out.append(Result("baseline", "trading enabled", PASS, "trading_enabled is true"))
        bad = {k: v.get("status") for k, v in _exchanges(f).items() if v.get("status") != "connected"}
        if bad:
            out.append(
                Result(
                    "baseline",
                    "exchanges",
                    FAIL,
                    ", ".join(f"{k}: {v}" for k, v in bad.items()),
                    "§2.2 Exchange connection failures (see the connectivity checks)",
                )
            )
        elif _exchanges(f):
            out.append(Result("baseline", "exchanges", PASS, f"all connected: {', '.join(_exchanges(f))}"))
    out += process(f, "baseline")
    out += resources(f)
    errs = f.logs.get("errors.log")
    if errs is None:
        out.append(Result("baseline", "recent errors", SKIP, f"no errors.log in {f.log_dir}", "pass --log-dir"))
    else:
        recent = errs[-100:]
        st = WARN if recent else PASS
        out.append(
            Result(
                "baseline",
                "recent errors",
                st,
                f"{len(recent)} line(s) in the last 100 of errors.log",
                f"§1.2: tail -100 {_logs(f, 'errors.log')}; the logs section maps each message" if recent else "",
            )
        )
    return out


def process(f: Facts, section: str) -> list[Result]:
    if f.pid_from_file is None:
        api_pid = (f.status or {}).get("pid")
        if daemon_up(f):
            return [
                Result(
                    section,
                    "process",
                    WARN,
                    f"{f.errors.get('pid_file', 'no pid file')}; the daemon answering at {f.url} is pid {api_pid}",
                    "pass --pid-file (the daemon's --pid-file or daemon.pid_file): systemd and the scripts use it",
                )
            ]
        return [
            Result(
                section,
                "process",
                FAIL,
                f.errors.get("pid_file", "no pid file"),
                "§2.1: start it with ./scripts/startup.sh; pass --pid-file if it writes elsewhere",
            )
        ]
    if not f.pid_alive:
        return [
            Result(
                section,
                "process",
                FAIL,
                f"pid {f.pid_from_file} from {f.pid_file} is not running",
                f"§2.1 Process exits immediately after start: tail -100 {_logs(f, 'system.log')}",
            )
        ]
    api_pid = (f.status or {}).get("pid")
    if isinstance(api_pid, int) and api_pid != f.pid_from_file:
        return [
            Result(
                section,
                "process",
                FAIL,
                f"the pid file says {f.pid_from_file} but the daemon answering at {f.url} is pid {api_pid}",
                "§2.1: two daemons? ps aux | grep hft; stop the stray one",
            )
        ]
    return [Result(section, "process", PASS, f"pid {f.pid_from_file} running ({f.pid_file})")]


def resources(f: Facts) -> list[Result]:
    out = []
    if f.mem_total_bytes and f.mem_available_bytes is not None:
        used = 100.0 * (1 - f.mem_available_bytes / f.mem_total_bytes)
        st = WARN if used > MEMORY_PCT else PASS
        out.append(
            Result(
                "baseline",
                "host memory",
                st,
                f"{used:.0f}% of {f.mem_total_bytes >> 20} MiB in use",
                "§5.3 High memory: free -h; ./scripts/memory_breakdown.sh" if st != PASS else "",
            )
        )
    for where, pct in f.disk_used_pct.items():
        st = FAIL if pct > DISK_PCT else PASS
        out.append(
            Result(
                "baseline",
                "disk",
                st,
                f"{where}: {pct:.0f}% used",
                f"§6.2 Disk space: ./scripts/archive_logs.sh --days=30; du -h {f.log_dir} | sort -rh | head -20"
                if st != PASS
                else "",
            )
        )
    return out


# §2.1 -------------------------------------------------------------------------------------------


def startup(f: Facts) -> list[Result]:
    out = process(f, "startup")
    out += port(f)
    out += config(f)
    if f.log_dir is not None:
        if not f.log_dir.is_dir():
            out.append(
                Result(
                    "startup",
                    "log directory",
                    WARN,
                    f"{f.log_dir} does not exist",
                    "§2.1: pass --log-dir (the daemon's daemon.log_dir)",
                )
            )
        else:
            import os

            ok = os.access(f.log_dir, os.W_OK)
            out.append(
                Result(
                    "startup",
                    "log directory",
                    PASS if ok else FAIL,
                    f"{f.log_dir} {'writable' if ok else 'not writable by this user'}",
                    "" if ok else f"§2.1 cause 4 Permission denied: chown -R hft_user:hft_group {f.log_dir}",
                )
            )
    return out


def port(f: Facts) -> list[Result]:
    p = f.port
    owners = f.port_owner_pids
    lsof = (
        f'§2.1 cause 3 ("Failed to bind to port {p}: Address already in use"): sudo lsof -i :{p}, then '
        "kill that process (sudo kill -9 <PID>) or change the port in configuration (daemon.api.port)"
    )
    daemon_pids = {
        x for x in (f.pid_from_file if f.pid_alive else None, (f.status or {}).get("pid")) if isinstance(x, int)
    }
    if owners is None:
        return [Result("startup", f"port {p}", SKIP, "cannot list listening sockets (/proc/net/tcp)")]
    if not owners:
        if daemon_up(f):
            return [Result("startup", f"port {p}", PASS, f"{f.url} answers")]
        return [
            Result(
                "startup",
                f"port {p}",
                FAIL,
                f"nothing listens on port {p}",
                f"§2.1: the daemon is not running: tail -100 {_logs(f, 'system.log')}",
            )
        ]
    theirs = [x for x in owners if x not in daemon_pids]
    names = "; ".join(f"pid {x}: {f.port_owner_cmdlines.get(x, '')[:120]}" for x in owners)
    if daemon_pids and not theirs:
        return [Result("startup", f"port {p}", PASS, f"held by the daemon ({names})")]
    if daemon_pids and set(owners) & daemon_pids:
        # the API process inherits the daemon's socket: a child holding it too is expected
        return [Result("startup", f"port {p}", PASS, f"held by the daemon and its API process ({names})")]
    if not daemon_up(f) or not daemon_pids:
        return [
            Result("startup", f"port {p}", FAIL, f"port {p} is held by another process, not the daemon ({names})", lsof)
        ]
    return [
        Result(
            "startup",
            f"port {p}",
            FAIL,
            f"the daemon (pid {sorted(daemon_pids)}) is not the one answering on port {p} ({names})",
            lsof,
        )
    ]


def config(f: Facts) -> list[Result]:
    p = f.config_path
    if p is None or (f.config is None and f.config_error is None):
        return [
            Result(
                "startup",
                "config",
                WARN,
                f"{p} not found here",
                "§2.1 cause 1: run from the install directory or pass --config; "
                "git checkout config/production.json restores it",
            )
        ]
    if f.config_error:
        return [
            Result(
                "startup",
                "config",
                FAIL,
                f.config_error,
                f'§2.1 cause 1 / §12 "Failed to load configuration": ls -l {p}; jq . {p}; '
                "git checkout config/production.json if it was damaged",
            )
        ]
    return [Result("startup", "config", PASS, f"{p} loads")]


# §2.2, §10.2 ------------------------------------------------------------------------------------


def connectivity(f: Facts) -> list[Result]:
    if f.status is None:
        return [_down(f, "connectivity", "exchanges")]
    ex = _exchanges(f)
    if not ex:
        return [Result("connectivity", "exchanges", WARN, "the status names no exchange", "§2.2")]
    out = []
    for name, e in ex.items():
        st = e.get("status")
        if st == "connected":
            out.append(Result("connectivity", name, PASS, "connected"))
            continue
        out.append(
            Result(
                "connectivity",
                name,
                FAIL,
                f"status {st!r}",
                f'§2.2: grep "{name}" {_logs(f, "exchanges.log")} | tail -50; '
                f"./scripts/check_exchange_status.sh; ./scripts/test_api_key.sh {name}; then reconnect: "
                f"hft ctl POST /api/v1/exchanges/{name}/reconnect",
            )
        )
    return out


# §3.1-§3.3 --------------------------------------------------------------------------------------


def market_data(f: Facts) -> list[Result]:
    if f.status is None:
        return [_down(f, "market_data", "books")]
    out = []
    for name, e in _exchanges(f).items():
        stale_s = float(f.exchange_configs.get(name, {}).get("stale_data_timeout_s") or STALE_DATA_S)
        books = e.get("books") if isinstance(e.get("books"), dict) else {}
        if not books:
            out.append(
                Result(
                    "market_data",
                    f"{name} books",
                    WARN,
                    "no book reported",
                    f"§3.1 No market data: ./scripts/check_websocket.sh {name}; "
                    f'grep "subscribe" {_logs(f, "market_data.log")} | tail -20',
                )
            )
        for sym, b in books.items():
            if not isinstance(b, dict):
                continue
            age_ms = b.get("age_ms")
            age = float(age_ms) / 1000 if isinstance(age_ms, int | float) else None
            what = f"{name} {sym}"
            if b.get("valid") is False:
                out.append(
                    Result(
                        "market_data",
                        what,
                        FAIL,
                        f"book invalid: {b.get('reason') or 'no reason given'}",
                        f"§3.3 Incorrect order book: "
                        f'curl -s "{f.url}/api/v1/marketdata/orderbook/{name}/{sym}" | jq .; '
                        f'grep "orderbook.*{sym}" {_logs(f, "market_data.log")} | tail -50; '
                        f"then a fresh snapshot: hft ctl POST /api/v1/marketdata/snapshot/{name}/{sym}",
                    )
                )
            elif age is None:
                out.append(
                    Result(
                        "market_data",
                        what,
                        WARN,
                        "no data age reported (no update yet?)",
                        "§3.1: ./scripts/check_market_data_latency.sh",
                    )
                )
            elif age > stale_s:
                out.append(
                    Result(
                        "market_data",
                        what,
                        FAIL,
                        f"stale: last update {age:.1f} s ago (> {stale_s:g} s)",
                        f"§3.2 Stale market data: ./scripts/check_market_data_latency.sh; "
                        f"./scripts/check_websocket.sh {name}; date vs ntpdate -q time.nist.gov; "
                        f'curl -s "{f.url}/api/v1/metrics" | grep queue_depth',
                    )
                )
            else:
                out.append(Result("market_data", what, PASS, f"valid, data age {age * 1000:.0f} ms"))
        gaps = e.get("sequence_gaps")
        if not isinstance(gaps, int | float):
            gaps = f.metric_value("sequence_gaps_total", exchange=name)
        if gaps:
            out.append(
                Result(
                    "market_data",
                    f"{name} sequence gaps",
                    WARN,
                    f"{int(gaps)} sequence gap(s) since start",
                    f'§3.3: grep "sequence gap" {_logs(f, "market_data.log")}; the book resyncs by itself; '
                    f"if it stays wrong: hft ctl POST /api/v1/exchanges/{name}/reconnect",
                )
            )
        elif gaps is not None:
            out.append(Result("market_data", f"{name} sequence gaps", PASS, "none"))
        depth = f.metric_value("market_data_queue_depth", exchange=name)
        if depth is not None:
            st = WARN if depth > QUEUE_DEPTH_WARN else PASS
            out.append(
                Result(
                    "market_data",
                    f"{name} queue depth",
                    st,
                    f"market_data_queue_depth {depth:g}",
                    "§3.2 step 4 Processing backlog: reduce subscriptions" if st != PASS else "",
                )
            )
    return out


# §4.1-§4.3, §9.3 --------------------------------------------------------------------------------


_REJECT_BRANCHES = (
    ("insufficient balance", '§4.3 "Insufficient balance": ./scripts/check_balances.sh {ex}; reduce order sizes'),
    ("invalid symbol", '§4.3 "Invalid symbol": ./scripts/list_symbols.sh {ex} | grep {sym}; fix the strategy config'),
    ("symbol not found", '§4.3 "Invalid symbol": ./scripts/list_symbols.sh {ex} | grep {sym}; fix the strategy config'),
    (
        "price filter",
        '§4.3 "Price filter violation": ./scripts/get_exchange_filters.sh {ex} {sym}; round the price to the tick size',
    ),
    (
        "price too",
        '§4.3 "Price filter violation": ./scripts/get_exchange_filters.sh {ex} {sym}; round the price to the tick size',
    ),
    (
        "lot_size",
        '§4.3 "LOT_SIZE violation": ./scripts/get_exchange_filters.sh {ex} {sym} | jq .filters.LOT_SIZE; '
        "round the quantity",
    ),
    (
        "invalid quantity",
        '§4.3 "LOT_SIZE violation": ./scripts/get_exchange_filters.sh {ex} {sym} | jq .filters.LOT_SIZE; '
        "round the quantity",
    ),
    (
        "rate limit",
        '§4.3 "Rate limit exceeded": grep "order submit" {orders_log} | tail -1000 | '
        "awk '{{print $1\" \"$2}}' | uniq -c",
    ),
    (
        "position limit",
        '§4.1 Position limit exceeded: curl -s "{url}/api/v1/risk/summary" | jq .; close positions or raise the limit',
    ),
    ("risk", '§4.1 step 3: grep "risk check failed" {risk_log} | tail -20; review the limits'),
    (
        "immediately match",
        "post-only order would have crossed: the strategy's quotes are at or through the touch (§9.1 parameters)",
    ),
)


def orders(f: Facts) -> list[Result]:
    if f.status is None:
        return [_down(f, "orders", "orders")]
    out = []
    if f.orders_pending is None:
        out.append(Result("orders", "pending", SKIP, f.errors.get("orders_pending", "not read")))
    else:
        old = [
            (o, a)
            for o in f.orders_pending
            if (a := _iso_age(o.get("created_at"), f.now)) is not None and a > PENDING_ORDER_S
        ]
        if old:
            ids = ", ".join(f"{o.get('order_id')} ({a:.0f} s)" for o, a in old[:10])
            oid = old[0][0].get("order_id")
            out.append(
                Result(
                    "orders",
                    "pending > 30 s",
                    FAIL,
                    f"{len(old)} order(s) pending for over {PENDING_ORDER_S:g} s: {ids}",
                    f'§4.2 Orders stuck in pending: grep "order_id: {oid}" {_logs(f, "orders.log")}; '
                    f"./scripts/query_exchange_order.sh {old[0][0].get('exchange', 'binance')} <EXCHANGE_ORDER_ID>; "
                    f"then hft ctl POST /api/v1/orders/{oid}/reconcile or hft ctl DELETE /api/v1/orders/{oid}",
                )
            )
        else:
            out.append(
                Result(
                    "orders",
                    "pending > 30 s",
                    PASS,
                    f"{len(f.orders_pending)} pending, none older than {PENDING_ORDER_S:g} s",
                )
            )
    if f.orders_rejected is None:
        out.append(Result("orders", "rejected", SKIP, f.errors.get("orders_rejected", "not read")))
    elif not f.orders_rejected:
        out.append(Result("orders", "rejected", PASS, "no rejected order"))
    else:
        by_msg: dict[str, list[dict[str, Any]]] = {}
        for o in f.orders_rejected:
            by_msg.setdefault(str(o.get("error_message") or "(no error_message)"), []).append(o)
        for msg, group in sorted(by_msg.items(), key=lambda kv: -len(kv[1])):
            o = group[-1]
            ctx = {
                "ex": o.get("exchange") or "binance",
                "sym": o.get("symbol") or "BTC-USDT",
                "url": f.url,
                "orders_log": _logs(f, "orders.log"),
                "risk_log": _logs(f, "risk.log"),
            }
            step = next(
                (t.format(**ctx) for k, t in _REJECT_BRANCHES if k in msg.lower()),
                "§4.3 Orders rejected by exchange: branch on error_message",
            )
            out.append(
                Result(
                    "orders",
                    "rejected",
                    WARN,
                    f'{len(group)} rejected with error_message "{msg}" (last: order {o.get("order_id")}, '
                    f"{o.get('symbol', '')} {o.get('strategy_id', '')})",
                    step + f'; list them: curl -s "{f.url}/api/v1/orders?status=rejected" | '
                    "jq '.orders[] | {order_id, error_message}'",
                )
            )
    if f.risk_violations:
        last = f.risk_violations[-1]
        out.append(
            Result(
                "orders",
                "risk violations",
                WARN,
                f"{len(f.risk_violations)} violation(s); last: {last.get('check', '')} {last.get('message', '')} "
                f"({last.get('strategy_id', '')} {last.get('symbol', '')})",
                f'§9.3: curl -s "{f.url}/api/v1/risk/violations" | jq .; grep "risk check failed" '
                f"{_logs(f, 'risk.log')} | tail -20; review and adjust risk limits or reduce order sizes (§4.1)",
            )
        )
    elif f.risk_violations is not None:
        out.append(Result("orders", "risk violations", PASS, "none"))
    return out


# §5.1 -------------------------------------------------------------------------------------------

#: stage -> (threshold µs on P99, how bad it is over it, the guide's next step)
_LATENCY = {
    "tick_to_order": (
        P99_CRITICAL_US,
        FAIL,
        "§5.1 step 4 End-to-end: ./scripts/measure_e2e_latency.sh; "
        "./scripts/profile_critical_path.sh; ./scripts/check_blocking_calls.sh",
    ),
    "market_data": (
        MARKET_DATA_US,
        WARN,
        "§5.1 step 2 Market data latency (> 100μs): top -bn1 | grep hft; "
        'curl -s "{url}/api/v1/metrics" | grep market_data_queue_depth',
    ),
    "order_submit": (ORDER_US, WARN, '§5.1 step 3 Order latency (> 500μs): grep "risk check" {risk_log} | tail -100'),
    "risk_check": (ORDER_US, WARN, '§5.1 step 3: grep "risk check" {risk_log} | tail -100'),
}


def latency(f: Facts) -> list[Result]:
    if f.status is None:
        return [_down(f, "latency", "latency")]
    if f.metrics is None:
        return [
            Result("latency", "metrics", FAIL, f.errors.get("metrics", "not read"), "§11.2: see the monitoring checks")
        ]
    out = []
    lines = [m for m in f.metrics if str(m.get("name", "")).endswith("_latency") and "p99" in m]
    for m in lines:
        stage = str(m["name"]).removeprefix("hft_").removesuffix("_latency")
        p50, p99, p999 = (m.get(k) for k in ("p50", "p99", "p999"))
        what = f"{stage} P99"
        desc = f"P50={p50}us P99={p99}us P999={p999}us over {m.get('count', '?')} samples"
        if not m.get("count") or not isinstance(p99, int | float):
            out.append(Result("latency", what, SKIP, "no samples yet"))
            continue
        limit, bad, step = _LATENCY.get(stage, (None, PASS, ""))
        if limit is not None and p99 > limit:
            out.append(
                Result(
                    "latency",
                    what,
                    bad,
                    f"{desc} (> {limit:g} us)",
                    step.format(url=f.url, risk_log=_logs(f, "risk.log")),
                )
            )
        else:
            out.append(Result("latency", what, PASS, desc + (f" (limit {limit:g} us)" if limit else "")))
    if not lines:
        out.append(
            Result(
                "latency",
                "latency lines",
                WARN,
                "/api/v1/metrics has no *_latency line",
                f'§5.1: curl -s "{f.url}/api/v1/metrics" | grep latency',
            )
        )
    lag = f.metric_value("event_loop_lag_seconds")
    if lag is not None:
        st = WARN if lag > EVENT_LOOP_LAG_S else PASS
        out.append(
            Result(
                "latency",
                "event loop lag",
                st,
                f"{lag * 1e6:.0f} us",
                "§5.1 step 4: ./scripts/check_blocking_calls.sh" if st != PASS else "",
            )
        )
    return out


# §5.3, §6.1 -------------------------------------------------------------------------------------


def memory(f: Facts) -> list[Result]:
    out = []
    dmem = (f.status or {}).get("memory") if isinstance((f.status or {}).get("memory"), dict) else {}
    status_limit = dmem.get("limit_bytes") if isinstance(dmem.get("limit_bytes"), int) else None
    limit = f.memory_limit_config_bytes or status_limit or f.mem_limit_bytes or f.mem_total_bytes
    threshold = f.memory_threshold_pct
    if f.rss_bytes is None or not limit:
        out.append(Result("memory", "daemon RSS", SKIP, "daemon pid unknown (no status, no live pid file)"))
    else:
        pct = 100.0 * f.rss_bytes / limit
        where = (
            "daemon.memory_management.memory_limit_mb"
            if f.memory_limit_config_bytes
            else f"the daemon's limit ({dmem.get('limit_source', '?')})"
            if status_limit
            else "its cgroup limit"
            if f.mem_limit_bytes
            else "host memory"
        )
        desc = (
            f"RSS {f.rss_bytes / 2**20:.0f} MiB = {pct:.2f}% of {where} ({limit >> 20} MiB); threshold {threshold:g}%"
        )
        if pct > threshold:
            out.append(
                Result(
                    "memory",
                    "daemon RSS",
                    FAIL,
                    desc,
                    "§5.3 High memory: ./scripts/memory_breakdown.sh; kill -USR1 $(cat "
                    f"{f.pid_file}); ./scripts/analyze_heap.sh /tmp/hft_heap_*.dump; "
                    f'curl -s "{f.url}/api/v1/metrics" | grep orderbook_memory_mb',
                )
            )
        else:
            out.append(Result("memory", "daemon RSS", PASS, desc))
    if dmem.get("pressure"):
        out.append(
            Result(
                "memory",
                "memory pressure",
                WARN,
                f"the daemon reports memory pressure (usage {dmem.get('usage_ratio')}): it is shedding load "
                "(reduced book depth, archived orders, sampled market data)",
                "§6.1: find the cause before it reaches the limit: ./scripts/memory_breakdown.sh; "
                "./scripts/check_memory_leak.sh",
            )
        )
    if f.status is not None and f.metrics is not None:
        ob = f.metric_value("orderbook_memory_mb")
        if ob is not None:
            out.append(Result("memory", "orderbook_memory_mb", PASS, f"{ob:.1f} MB in books"))
        oc = f.metric_value("order_count")
        if oc is not None:
            st = WARN if oc > ORDER_COUNT_WARN else PASS
            out.append(
                Result(
                    "memory",
                    "order_count",
                    st,
                    f"{oc:g} orders held in memory",
                    "§5.3 step 4: hft ctl POST /api/v1/orders/archive '{\"older_than_hours\": 24}'"
                    if st != PASS
                    else "",
                )
            )
    return out


# §2.3, §7 ---------------------------------------------------------------------------------------


_DB_STATUS = {"PASS": PASS, "WARN": WARN, "FAIL": FAIL, "SKIP": SKIP}


def database(f: Facts) -> list[Result]:
    """§2.3 (and §7.1/§7.2) against the store the config names, read-only: reachable and SELECT 1,
    connections against max_connections, long-running queries, disk of a local data directory;
    for the embedded DuckDB store, its file. The probe is ``engine.store.ops.probe_config``,
    gathered into the facts as ``database``."""
    probe = f.database
    if probe is None:
        return [Result("database", "database", SKIP, "not checked: no readable config names the store")]
    if isinstance(probe, str):
        return [Result("database", "database config", FAIL, probe, "§2.1: fix the config's database section")]
    return [
        Result("database", str(c.get("check")), _DB_STATUS.get(str(c.get("status")), WARN), str(c.get("detail")),
               str(c.get("next_step") or ""))
        for c in probe
    ]  # fmt: skip


# §8, §10.2 --------------------------------------------------------------------------------------


def exchange(f: Facts) -> list[Result]:
    out = []
    for venue, probe in f.venue_probes.items():
        if probe.get("maintenance"):
            out.append(
                Result(
                    "exchange",
                    f"{venue} venue",
                    FAIL,
                    f"{venue} reports maintenance: {probe.get('detail')}",
                    "§8.4: wait for maintenance to complete; the daemon reconnects when it is back",
                )
            )
        elif probe.get("ok") is False:
            out.append(
                Result(
                    "exchange",
                    f"{venue} venue",
                    FAIL,
                    f"{venue} does not answer: {probe.get('detail')}",
                    f'§2.2 Is exchange API working? curl -I "{probe.get("url")}"; ping; '
                    "check the exchange status page; wait for recovery",
                )
            )
        elif probe.get("ok"):
            out.append(Result("exchange", f"{venue} venue", PASS, probe.get("detail", "")))
        else:
            out.append(Result("exchange", f"{venue} venue", SKIP, probe.get("detail", "")))
    for name, e in _exchanges(f).items():
        rc = e.get("reconnects")
        if not isinstance(rc, int | float):
            rc = f.metric_value("reconnects_total", exchange=name)
        if rc:
            out.append(
                Result(
                    "exchange",
                    f"{name} reconnects",
                    WARN,
                    f"{int(rc)} reconnect(s) since start",
                    f'§10.2 Connection drops: grep -E "(disconnect|reconnect)" {_logs(f, "exchanges.log")} | tail -50',
                )
            )
        used = f.metric_value("rate_limit_weight_used", exchange=name)
        cap = (f.exchange_configs.get(name, {}).get("rate_limits") or {}).get("request_weight_per_minute")
        if used is not None and isinstance(cap, int | float) and cap:
            pct = 100.0 * used / cap
            st = WARN if pct > 80 else PASS
            out.append(
                Result(
                    "exchange",
                    f"{name} rate limit",
                    st,
                    f"weight {used:g} of {cap:g}/min ({pct:.0f}%)",
                    f'§2.2 step 7: grep "rate limit" {_logs(f, "exchanges.log")} | tail -20' if st != PASS else "",
                )
            )
    log = f.logs.get("exchanges.log") or []
    for needle, step in (
        ("rate limit", "§2.2 step 7: review recent requests, back off; adjust rate_limits in the exchange config"),
        ("deprecat", "§8.4 API deprecation: review the exchange changelog"),
    ):
        hits = [x for x in log if needle in x.lower()]
        if hits:
            out.append(
                Result(
                    "exchange",
                    f'"{needle}" in exchanges.log',
                    WARN,
                    f"{len(hits)} line(s); last: {hits[-1][:200]}",
                    f'{step}; grep -i "{needle}" {_logs(f, "exchanges.log")} | tail -20',
                )
            )
    if not out:
        out.append(Result("exchange", "venues", SKIP, "no exchange config found and no status to read"))
    return out


# §4.1, §9.1, §9.2 -------------------------------------------------------------------------------


def strategy(f: Facts) -> list[Result]:
    if f.status is None:
        return [_down(f, "strategy", "strategies")]
    if f.strategies is None:
        return [Result("strategy", "strategies", SKIP, f.errors.get("strategies", "not read"))]
    if not f.strategies:
        return [Result("strategy", "strategies", WARN, "no strategy loaded", "§4.1: check the config's strategies")]
    out = []
    uptime = float(f.status.get("uptime_s") or 0)
    for s in f.strategies:
        sid = s.get("strategy_id")
        st = s.get("status")
        perf = s.get("performance") if isinstance(s.get("performance"), dict) else {}
        if st != "running":
            out.append(
                Result(
                    "strategy",
                    str(sid),
                    WARN,
                    f"status {st!r}",
                    f'§4.1 step 2 "If stopped": hft ctl POST /api/v1/strategies/{sid}/start '
                    f'(curl -X POST "{f.url}/api/v1/strategies/{sid}/start")',
                )
            )
        elif perf.get("orders_submitted") == 0 and uptime > 60:
            out.append(
                Result(
                    "strategy",
                    str(sid),
                    WARN,
                    f"running for {uptime:.0f} s and no order submitted",
                    f'§9.1 Strategy not generating signals: grep "strategy_id: {sid}" '
                    f"{_logs(f, 'strategies.log')} | tail -100; "
                    f'curl -s "{f.url}/api/v1/strategies/{sid}" | jq .config.parameters',
                )
            )
        else:
            pnl = perf.get("net_pnl")
            out.append(
                Result(
                    "strategy", str(sid), PASS, f"running; orders {perf.get('orders_submitted', '?')}, net P&L {pnl}"
                )
            )
    return out


# §11.1, §11.2 -----------------------------------------------------------------------------------


def monitoring(f: Facts) -> list[Result]:
    if f.status is None:
        return [_down(f, "monitoring", "metrics")]
    out = []
    if f.metrics is None:
        out.append(
            Result(
                "monitoring",
                "/api/v1/metrics",
                FAIL,
                f.errors.get("metrics", "not read"),
                f'§11.2 step 1: curl -s "{f.url}/api/v1/metrics" | head -20',
            )
        )
    else:
        out.append(Result("monitoring", "/api/v1/metrics", PASS, f"{len(f.metrics)} JSON lines"))
    if f.prometheus_text is None:
        out.append(
            Result(
                "monitoring",
                "/metrics",
                FAIL,
                f.errors.get("prometheus_text", "not read"),
                "§11.2: Prometheus scrapes /metrics (job hft_system)",
            )
        )
    elif "hft_" not in f.prometheus_text:
        out.append(Result("monitoring", "/metrics", FAIL, "answers, but no hft_ series", "§11.2"))
    else:
        out.append(Result("monitoring", "/metrics", PASS, "Prometheus text with hft_ series"))
    if not f.prometheus_url:
        out.append(
            Result("monitoring", "prometheus", SKIP, "no Prometheus URL (--prometheus-url or HFT_PROMETHEUS_URL)")
        )
    elif f.prometheus_up is None:
        out.append(
            Result(
                "monitoring",
                "prometheus",
                FAIL,
                f.errors.get("prometheus", "no answer"),
                f'§11.1 step 1: curl -s "{f.prometheus_url}/api/v1/query?query=up" | jq .',
            )
        )
    else:
        vals = [r.get("value", [None, None])[1] for r in f.prometheus_up]
        if "1" in vals:
            out.append(Result("monitoring", "prometheus", PASS, 'up{job="hft_system"} = 1'))
        else:
            out.append(
                Result(
                    "monitoring",
                    "prometheus",
                    FAIL,
                    f'up{{job="hft_system"}} = {vals or "no series"}',
                    '§11.2 step 4: grep "hft_system" /etc/prometheus/prometheus.yml; '
                    f"curl -s '{f.prometheus_url}/api/v1/query?query=up{{job=\"hft_system\"}}' | jq .",
                )
            )
    return out


def logs(f: Facts) -> list[Result]:
    return messages.scan(f, daemon_up(f))


SECTION_CHECKS: dict[str, Callable[[Facts], list[Result]]] = {
    "baseline": baseline,
    "startup": startup,
    "connectivity": connectivity,
    "market_data": market_data,
    "orders": orders,
    "latency": latency,
    "memory": memory,
    "database": database,
    "exchange": exchange,
    "strategy": strategy,
    "monitoring": monitoring,
    "logs": logs,
}
