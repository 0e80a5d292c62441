"""Gather the facts the checks decide on: read-only GETs to the daemon's API, /proc, the pid
file, the config files and the tails of the component logs. Nothing here changes any state."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from engine.daemon.checks.model import Facts
from engine.daemon.procstats import pid_alive

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_PID_FILE = "/var/run/hft_system.pid"
DEFAULT_LOG_DIR = "/var/log/hft_system"
DEFAULT_CONFIG = "config/production.json"
LOG_FILES = ("system.log", "errors.log", "market_data.log", "orders.log", "strategies.log", "risk.log", "exchanges.log")
TAIL_BYTES = 1 << 20  # the last MiB of each log: enough for the recent story, bounded on a full disk
TIMEOUT_S = 5.0


class HttpError(Exception):
    """A GET that did not answer 200 with the expected body; the message is for the operator."""


def http_get(url: str, accept: str = "*/*", timeout: float = TIMEOUT_S) -> tuple[int, str]:
    """``GET url``; signed with ``HFT_API_KEY``/``HFT_API_SECRET`` when those are set (a daemon
    bound off loopback wants auth on reads too: docs/daemon-contract.md "Auth")."""
    headers = {"Accept": accept, "User-Agent": "hft-doctor"}
    key, secret = os.environ.get("HFT_API_KEY"), os.environ.get("HFT_API_SECRET")
    if key and secret:
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        ts = str(int(time.time() * 1000))
        sig = hmac.new(secret.encode(), f"{ts}GET{path}".encode(), hashlib.sha256).hexdigest()
        headers |= {"X-API-KEY": key, "X-TIMESTAMP": ts, "X-SIGNATURE": sig}
    req = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")[:300]
        return exc.code, body
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HttpError(f"no answer from {url}: {reason}") from None


def get_json(url: str) -> Any:
    status, body = http_get(url, accept="application/json")
    if status != 200:
        raise HttpError(f"GET {url} answered {status}: {body.strip()[:200]}")
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise HttpError(f"GET {url} answered 200 but not JSON: {body[:120]!r}") from None


def get_metrics_lines(base: str) -> list[dict[str, Any]]:
    """``/api/v1/metrics`` as curl gets it: one JSON object per line."""
    status, body = http_get(f"{base}/api/v1/metrics")
    if status != 200:
        raise HttpError(f"GET {base}/api/v1/metrics answered {status}: {body.strip()[:200]}")
    lines = []
    for n, raw in enumerate(body.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            raise HttpError(f"/api/v1/metrics line {n} is not one JSON object: {raw[:120]!r}") from None
        if isinstance(obj, dict):
            lines.append(obj)
    return lines


def tail(path: Path, max_bytes: int = TAIL_BYTES) -> list[str]:
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - max_bytes))
        data = fh.read()
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > max_bytes and lines else lines  # the first line is cut


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def listening_pids(port: int) -> list[int] | None:
    """The processes holding a TCP socket listening on ``port`` (any address), from /proc;
    ``None`` when /proc cannot say (not Linux)."""
    inodes: set[str] = set()
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    if not found_table:
        return None
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    pids.append(int(entry.name))
                    break
        except OSError:
            continue
    return sorted(pids)


def meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    except OSError:
        pass
    return out


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cgroup_memory_max(pid: int) -> int | None:
    """The memory limit of the process's cgroup (v2), e.g. the unit's ``MemoryMax``."""
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                raw = Path("/sys/fs/cgroup", line[3:].lstrip("/"), "memory.max").read_text().strip()
                return None if raw == "max" else int(raw)
    except (OSError, ValueError):
        return None
    return None


def load_config(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The config as the daemon loads it: JSON first, then the run-config checks. The error is in
    the guide's words."""
    from engine.config import read_json
    from engine.errors import HftError

    try:
        data = read_json(path)
    except HftError as exc:
        return None, f"Failed to load configuration from {path}: {exc}"
    mode = "live" if str(data.get("mode", "")).lower() == "live" else "paper"
    try:
        from engine.runners.spec import load_run_spec

        load_run_spec(path, mode=mode)
    except HftError as exc:
        return data, f"Failed to load configuration from {path}: {exc}"
    except Exception as exc:  # a loader bug must not hide the other checks
        return data, f"Failed to load configuration from {path}: {type(exc).__name__}: {exc}"
    return data, None


def exchange_configs(config_path: Path, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The venue configs the run config names (``exchange``/``exchanges``), keyed by venue name;
    when it names none, every ``config/exchanges/*.json`` beside it. A venue the system ships but
    this config does not trade on is not the operator's concern (nor reachable, maybe)."""
    names: list[str] = []
    for key in ("exchange", "exchanges"):
        v = config.get(key)
        names += [v] if isinstance(v, str) else [x for x in v or () if isinstance(x, str)]
    paths: list[Path] = []
    bases = [config_path.resolve().parent, Path.cwd(), Path(__file__).resolve().parents[3]]
    for name in names:
        for base in bases:
            p = base / name
            if p.is_file():
                paths.append(p)
                break
    for base in bases[:2] if not paths else ():
        d = base / "exchanges" if base == bases[0] else base / "config" / "exchanges"
        paths += sorted(d.glob("*.json")) if d.is_dir() else []
    out: dict[str, dict[str, Any]] = {}
    for p in paths:
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("venue"), str):
            out.setdefault(data["venue"], data)
    return out


def daemon_section(config: dict[str, Any] | None) -> dict[str, Any]:
    d = (config or {}).get("daemon")
    return d if isinstance(d, dict) else {}


def apply_daemon_settings(f: Facts, path: Path) -> dict[str, Any]:
    """The config's ``daemon`` section as the daemon reads it (engine.daemon.config): where its pid
    file and logs are, its memory threshold. Returns the raw section for the defaults it lacks."""
    from engine.errors import HftError

    try:
        from engine.daemon.config import load_daemon_settings

        ds = load_daemon_settings(path)
    except (ImportError, HftError):
        return {}
    f.memory_threshold_pct = float(ds.memory.high_pressure_threshold) * 100
    if ds.memory.memory_limit_mb:
        f.memory_limit_config_bytes = int(ds.memory.memory_limit_mb * 2**20)
    if not ds.present:
        return {}
    return {"pid_file": str(ds.pid_file), "log_dir": str(ds.log_dir), "heap_dump_dir": str(ds.heap_dump_dir)}


def gather(
    url: str,
    *,
    log_dir: str | None = None,
    config: str | None = None,
    pid_file: str | None = None,
    prometheus_url: str | None = None,
    want: frozenset[str] = frozenset(),
) -> Facts:
    """Everything the selected sections need (``want`` empty = all)."""
    base = url.rstrip("/")
    f = Facts(url=base, now=time.time())
    everything = not want

    # config first: it names the pid file, the log directory and the venues
    cfg_path = Path(config or DEFAULT_CONFIG)
    f.config_path = cfg_path
    if cfg_path.exists() or config:
        f.config, f.config_error = load_config(cfg_path)
        if f.config:
            f.exchange_configs = exchange_configs(cfg_path, f.config)
    dsec = apply_daemon_settings(f, cfg_path) if f.config is not None else {}

    # the API
    def fetch(name: str, fn: Any) -> Any:
        try:
            return fn()
        except HttpError as exc:
            f.errors[name] = str(exc)
            return None

    f.status = fetch("status", lambda: get_json(f"{base}/api/v1/status"))
    up = f.status is not None
    if up:
        if everything or want & {"latency", "memory", "market_data", "monitoring", "exchange", "baseline"}:
            f.metrics = fetch("metrics", lambda: get_metrics_lines(base))
        if everything or want & {"monitoring"}:
            f.prometheus_text = fetch("prometheus_text", lambda: _prom_text(base))
        if everything or want & {"orders", "strategy"}:
            q = urllib.parse.urlencode
            pend = fetch(
                "orders_pending", lambda: get_json(f"{base}/api/v1/orders?{q({'status': 'pending', 'limit': 10000})}")
            )
            f.orders_pending = None if pend is None else list(pend.get("orders") or [])
            rej = fetch(
                "orders_rejected", lambda: get_json(f"{base}/api/v1/orders?{q({'status': 'rejected', 'limit': 1000})}")
            )
            f.orders_rejected = None if rej is None else list(rej.get("orders") or [])
            viol = fetch("risk_violations", lambda: get_json(f"{base}/api/v1/risk/violations"))
            f.risk_violations = None if viol is None else list(viol.get("violations") or [])
        if everything or want & {"strategy", "orders"}:
            st = fetch("strategies", lambda: get_json(f"{base}/api/v1/strategies"))
            if st is not None:
                f.strategies = []
                for s in st.get("strategies") or []:
                    sid = s.get("strategy_id")
                    detail = fetch(
                        f"strategy {sid}",
                        lambda sid=sid: get_json(f"{base}/api/v1/strategies/{urllib.parse.quote(str(sid), safe='')}"),
                    )
                    f.strategies.append(detail if isinstance(detail, dict) else s)

    # the host
    f.pid_file = Path(pid_file or dsec.get("pid_file") or DEFAULT_PID_FILE)
    try:
        f.pid_from_file = int(f.pid_file.read_text().strip())
    except FileNotFoundError:
        f.errors["pid_file"] = f"no pid file at {f.pid_file}"
    except (OSError, ValueError) as exc:
        f.errors["pid_file"] = f"pid file {f.pid_file} unreadable: {exc}"
    if f.pid_from_file is not None:
        f.pid_alive = pid_alive(f.pid_from_file)
    f.port = urllib.parse.urlsplit(base).port or 80
    f.port_owner_pids = listening_pids(f.port)
    for pid in f.port_owner_pids or ():
        f.port_owner_cmdlines[pid] = cmdline(pid)

    daemon_pid = (f.status or {}).get("pid") or (f.pid_from_file if f.pid_alive else None)
    if isinstance(daemon_pid, int):
        f.rss_bytes = rss_bytes(daemon_pid)
        f.mem_limit_bytes = cgroup_memory_max(daemon_pid)
    mi = meminfo()
    f.mem_total_bytes, f.mem_available_bytes = mi.get("MemTotal"), mi.get("MemAvailable")

    # the daemon says where it logs (status.log_dir): right even when started with --log-dir
    ld = Path(log_dir or (f.status or {}).get("log_dir") or dsec.get("log_dir") or DEFAULT_LOG_DIR)
    f.log_dir = ld
    for name in LOG_FILES:
        p = ld / name
        if p.is_file():
            try:
                f.logs[name] = tail(p)
            except OSError as exc:
                f.errors[f"log {name}"] = f"{p}: {exc.strerror or exc}"
    for label, p in (("log dir", ld), ("working dir", Path.cwd())):
        try:
            du = shutil.disk_usage(p)
            f.disk_used_pct[f"{label} {p}"] = 100.0 * du.used / du.total if du.total else 0.0
        except OSError:
            continue

    if everything or want & {"exchange"}:
        running = ((f.status or {}).get("exchanges") or {}) if isinstance(f.status, dict) else {}
        for venue, cfg in f.exchange_configs.items():
            used = running.get(venue, {}).get("endpoint") if isinstance(running.get(venue), dict) else None
            probe_cfg = {**cfg, "rest_url": used} if used else cfg
            f.venue_probes[venue] = venue_probe(venue, probe_cfg, from_daemon=bool(used))

    if f.config is not None and (everything or "database" in want):
        from engine.store.ops import probe_config

        f.database = probe_config(cfg_path)

    f.prometheus_url = prometheus_url or os.environ.get("HFT_PROMETHEUS_URL") or None
    if f.prometheus_url and (everything or "monitoring" in want):
        q = urllib.parse.urlencode({"query": 'up{job="hft_system"}'})
        ans = fetch("prometheus", lambda: get_json(f"{f.prometheus_url.rstrip('/')}/api/v1/query?{q}"))
        if isinstance(ans, dict):
            f.prometheus_up = list((ans.get("data") or {}).get("result") or [])
    return f


def _prom_text(base: str) -> str:
    status, body = http_get(f"{base}/metrics", accept="text/plain")
    if status != 200:
        raise HttpError(f"GET {base}/metrics answered {status}")
    return body


def venue_rest_url(venue: str, cfg: dict[str, Any], from_daemon: bool = False) -> str | None:
    """The venue's REST base: what the running daemon uses (``from_daemon``: its status said so),
    else ``<VENUE>_REST_URL`` from the environment (how the adapters are pointed at a fake), else
    the exchange config's ``rest_url``."""
    if from_daemon:
        return cfg.get("rest_url") or None
    return os.environ.get(f"{venue.upper()}_REST_URL") or cfg.get("rest_url") or None


def venue_probe(venue: str, cfg: dict[str, Any], from_daemon: bool = False) -> dict[str, Any]:
    """Ask the venue itself (§8.4 maintenance, §2.2 "Is exchange API working?"): its system-status
    endpoint where it has one, then its ping. ``{"ok", "maintenance", "detail", "url"}``."""
    base = venue_rest_url(venue, cfg, from_daemon)
    if not base:
        return {"ok": None, "maintenance": None, "detail": "no rest_url in its exchange config", "url": ""}
    base = base.rstrip("/")
    out: dict[str, Any] = {"ok": None, "maintenance": None, "detail": "", "url": base}
    if venue == "binance":
        # /sapi/v1/system/status: {"status": 0, "msg": "normal"} or 1 "system_maintenance"
        try:
            code, body = http_get(f"{base}/sapi/v1/system/status", accept="application/json")
            if code == 200:
                doc = json.loads(body)
                out["maintenance"] = doc.get("status") == 1
                out["detail"] = f"system status: {doc.get('msg', doc.get('status'))}"
        except (HttpError, json.JSONDecodeError, AttributeError):
            pass
    elif venue == "kraken":
        # /0/public/SystemStatus: {"result": {"status": "online" | "maintenance" | "cancel_only" |
        # "post_only"}}; anything but online restricts trading, which is what §8.4 asks about
        try:
            code, body = http_get(f"{base}/0/public/SystemStatus", accept="application/json")
            if code == 200:
                status = (json.loads(body).get("result") or {}).get("status")
                if status:
                    out["maintenance"] = status != "online"
                    out["detail"] = f"system status: {status}"
        except (HttpError, json.JSONDecodeError, AttributeError):
            pass
    ping = {"binance": "/api/v3/ping", "coinbase": "/time", "kraken": "/0/public/Time"}.get(venue, "")
    url = f"{base}{ping}"
    t0 = time.perf_counter()
    try:
        code, body = http_get(url, accept="application/json")
    except HttpError as exc:
        out["ok"] = False
        out["detail"] = "; ".join(x for x in (out["detail"], str(exc)) if x)
        return out
    ms = (time.perf_counter() - t0) * 1000
    out["ok"] = code == 200
    out["detail"] = "; ".join(x for x in (out["detail"], f"GET {url} -> {code} in {ms:.0f} ms") if x)
    return out
