"""The daemon as an operator runs it, for the tests that drive it: ``hft paper|live CONFIG --api
--port 0`` in a subprocess against the fake Binance (itself a subprocess,
``fake_process.spawn_fake_binance``), driven over its HTTP API, its bridge and signals.

HTTP requests are signed here with the contract's HMAC computed independently of
``engine.daemon.api.auth``: the tests do not sign with the code under test."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_process import spawn_fake_binance

from engine.daemon.bridge import call_sync

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
HFT = [sys.executable, "-m", "engine.cli"]
LISTENING = re.compile(r"API listening on (http://\S+)")
BRIDGE = re.compile(r"Bridge at (\S+)")
STRATEGY = "my_strategy"  # the guide's name for it


# --- the fake Binance -----------------------------------------------------------------------------


@dataclass
class FakeBinance:
    proc: subprocess.Popen
    urls: dict[str, str]
    key: str
    secret: str

    @property
    def env(self) -> dict[str, str]:
        """What points a daemon at it: its URLs and its API key pair."""
        return {**self.urls, "BINANCE_API_KEY": self.key, "BINANCE_API_SECRET": self.secret}

    def orders(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.urls['BINANCE_REST_URL']}/_fake/orders", timeout=10) as resp:
            return json.loads(resp.read())

    def open_orders(self) -> list[dict]:
        return [o for o in self.orders() if o["status"] in ("NEW", "PARTIALLY_FILLED")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_fake_binance() -> FakeBinance:
    """The fake replaying the capture in real time from now, with a fresh API key pair."""
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    proc, urls = spawn_fake_binance(
        CAPTURE, "--speed", "1", "--start", "now", "--api-key", key, "--api-secret", secret,
        "--balance", "USDT=10000", "--balance", "BTC=1",
    )  # fmt: skip
    return FakeBinance(proc, urls, key, secret)


@contextmanager
def fake_binance() -> Iterator[FakeBinance]:
    """A fake that outlives the daemons started against it (``start_daemon(..., fake=fb)``)."""
    fb = start_fake_binance()
    try:
        yield fb
    finally:
        fb.stop()


# --- the daemon -----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def contract_signature(secret: str, ts: str, method: str, path: str, body: bytes) -> str:
    msg = ts.encode() + method.encode() + path.encode() + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def wait_until(cond: Callable[[], Any], timeout: float, what: str, daemon: Daemon | None = None) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); fail after ``timeout`` s, or at
    once when the daemon has exited (not a timing assertion: a bound on a hang)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        if daemon is not None and daemon.proc.poll() is not None:
            raise AssertionError(
                f"the daemon exited {daemon.proc.returncode} while waiting for {what}:\n{daemon.stderr()}"
            )
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (daemon.diagnose() if daemon else ""))


@dataclass
class Daemon:
    proc: subprocess.Popen
    fake: FakeBinance  # the venue it trades on
    env: dict[str, str]  # its environment: the fake's URLs and keys, its own API keys
    key: str  # its API key pair (HFT_API_KEY / HFT_API_SECRET)
    secret: str
    out: Path  # --out
    log_dir: Path
    pid_file: Path
    stderr_path: Path
    stdout_path: Path
    url: str = ""  # http://127.0.0.1:PORT, once it listens
    bridge: str = ""  # the bridge's socket path, once it listens
    owns_fake: bool = field(default=False, repr=False)  # started with it, stopped with it

    # -- its output and logs

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def log(self, name: str = "system") -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def diagnose(self) -> str:
        """What a failed wait shows: stderr, the status, the last lines of the logs."""
        out = [f"\n--- stderr\n{self.stderr()[-3000:]}"]
        try:
            out.append(f"--- status\n{json.dumps(self.call('status'))}")
        except Exception as exc:
            out.append(f"--- status: {exc!r}")
        for name in ("errors", "system", "orders", "strategies", "risk"):
            out.append(f"--- {name}.log\n" + "\n".join(self.log(name).splitlines()[-15:]))
        return "\n".join(out)

    # -- its bridge

    def call(self, op: str, **args: Any) -> Any:
        """The contract's op ``op`` as an operator makes it: a signed HTTP request to its route
        (``OPS_HTTP``); the answer's JSON, or ``ApiError`` with the status and the error. ``metrics``
        is read from ``/metrics`` (Prometheus text) into the snapshot's shape (``metric``)."""
        method, template, body_keys = OPS_HTTP[op]
        path_args = {k: urllib.parse.quote(str(v), safe="") for k, v in args.items() if "{" + k + "}" in template}
        path = "/api/v1" + template.format(**path_args) if template != "/metrics" else template
        rest = {k: v for k, v in args.items() if k not in path_args}
        body: Any = None
        if body_keys == "body":
            body = rest.pop("body")
        elif body_keys:
            body = {k: rest.pop(k) for k in body_keys if k in rest}
        query = {k: v for k, v in rest.items() if v is not None}
        if query:
            path += "?" + urllib.parse.urlencode(query)
        r = self.signed(method, path, body)
        if r.status >= 400:
            doc = r.json if r.body.startswith(b"{") else {"error": r.text}
            raise ApiError(r.status, doc.get("error", ""), doc.get("field"))
        return _prometheus_samples(r.text) if op == "metrics" else r.json

    def bridge_call(self, op: str, **args: Any) -> Any:
        """The op straight over the bridge (the bridge's own tests)."""
        return call_sync(self.bridge, op, args, timeout=30)

    # -- its HTTP API

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1].split(":")[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].rstrip("/"))

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        data = body.encode() if isinstance(body, str) else body
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def http(self, path: str) -> Any:
        """The JSON of an unsigned GET that succeeds; an ``OSError`` when it does not answer 2xx."""
        r = self.get(path)
        if not 200 <= r.status < 300:
            raise OSError(f"GET {path} answered {r.status}: {r.text[:500]}")
        return r.json

    def sign(self, method: str, path: str, body: bytes = b"", ts_ms: int | None = None) -> dict[str, str]:
        ts = str(int(time.time() * 1000) if ts_ms is None else ts_ms)
        return {
            "X-API-KEY": self.key,
            "X-TIMESTAMP": ts,
            "X-SIGNATURE": contract_signature(self.secret, ts, method, path, body),
        }

    def signed(self, method: str, path: str, body: Any = None) -> Reply:
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        return self.request(method, path, data or None, self.sign(method, path, data))

    # -- stopping it

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        """Send ``sig``, wait for the exit and return its code (killed after ``timeout`` s: the
        code says so); then stop the fake it was started with, if any. Safe to call twice."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(10)
        finally:
            if self.owns_fake:
                self.fake.stop()


def start_daemon(
    tmp: Path,
    config: Path | None = None,
    *extra: str,
    mode: str = "paper",
    fake: FakeBinance | None = None,
    env: dict[str, str] | None = None,
) -> Daemon:
    """``hft MODE CONFIG --api --port 0`` (CONFIG: ``paper_config(tmp)`` by default) with its run
    dir, log dir, pid file and output under ``tmp`` and API keys in its environment, against
    ``fake`` (else a fake of its own, stopped with it); returns once its API answers."""
    config = config or paper_config(tmp)
    own = fake is None
    fb = start_fake_binance() if fake is None else fake
    key, secret = "ops-" + secrets.token_hex(4), secrets.token_hex(32)
    full_env = {
        **os.environ,
        **fb.env,
        "HFT_API_KEY": key,
        "HFT_API_SECRET": secret,
        "PYTHONPATH": str(REPO / "tests"),
        **(env or {}),
    }
    out, log_dir, pid_file = tmp / "run", tmp / "logs", tmp / "hft.pid"
    stderr_path, stdout_path = tmp / "daemon.stderr", tmp / "daemon.stdout"
    args = [*HFT, mode, str(config), "--out", str(out), "--api", "--port", "0"]
    args += ["--log-dir", str(log_dir), "--pid-file", str(pid_file), *extra]
    with stderr_path.open("wb") as err, stdout_path.open("wb") as stdout:
        proc = subprocess.Popen(args, cwd=REPO, env=full_env, stdout=stdout, stderr=err)
    d = Daemon(proc, fb, full_env, key, secret, out, log_dir, pid_file, stderr_path, stdout_path, owns_fake=own)
    try:
        text = wait_until(lambda: LISTENING.search(d.stderr()) and d.stderr(), 120, "API listening on ...", d)
        d.url = LISTENING.search(text).group(1).rstrip("/")  # type: ignore[union-attr]
        d.bridge = BRIDGE.search(text).group(1)  # type: ignore[union-attr]
        wait_until(lambda: _answers(d), 120, "the trading process to answer /api/v1/status", d)
    except BaseException:
        d.stop()
        raise
    return d


def _answers(d: Daemon) -> bool:
    """The trading process answers through the API (signed: with ``auth_reads`` an unsigned read is
    refused by the API process alone, which says nothing about the trading process)."""
    try:
        return d.signed("GET", "/api/v1/status").status == 200
    except OSError:
        return False


# --- configs and metrics --------------------------------------------------------------------------

#: The market maker of the API tests, under the guide's strategy name.
GUIDE_MM: dict[str, Any] = {
    "strategy_id": STRATEGY,
    "params": {"half_spread_bps": 0.5, "order_size": 0.001, "max_inventory": 0.01, "skew_bps": 1.0,
               "refresh_ms": 250, "requote_bps": 0.2, "post_only": True},
}  # fmt: skip

#: The market maker of the bridge and signal tests ("mm"): smaller quotes, requoted on every move
#: every 100 ms, so orders are placed, cancelled and replaced within seconds.
FAST_MM: dict[str, Any] = {
    "strategy_id": "mm",
    "params": {"half_spread_bps": 0.5, "order_size": 0.0005, "max_inventory": 0.01,
               "refresh_ms": 100, "requote_bps": 0.0, "post_only": True},
}  # fmt: skip


def paper_config(tmp: Path, *, strategy: dict[str, Any] = GUIDE_MM, **daemon: Any) -> Path:
    """``tmp/paper.json``: a paper config on the fake, ``strategy`` (the market maker) quoting
    BTC-USDT at the touch; keyword arguments make its ``daemon`` section."""
    cfg: dict[str, Any] = {
        "name": "paper",
        "seed": 11,
        "exchange": str(REPO / "config" / "exchanges" / "binance.json"),
        "balances": {"binance": {"USDT": 100000.0, "BTC": 1.0}},
        "risk": {
            "trading_enabled": True,
            "max_order_size_usd": 5000,
            "max_position_usd": 20000,
            "max_global_position_usd": 50000,
            "daily_loss_limit_usd": 2000,
            "max_orders_per_second": 50,
            "price_band_pct": 1.0,
        },
        "strategies": [
            {
                "strategy_id": strategy["strategy_id"],
                "class": "strategies.market_maker:MarketMaker",
                "venue": "binance",
                "symbols": ["BTC-USDT"],
                "params": dict(strategy["params"]),
            }
        ],
        "output": {"runs_root": str(tmp / "runs"), "mark_interval_ms": 1000},
    }
    if daemon:
        cfg["daemon"] = daemon
    path = tmp / "paper.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


class ApiError(Exception):
    """A 4xx/5xx answer of the daemon's API: its status, error text and the field it names."""

    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.field = field


#: op -> (method, route under /api/v1, what goes in the JSON body: "body" = the ``body`` argument,
#: a tuple = those arguments, () = none; the rest are path or query parameters). Written here, not
#: taken from engine.daemon.api.routes: the tests check the routes, they do not share them.
OPS_HTTP: dict[str, tuple[str, str, Any]] = {
    "status": ("GET", "/status", ()),
    "metrics": ("GET", "/metrics", ()),
    "config_set": ("POST", "/config", ("trading_enabled",)),
    "config_reload": ("POST", "/config/reload", ()),
    "exchange_reconnect": ("POST", "/exchanges/{exchange}/reconnect", ()),
    "orderbook": ("GET", "/marketdata/orderbook/{exchange}/{symbol}", ()),
    "ticker": ("GET", "/marketdata/ticker/{exchange}/{symbol}", ()),
    "snapshot": ("POST", "/marketdata/snapshot/{exchange}/{symbol}", ()),
    "strategies": ("GET", "/strategies", ()),
    "strategy": ("GET", "/strategies/{strategy_id}", ()),
    "strategy_start": ("POST", "/strategies/{strategy_id}/start", ()),
    "strategy_stop": ("POST", "/strategies/{strategy_id}/stop", ()),
    "strategy_config": ("PUT", "/strategies/{strategy_id}/config", "body"),
    "orders": ("GET", "/orders", ()),
    "order": ("GET", "/orders/{order_id}", ()),
    "order_cancel": ("DELETE", "/orders/{order_id}", ()),
    "order_reconcile": ("POST", "/orders/{order_id}/reconcile", ()),
    "orders_archive": ("POST", "/orders/archive", ("older_than_hours",)),
    "positions": ("GET", "/positions", ()),
    "risk_summary": ("GET", "/risk/summary", ()),
    "risk_limits": ("POST", "/risk/limits", "body"),
    "risk_violations": ("GET", "/risk/violations", ()),
    "component_restart": ("POST", "/components/{component}/restart", ()),
    "incidents": ("GET", "/incidents", ()),
}


def _prometheus_samples(text: str) -> dict[str, Any]:
    """Prometheus text as the metrics snapshot's ``samples`` (a histogram's ``count``)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[dict[str, Any]] = []
    for family in text_string_to_metric_families(text):
        for smp in family.samples:
            if family.type == "histogram":
                if smp.name.endswith("_count"):
                    samples.append({"name": family.name, "labels": dict(smp.labels), "count": smp.value})
                continue
            samples.append({"name": smp.name, "labels": dict(smp.labels), "value": smp.value})
    return {"samples": samples}


def metric(snapshot: dict, name: str, **labels: str) -> float:
    """One sample's value (a histogram's count) from the bridge's ``metrics`` snapshot."""
    for s in snapshot["samples"]:
        if s["name"] == name and all(s["labels"].get(k) == v for k, v in labels.items()):
            return s.get("value", s.get("count"))
    raise KeyError(f"{name}{labels} not in the metrics snapshot")
