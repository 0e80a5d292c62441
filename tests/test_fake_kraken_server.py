"""The fake Kraken speaks Kraken's protocol: the status frame on connect, ping/pong, subscribe acks
then a snapshot, Kraken's errors for bad subscriptions, heartbeats when idle, tokens on the private
socket, REST answers in ``{"error", "result"}`` form; faults (silence, clock skew, 5XX, outage,
slow acks) and the control API over HTTP; the CLI's argument errors."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import pytest

from sim.fake_kraken import FakeKraken
from sim.fake_kraken.cli import main as cli_main
from venues.kraken import decode as kd
from venues.kraken.adapter import KrakenAdapter
from venues.kraken.config import Credentials, parse_config

KEY = "k"
SECRET = base64.b64encode(b"z" * 64).decode()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def recv(ws, timeout=5.0):
    msg = await asyncio.wait_for(ws.receive(), timeout)
    return kd.decode(msg.data.encode())


def test_public_websocket_protocol():
    async def main():
        async with FakeKraken(data=None) as fk, aiohttp.ClientSession() as s, s.ws_connect(fk.ws_url) as ws:
            status = await recv(ws)
            assert isinstance(status, kd.Status) and status.data[0].system == "online"
            await ws.send_str('{"method":"ping","req_id":101}')
            pong = await recv(ws)
            assert pong.method == "pong" and pong.req_id == 101
            await ws.send_str(
                '{"method":"subscribe","params":{"channel":"book","symbol":["ETH/USD"],"depth":10},"req_id":7}'
            )
            ack = await recv(ws)
            assert ack.success and ack.req_id == 7 and ack.result["symbol"] == "ETH/USD"
            snap = await recv(ws)
            assert isinstance(snap, kd.BookMessage) and snap.type == "snapshot"
            assert snap.data[0].checksum == 2606672715  # the live fixture's book, as Kraken sent it
            await ws.send_str('{"method":"subscribe","params":{"channel":"book","symbol":["NOPE/USD"]},"req_id":8}')
            err = await recv(ws)
            assert err.success is False and "NOPE/USD" in err.error
            await ws.send_str('{"method":"subscribe","params":{"channel":"book","symbol":["ETH/USD"],"depth":7}}')
            assert (await recv(ws)).error == "EGeneral:Invalid arguments:depth"
            hb = await recv(ws, 3.0)
            assert isinstance(hb, kd.Heartbeat)
            fk.silence(1.5)
            t0 = time.monotonic()
            hb = await recv(ws, 5.0)
            assert isinstance(hb, kd.Heartbeat) and time.monotonic() - t0 >= 1.0

    run(main())


def test_private_socket_needs_a_token_and_acks_can_be_slow():
    async def main():
        async with (
            FakeKraken(api_key=KEY, api_secret=SECRET, data=None) as fk,
            aiohttp.ClientSession() as s,
            s.ws_connect(fk.ws_auth_url) as ws,
        ):
            await recv(ws)
            await ws.send_str('{"method":"subscribe","params":{"channel":"executions","token":"nope"},"req_id":1}')
            err = await recv(ws)
            assert err.success is False and err.error == "Token(s) not found"
            cfg = parse_config({"rest_url": fk.rest_url}, "k.json", env={})
            ad = KrakenAdapter(cfg, Credentials(KEY, SECRET))
            from venues.kraken.signing import NonceSource

            ad.rest.nonces = NonceSource(None)
            token = await ad.rest.ws_token()
            await ad.close()
            fk.set_ack_delay(300)
            sub = {"channel": "executions", "token": token}
            await ws.send_str(json.dumps({"method": "subscribe", "params": sub, "req_id": 2}))
            assert (await recv(ws)).success
            snap = await recv(ws)
            assert isinstance(snap, kd.ExecutionsMessage) and snap.type == "snapshot"
            add = {"order_type": "limit", "side": "buy", "order_qty": 0.01, "symbol": "ETH/USD",
                       "limit_price": 1700.00, "token": token, "cl_ord_id": "x1"}  # fmt: skip
            t0 = time.monotonic()
            await ws.send_str(json.dumps({"method": "add_order", "params": add, "req_id": 3}))
            ack = await recv(ws)
            assert ack.success and ack.result["cl_ord_id"] == "x1" and time.monotonic() - t0 >= 0.25
            ev = await recv(ws)
            assert [e.exec_type for e in ev.data] == ["pending_new", "new"] and ev.data[0].cl_ord_id == "x1"

    run(main())


def test_rest_faults_and_control_api():
    async def main():
        async with FakeKraken(data=None) as fk, aiohttp.ClientSession() as s:
            async with s.get(f"{fk.rest_url}/0/public/Time") as r:
                t = (await r.json())["result"]["unixtime"]
            assert abs(t - time.time()) < 5
            async with s.post(f"{fk.rest_url}/_fake/clock_skew?ms=-60000") as r:
                assert (await r.json())["ok"]
            async with s.get(f"{fk.rest_url}/0/public/Time") as r:
                assert (await r.json())["result"]["unixtime"] < time.time() - 50
            async with s.post(f"{fk.rest_url}/_fake/fail_requests?n=1&status=502") as r:
                assert r.status == 200
            async with s.get(f"{fk.rest_url}/0/public/AssetPairs") as r:
                assert r.status == 502
            async with s.get(f"{fk.rest_url}/0/public/AssetPairs?pair=XBTUSD") as r:
                body = await r.json()
            assert body["error"] == [] and list(body["result"]) == ["XXBTZUSD"]
            async with s.get(f"{fk.rest_url}/0/public/AssetPairs?pair=NOPE") as r:
                assert (await r.json())["error"] == ["EQuery:Unknown asset pair"]
            async with s.get(f"{fk.rest_url}/0/public/Depth?pair=ETHUSD&count=3") as r:
                depth = (await r.json())["result"]["XETHZUSD"]
            assert len(depth["bids"]) == 3 and depth["bids"][0][0] == "1797.24"
            async with s.post(f"{fk.rest_url}/_fake/outage?seconds=0.3") as r:
                assert r.status == 200
            async with s.get(f"{fk.rest_url}/0/public/Time") as r:
                assert r.status == 503
            await asyncio.sleep(0.35)
            async with s.get(f"{fk.rest_url}/0/public/Time") as r:
                assert r.status == 200
            async with s.post(f"{fk.rest_url}/0/private/Balance", data="nonce=1") as r:
                assert (await r.json())["error"] == ["EAPI:Invalid key"]
            async with s.get(f"{fk.rest_url}/_fake/status") as r:
                assert (await r.json())["records"] == 0
            async with s.post(f"{fk.rest_url}/_fake/nonsense") as r:
                assert r.status == 404 and "drop_updates" in (await r.json())["actions"]

    run(main())


def test_cli_refuses_a_bad_balance(capsys):
    with pytest.raises(SystemExit, match="ASSET_ID=AMOUNT"):
        cli_main(["--data", "none", "--port", "0", "--balance", "ZUSD"])
    assert cli_main(["--data", "/nonexistent/capture.gz"]) == 2
    assert "fake kraken" in capsys.readouterr().err


def test_the_fakes_own_checksum_and_signature_meet_krakens_examples():
    """The fake does not borrow the adapter's code (``sim`` never imports ``venues``): its checksum
    and signature are held to Kraken's published examples on their own."""
    from decimal import Decimal
    from pathlib import Path

    from sim.fake_kraken.protocol import api_sign, checksum

    fix = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "venues" / "kraken"
    for name, pp, qp in [
        ("ws_v2_book_snapshot_BTC-USD_checksum_guide.json", 1, 8),
        ("ws_v2_book_snapshot_MATIC-USD_docs.json", 4, 8),
        ("ws_v2_book_snapshot_ETH-USD_live.json", 2, 8),
    ]:
        d = json.loads((fix / name).read_text(), parse_float=Decimal)["data"][0]
        bids = [(Decimal(x["price"]), Decimal(x["qty"])) for x in d["bids"]]
        asks = [(Decimal(x["price"]), Decimal(x["qty"])) for x in d["asks"]]
        assert checksum(bids, asks, pp, qp) == d["checksum"], name
    v = json.loads((fix / "rest_api_sign_vector.json").read_text())
    assert api_sign(v["uri_path"], v["encoded_payload"], v["nonce"], v["private_key_b64"]) == v["api_sign"]
