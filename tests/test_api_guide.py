"""Every call the operator guide makes to the daemon (operator-surface.md §1.2: 43 commands),
run with bash, curl and jq exactly as typed, against a running paper daemon (the address
substituted for localhost:8080, a real order id for <ORDER_ID>).

Reads give the answers the guide's jq filters and greps expect, including the unquoted ``&`` of
§9.2 (curl goes to the background without ``limit``; the default limit applies). The guide's
mutating calls carry no signature: they are refused with a JSON 401 that says how to sign, and
the same commands with the guide's own three ``-H`` auth lines appended (as §2.2 shows them)
take effect, bodies sent form-encoded by ``curl -d`` included."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import CAPTURE, STRATEGY, Daemon, contract_signature, start_daemon, wait_until

pytestmark = [
    pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}"),
    pytest.mark.skipif(
        not (shutil.which("curl") and shutil.which("jq")), reason="the guide's commands need curl and jq"
    ),
]

# Verbatim from the guide (the §4.1 decision tree's "│  " prefixes stripped).
GUIDE_TEXT = r"""
# §1.2
curl -s http://localhost:8080/api/v1/status | jq .
# §2.2
curl -s http://localhost:8080/api/v1/status | jq '.exchanges'
# §2.2
curl -X GET http://localhost:8080/api/v1/config/reload \
  -H "X-API-KEY: $API_KEY" \
  -H "X-TIMESTAMP: $TIMESTAMP" \
  -H "X-SIGNATURE: $SIGNATURE"
# §2.2
curl -X POST http://localhost:8080/api/v1/exchanges/binance/reconnect
# §3.1
curl -s http://localhost:8080/api/v1/status | jq '.exchanges[].status'
# §3.2
curl -s http://localhost:8080/api/v1/metrics | grep queue_depth
# §3.3
curl -s http://localhost:8080/api/v1/marketdata/orderbook/binance/BTC-USDT | jq .
# §3.3
curl -X POST http://localhost:8080/api/v1/marketdata/snapshot/binance/BTC-USDT
# §3.3
curl -X POST http://localhost:8080/api/v1/exchanges/binance/reconnect
# §4.1
curl -s http://localhost:8080/api/v1/strategies | jq '.strategies[] | {id: .strategy_id, status: .status}'
# §4.1 (decision tree)
curl -s http://localhost:8080/api/v1/status | jq .trading_enabled
curl -X POST http://localhost:8080/api/v1/config -d '{"trading_enabled": true}'
curl -s http://localhost:8080/api/v1/strategies | jq '.strategies[] | select(.strategy_id=="my_strategy") | .status'
curl -X POST http://localhost:8080/api/v1/strategies/my_strategy/start
curl -s http://localhost:8080/api/v1/status | jq '.exchanges.binance.status'
curl -X POST http://localhost:8080/api/v1/exchanges/binance/reconnect
# §4.1
curl -s http://localhost:8080/api/v1/positions | jq .
curl -s http://localhost:8080/api/v1/risk/summary | jq .
curl -X POST http://localhost:8080/api/v1/risk/limits \
  -d '{"position_limit_usd": 150000.00}'
# §4.2
curl -s http://localhost:8080/api/v1/orders?status=pending | jq '.orders[] | {order_id, created_at}'
curl -X DELETE http://localhost:8080/api/v1/orders/<ORDER_ID>
curl -X POST http://localhost:8080/api/v1/orders/<ORDER_ID>/reconcile
# §4.3
curl -s http://localhost:8080/api/v1/orders?status=rejected | jq '.orders[] | {order_id, error_message}'
# §4.4
curl -s http://localhost:8080/api/v1/orders/<ORDER_ID> | jq .
curl -s http://localhost:8080/api/v1/positions | jq '.positions[] | select(.symbol=="BTC-USDT")'
curl -X POST http://localhost:8080/api/v1/components/position_manager/restart
# §5.1
curl -s http://localhost:8080/api/v1/metrics | \
  grep latency | \
  jq -r '. | "\(.name): P50=\(.p50)us P99=\(.p99)us P999=\(.p999)us"'
curl -s http://localhost:8080/api/v1/metrics | grep market_data_queue_depth
# §5.2
curl -s http://localhost:8080/api/v1/strategies | jq '.strategies | length'
# §5.3
curl -s http://localhost:8080/api/v1/metrics | grep orderbook_memory_mb
curl -s http://localhost:8080/api/v1/metrics | grep order_count
curl -X POST http://localhost:8080/api/v1/orders/archive \
  -d '{"older_than_hours": 24}'
# §9.1
curl -s http://localhost:8080/api/v1/strategies/my_strategy | jq .config.parameters
curl -s http://localhost:8080/api/v1/marketdata/ticker/binance/BTC-USDT | jq .
curl -X PUT http://localhost:8080/api/v1/strategies/my_strategy/config \
  -d '{"log_level": "DEBUG"}'
# §9.2
curl -s http://localhost:8080/api/v1/strategies/my_strategy | jq .performance
curl -X POST http://localhost:8080/api/v1/strategies/my_strategy/stop
curl -s http://localhost:8080/api/v1/orders?strategy_id=my_strategy&limit=100 | jq .
# §9.3
curl -s http://localhost:8080/api/v1/risk/violations | jq .
curl -s http://localhost:8080/api/v1/positions | jq '.positions[] | select(.strategy=="my_strategy")'
curl -X PUT http://localhost:8080/api/v1/strategies/my_strategy/config \
  -d '{
    "risk_limits": {
      "max_position_usd": 25000,
      "max_order_size_usd": 5000
    }
  }'
curl -X POST http://localhost:8080/api/v1/risk/limits \
  -d '{"position_limit_usd": 200000.00}'
# §11.2
curl -s http://localhost:8080/api/v1/metrics | head -20
"""


def _commands(text: str) -> tuple[tuple[str, str], ...]:
    """(section, command) pairs: a command runs on over backslash-ended lines and open quotes."""
    out: list[tuple[str, str]] = []
    section, cur = "", []
    for line in text.strip().splitlines():
        if line.startswith("# §"):
            section = line[2:].split()[0]
            continue
        cur.append(line)
        cmd = "\n".join(cur)
        if cmd.endswith("\\"):
            continue
        try:
            shlex.split(cmd.replace("|", " "))
        except ValueError:  # a quote still open: the body goes on
            continue
        out.append((section, cmd))
        cur = []
    return tuple(out)


GUIDE = _commands(GUIDE_TEXT)

AUTH_LINES = ' \\\n  -H "X-API-KEY: $API_KEY" \\\n  -H "X-TIMESTAMP: $TIMESTAMP" \\\n  -H "X-SIGNATURE: $SIGNATURE"'


def is_mutation(cmd: str) -> bool:
    return bool(re.search(r"-X (POST|PUT|DELETE|GET)\b", cmd))


READS = [(s, c) for s, c in GUIDE if not is_mutation(c)]
MUTATIONS = [(s, c) for s, c in GUIDE if is_mutation(c) and "X-SIGNATURE" not in c]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("api_guide"))
    try:
        wait_until(lambda: daemon.get("/api/v1/orders?status=open").json["orders"], 180, "an open order", daemon)
        wait_until(lambda: daemon.get("/api/v1/positions").json["positions"], 180, "a position", daemon)
        yield daemon
    finally:
        daemon.stop()


def order_id(d: Daemon) -> str:
    rows = d.get("/api/v1/orders?status=open").json["orders"] or d.get("/api/v1/orders").json["orders"]
    return rows[0]["order_id"]


def parts(cmd: str) -> tuple[str, str, bytes]:
    """Method, path with query and body of a curl command line, as curl sends them."""
    words = shlex.split(cmd.replace("\\\n", " ").split("|")[0])
    method = words[words.index("-X") + 1] if "-X" in words else "GET"
    url = next(w for w in words if w.startswith("http"))
    body = words[words.index("-d") + 1].encode() if "-d" in words else b""
    return method, "/" + url.split("/", 3)[3], body


def run(d: Daemon, cmd: str, cwd: Path, oid: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    line = cmd.replace("http://localhost:8080", d.url).replace("<ORDER_ID>", oid)
    # `wait`: the unquoted & of §9.2 sends curl to the background
    return subprocess.run(
        ["bash", "-c", line + "\nwait"],
        cwd=cwd,  # an empty directory: the unquoted ? of orders?status=... globs nothing
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def jsons(text: str) -> list:
    """The JSON values jq printed, one after another."""
    dec, out, i = json.JSONDecoder(), [], 0
    text = text.strip()
    while i < len(text):
        value, i = dec.raw_decode(text, i)
        out.append(value)
        while i < len(text) and text[i].isspace():
            i += 1
    return out


def check_read(cmd: str, out: str) -> None:
    tail = cmd.split("|", 1)[1].strip() if "|" in cmd else ""
    values = jsons(out) if "jq" in tail and "jq -r" not in tail else None
    if tail == "jq ." and "orders?strategy_id" in cmd:
        # §9.2: `limit=100 | jq .` is a shell assignment; curl printed the JSON itself
        (doc,) = values
        assert 0 < doc["count"] <= 100 and all(o["strategy_id"] == STRATEGY for o in doc["orders"])
    elif tail == "jq .":
        (doc,) = values
        assert isinstance(doc, dict) and doc and "error" not in doc
    elif tail == "jq '.exchanges'":
        assert values[0]["binance"]["status"] == "connected"
    elif tail in ("jq '.exchanges[].status'", "jq '.exchanges.binance.status'"):
        assert values == ["connected"]
    elif tail == "jq .trading_enabled":
        assert values == [True]
    elif "{id: .strategy_id" in tail:
        assert values == [{"id": STRATEGY, "status": "running"}]
    elif "select(.strategy_id==" in tail:
        assert values == ["running"]
    elif tail == "jq '.strategies | length'":
        assert values == [1]
    elif "{order_id, created_at}" in tail or "{order_id, error_message}" in tail:
        assert all(set(v) in ({"order_id", "created_at"}, {"order_id", "error_message"}) for v in values)
    elif 'select(.symbol=="BTC-USDT")' in tail or 'select(.strategy=="my_strategy")' in tail:
        assert values and all(v["symbol"] == "BTC-USDT" and v["strategy"] == STRATEGY for v in values)
    elif tail == "jq .config.parameters":
        assert values[0]["half_spread_bps"] == 0.5
    elif tail == "jq .performance":
        assert "net_pnl" in values[0]
    elif "grep latency" in tail:
        lines = out.strip().splitlines()
        assert lines and all(re.fullmatch(r"\w+_latency: P50=\S+us P99=\S+us P999=\S+us", x) for x in lines), out
        assert any(x.startswith("tick_to_order_latency:") for x in lines)
    elif tail.startswith("grep "):
        word = tail.split()[1]
        lines = out.strip().splitlines()
        assert lines and all(word in x for x in lines)
    elif tail == "head -20":
        assert len(out.strip().splitlines()) == 20
    else:
        raise AssertionError(f"no check for {cmd!r}")


@pytest.mark.parametrize(("section", "cmd"), READS, ids=[f"{s} {c.split()[2][26:]}" for s, c in READS])
def test_the_guides_reads_work_as_typed(d: Daemon, tmp_path: Path, section: str, cmd: str) -> None:
    r = run(d, cmd, tmp_path, order_id(d))
    assert r.returncode == 0, (r.stdout, r.stderr)
    check_read(cmd, r.stdout)


def test_the_guides_signed_reload_works_with_its_three_headers(d: Daemon, tmp_path: Path) -> None:
    (cmd,) = [c for _, c in GUIDE if "X-SIGNATURE" in c]
    ts = str(int(time.time() * 1000))
    env = {
        "API_KEY": d.key,
        "TIMESTAMP": ts,
        "SIGNATURE": contract_signature(d.secret, ts, "GET", "/api/v1/config/reload", b""),
    }
    r = run(d, cmd, tmp_path, "", env)
    assert r.returncode == 0 and json.loads(r.stdout)["reloaded"] is True, (r.stdout, r.stderr)


def test_the_guides_unsigned_mutations_are_refused_and_say_how_to_sign(d: Daemon, tmp_path: Path) -> None:
    before = d.get("/api/v1/risk/summary").json, d.get("/api/v1/strategies").json
    for _, cmd in MUTATIONS:
        r = run(d, cmd, tmp_path, order_id(d))
        body = json.loads(r.stdout)
        assert body["status"] == 401 and "hft ctl" in body["error"], cmd
    assert (d.get("/api/v1/risk/summary").json, d.get("/api/v1/strategies").json) == before


def test_the_guides_mutations_with_the_auth_lines_appended_take_effect(d: Daemon, tmp_path: Path) -> None:
    for _, cmd in MUTATIONS:
        oid = order_id(d)
        method, path, body = parts(cmd.replace("<ORDER_ID>", oid))
        ts = str(int(time.time() * 1000))
        env = {"API_KEY": d.key, "TIMESTAMP": ts, "SIGNATURE": contract_signature(d.secret, ts, method, path, body)}
        r = run(d, cmd + AUTH_LINES + " -s", tmp_path, oid, env)
        doc = json.loads(r.stdout)
        if "<ORDER_ID>" in cmd and doc.get("status") == 409:
            continue  # the strategy replaced that order meanwhile: a refusal in words, not a fault
        assert "error" not in doc, (cmd, doc)
    strategy = d.get(f"/api/v1/strategies/{STRATEGY}").json
    assert strategy["status"] == "stopped"  # §9.2's stop was the last strategy call
    assert strategy["config"]["log_level"] == "DEBUG"
    assert strategy["config"]["risk_limits"]["max_position_usd"] == 25000
    assert "200000" in json.dumps(d.get("/api/v1/risk/summary").json)
