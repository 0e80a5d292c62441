"""Request signing (docs/daemon-contract.md, "Auth"): the signature the daemon checks is the
contract's HMAC, computed here independently; stale, replayed, unknown-key and tampered requests
are refused with the reason; keys come only from the environment."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import CAPTURE, STRATEGY, Daemon, paper_config, start_daemon

from engine.daemon.api.auth import AuthError, Verifier, keys_from_env, sign_headers

KEY, SECRET = "ops-key", "s3cr3t-value-for-tests"


def contract_signature(secret: str, ts: str, method: str, path: str, body: bytes) -> str:
    return hmac.new(secret.encode(), ts.encode() + method.encode() + path.encode() + body, hashlib.sha256).hexdigest()


def headers(ts: int, method: str, path: str, body: bytes = b"", secret: str = SECRET, key: str = KEY) -> dict:
    return {
        "x-api-key": key,
        "x-timestamp": str(ts),
        "x-signature": contract_signature(secret, str(ts), method, path, body),
    }


NOW = 1_765_000_000_000


def test_a_request_signed_as_the_contract_says_is_accepted_once() -> None:
    v = Verifier({KEY: SECRET}, max_skew_ms=5000)
    body = b'{"trading_enabled": false}'
    h = headers(NOW, "POST", "/api/v1/config", body)
    assert v.verify(h, "POST", "/api/v1/config", body, now_ms=NOW + 100) == KEY
    with pytest.raises(AuthError) as err:
        v.verify(h, "POST", "/api/v1/config", body, now_ms=NOW + 200)
    assert err.value.reason == "replayed" and err.value.status == 401


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"method": "DELETE"}, "bad signature"),  # signed for POST
        ({"path": "/api/v1/risk/limits"}, "bad signature"),  # signed for another path
        ({"body": b'{"trading_enabled": true}'}, "bad signature"),  # body changed in flight
        ({"path": "/api/v1/config?x=1"}, "bad signature"),  # the query is signed too
    ],
)
def test_a_request_that_differs_from_what_was_signed_is_refused(change: dict, reason: str) -> None:
    v = Verifier({KEY: SECRET})
    h = headers(NOW, "POST", "/api/v1/config", b'{"trading_enabled": false}')
    req = {"method": "POST", "path": "/api/v1/config", "body": b'{"trading_enabled": false}', **change}
    with pytest.raises(AuthError) as err:
        v.verify(h, req["method"], req["path"], req["body"], now_ms=NOW)
    assert err.value.reason == reason


def test_missing_headers_unknown_key_wrong_secret_and_stale_timestamps_are_refused() -> None:
    v = Verifier({KEY: SECRET}, max_skew_ms=5000)
    cases = [
        ({}, "missing"),
        ({"x-api-key": KEY, "x-timestamp": str(NOW)}, "missing"),
        (headers(NOW, "POST", "/api/v1/config", key="someone"), "unknown key"),
        (headers(NOW, "POST", "/api/v1/config", secret="guessed"), "bad signature"),
        ({**headers(NOW, "POST", "/api/v1/config"), "x-timestamp": "yesterday"}, "bad signature"),
        (headers(NOW - 5001, "POST", "/api/v1/config"), "expired"),
        (headers(NOW + 5001, "POST", "/api/v1/config"), "expired"),
    ]
    for h, reason in cases:
        with pytest.raises(AuthError) as err:
            v.verify(h, "POST", "/api/v1/config", b"", now_ms=NOW)
        assert err.value.reason == reason, h
    # the edge of the window is inside it
    assert v.verify(headers(NOW - 5000, "POST", "/api/v1/config"), "POST", "/api/v1/config", b"", now_ms=NOW)


def test_the_refusal_says_how_to_sign() -> None:
    with pytest.raises(AuthError) as err:
        Verifier({KEY: SECRET}).verify({}, "POST", "/api/v1/config", b"")
    assert "X-SIGNATURE" in err.value.error and "hft ctl" in err.value.error


def test_a_daemon_without_keys_refuses_every_signed_call_and_says_which_variables() -> None:
    v = Verifier({}, key_vars=("HFT_API_KEY", "HFT_API_SECRET"))
    with pytest.raises(AuthError) as err:
        v.verify(headers(NOW, "POST", "/api/v1/config"), "POST", "/api/v1/config", b"", now_ms=NOW)
    assert "HFT_API_KEY" in err.value.error and "HFT_API_SECRET" in err.value.error


def test_keys_come_from_the_named_environment_variables_in_pairs() -> None:
    env = {"HFT_API_KEY": "k1", "HFT_API_SECRET": "s1", "DESK_KEY": "k2", "DESK_SECRET": ""}
    assert keys_from_env({"HFT_API_KEY": "HFT_API_SECRET", "DESK_KEY": "DESK_SECRET"}, env) == {"k1": "s1"}


def test_hft_ctl_signs_what_the_daemon_checks() -> None:
    h = {k.lower(): v for k, v in sign_headers(KEY, SECRET, "put", "/api/v1/strategies/s/config", b"{}").items()}
    assert h["x-signature"] == contract_signature(SECRET, h["x-timestamp"], "PUT", "/api/v1/strategies/s/config", b"{}")
    assert Verifier({KEY: SECRET}).verify(h, "PUT", "/api/v1/strategies/s/config", b"{}") == KEY


# --- against the running daemon -------------------------------------------------------------------
V1 = "/api/v1"
needs_capture = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("api_auth"))
    try:
        yield daemon
    finally:
        daemon.stop()


def _state(d: Daemon) -> tuple:
    summary = d.get(f"{V1}/risk/summary").json
    strategies = d.get(f"{V1}/strategies").json
    return d.get(f"{V1}/status").json["trading_enabled"], json.dumps(summary, sort_keys=True), strategies


@needs_capture
def test_unsigned_wrongly_signed_expired_and_unknown_key_mutations_are_refused_and_change_nothing(d: Daemon) -> None:
    before = _state(d)
    path, body = f"{V1}/config", b'{"trading_enabled": false}'
    good = d.sign("POST", path, body)
    attempts = {
        "missing": {},
        "bad signature": {**good, "X-SIGNATURE": d.sign("POST", path, b'{"trading_enabled": true}')["X-SIGNATURE"]},
        "expired": d.sign("POST", path, body, ts_ms=int(time.time() * 1000) - 60_000),
        "unknown key": {**good, "X-API-KEY": "someone-else"},
    }
    for reason, headers in attempts.items():
        r = d.request("POST", path, body, headers)
        assert r.status == 401, (reason, r.text)
        assert r.json["reason"] == reason
    # the guide's own unsigned calls, as typed: refused, and told how to sign
    for method, p in [
        ("POST", f"{V1}/strategies/{STRATEGY}/stop"),
        ("POST", f"{V1}/risk/limits"),
        ("DELETE", f"{V1}/orders/whatever"),
        ("GET", f"{V1}/config/reload"),
        ("POST", f"{V1}/components/position_manager/restart"),
    ]:
        r = d.request(method, p, b'{"position_limit_usd": 1}' if p.endswith("limits") else None)
        assert r.status == 401 and "hft ctl" in r.json["error"], (p, r.text)
    assert _state(d) == before


@needs_capture
def test_a_replayed_mutation_is_refused_and_changes_nothing(d: Daemon) -> None:
    path = f"{V1}/config"
    off = b'{"trading_enabled": false}'
    off_headers = d.sign("POST", path, off)
    assert d.request("POST", path, off, off_headers).status == 200
    assert d.signed("POST", path, {"trading_enabled": True}).status == 200
    r = d.request("POST", path, off, off_headers)  # captured and sent again inside the window
    assert r.status == 401 and r.json["reason"] == "replayed"
    assert d.get(f"{V1}/status").json["trading_enabled"] is True


@needs_capture
def test_reads_are_open_on_loopback_and_signed_reads_work_too(d: Daemon) -> None:
    assert d.get(f"{V1}/status").status == 200
    assert d.signed("GET", f"{V1}/orders?status=open&limit=5").status == 200


@needs_capture
def test_with_auth_reads_every_read_needs_a_signature(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, paper_config(tmp_path, api={"auth_reads": True}))
    try:
        for path in (f"{V1}/status", f"{V1}/orders?limit=5", f"{V1}/metrics", "/metrics"):
            r = daemon.get(path)
            assert r.status == 401 and r.json["reason"] == "missing", (path, r.text)
            assert daemon.signed("GET", path).status == 200
        assert daemon.get("/openapi.json").status == 200  # the document holds no data
    finally:
        daemon.stop()


# --- the API process alone, its trading process gone --------------------------------------------
def _api_process(tmp: Path, host: str) -> tuple[subprocess.Popen, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    env = {**os.environ, "HFT_API_KEY": KEY, "HFT_API_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.daemon.api", "--fd", str(sock.fileno()), "--bridge", str(tmp / "gone.sock")],
        pass_fds=(sock.fileno(),),
        env=env,
        stderr=subprocess.PIPE,
    )
    sock.close()
    return proc, f"127.0.0.1:{port}"


def _ask(addr: str, method: str, path: str, headers: dict | None = None) -> tuple[int, dict]:
    host, port = addr.split(":")
    end = time.monotonic() + 60
    while True:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        except ConnectionError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)  # still starting
        finally:
            conn.close()


def test_a_dead_trading_process_is_a_503_in_json(tmp_path: Path) -> None:
    proc, addr = _api_process(tmp_path, "127.0.0.1")
    try:
        status, body = _ask(addr, "GET", f"{V1}/status")
        assert status == 503 and "Trading process unreachable" in body["error"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_bound_beyond_loopback_reads_need_a_signature_too(tmp_path: Path) -> None:
    proc, addr = _api_process(tmp_path, "0.0.0.0")
    try:
        status, body = _ask(addr, "GET", f"{V1}/status")
        assert status == 401 and body["reason"] == "missing"
        h = headers(int(time.time() * 1000), "GET", f"{V1}/status")
        status, body = _ask(addr, "GET", f"{V1}/status", {k.upper(): v for k, v in h.items()})
        assert status == 503  # past auth; nothing behind it
    finally:
        proc.terminate()
        proc.wait(30)
