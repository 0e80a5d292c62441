"""The Coinbase fake speaks the protocol: WebSocket subscribe rules and sequence numbers, REST
products, signed requests checked the way Coinbase Exchange checks them, faults."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time

import aiohttp

from sim.fake_coinbase import FakeCoinbase
from venues.coinbase.signing import ExchangeSigner

P = "BAND-GBP"
SECRET = base64.b64encode(b"fake-coinbase-secret-for-tests-0123456789").decode()


async def frames(ws: aiohttp.ClientWebSocketResponse, n: int, timeout: float = 5.0) -> list[dict]:
    out = []
    while len(out) < n:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))
    return out


async def test_subscribe_ack_snapshot_and_per_connection_sequence() -> None:
    async with (
        FakeCoinbase(interval_s=0.01, heartbeat_interval_s=0.1) as fc,
        aiohttp.ClientSession() as s,
        s.ws_connect(fc.ws_url) as ws,
    ):
        await ws.send_str(json.dumps({"type": "subscribe", "channel": "heartbeats"}))
        await ws.send_str(json.dumps({"type": "subscribe", "channel": "level2", "product_ids": [P]}))
        got = await frames(ws, 3)
        while not any(f["channel"] == "heartbeats" for f in got[3:]):  # heartbeats every 0.1 s
            got += await frames(ws, 1)
        assert [f["sequence_num"] for f in got] == list(range(len(got)))
        chans = [f["channel"] for f in got]
        assert chans[:3] == ["subscriptions", "subscriptions", "l2_data"]
        assert got[1]["events"][0]["subscriptions"] == {"heartbeats": ["heartbeats"], "level2": [P]}
        snap = got[2]["events"][0]
        assert snap["type"] == "snapshot" and snap["product_id"] == P
        assert {u["side"] for u in snap["updates"]} == {"bid", "offer"}
        assert "heartbeats" in chans[3:] and "l2_data" in chans[3:]
        hb = next(f for f in got if f["channel"] == "heartbeats")
        assert isinstance(hb["events"][0]["heartbeat_counter"], int)


async def test_unknown_channel_is_an_error_frame_and_no_subscribe_closes() -> None:
    async with FakeCoinbase(subscribe_timeout_s=0.3) as fc, aiohttp.ClientSession() as s, s.ws_connect(fc.ws_url) as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "channel": "level3", "product_ids": [P]}))
        (err,) = await frames(ws, 1)
        assert err == {"type": "error", "message": "authentication failure"}
        msg = await asyncio.wait_for(ws.receive(), 3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def test_dropped_updates_leave_a_hole_in_the_sequence() -> None:
    async with (
        FakeCoinbase(interval_s=0.005, heartbeat_interval_s=10) as fc,
        aiohttp.ClientSession() as s,
        s.ws_connect(fc.ws_url) as ws,
    ):
        await ws.send_str(json.dumps({"type": "subscribe", "channel": "level2", "product_ids": [P]}))
        first = await frames(ws, 4)
        fc.drop_updates(2)
        seqs = [f["sequence_num"] for f in first + await frames(ws, 6)]
        steps = [b - a for a, b in itertools.pairwise(seqs)]
        assert sorted(steps) == [1] * 8 + [3], seqs


async def test_public_rest_products_book_time() -> None:
    async with FakeCoinbase() as fc, aiohttp.ClientSession() as s:
        async with s.get(f"{fc.rest_url}/products/{P}") as r:
            p = await r.json()
            assert r.status == 200 and p["quote_increment"] == "0.0001"
        async with s.get(f"{fc.rest_url}/products/NOPE-USD") as r:
            assert r.status == 404 and (await r.json()) == {"message": "NotFound"}
        async with s.get(f"{fc.rest_url}/products/{P}/book?level=2") as r:
            b = await r.json()
            assert float(b["bids"][0][0]) < float(b["asks"][0][0])
        async with s.get(f"{fc.rest_url}/time") as r:
            t = await r.json()
            assert abs(t["epoch"] - time.time()) < 5


async def signed(
    s: aiohttp.ClientSession,
    fc: FakeCoinbase,
    signer: ExchangeSigner,
    method: str,
    path: str,
    body: dict | None = None,
    ts: str | None = None,
) -> tuple[int, object]:
    text = json.dumps(body) if body is not None else ""
    headers = signer.headers(method, path, text, ts)
    async with s.request(method, fc.rest_url + path, data=text or None, headers=headers) as r:
        return r.status, await r.json()


async def test_auth_checks_in_coinbase_order() -> None:
    async with FakeCoinbase(api_key="k1", api_secret=SECRET, passphrase="pp") as fc, aiohttp.ClientSession() as s:
        ok = ExchangeSigner("k1", SECRET, "pp")
        status, body = await signed(s, fc, ok, "GET", "/accounts")
        assert status == 200 and {a["currency"] for a in body} >= {"GBP", "BAND"}
        assert (await signed(s, fc, ExchangeSigner("k1", SECRET, "wrong"), "GET", "/accounts")) == (
            401,
            {"message": "Invalid Passphrase"},
        )
        assert (await signed(s, fc, ExchangeSigner("k2", SECRET, "pp"), "GET", "/accounts"))[1] == {
            "message": "Invalid API Key"
        }
        other = base64.b64encode(b"another-secret-another-secret-000000").decode()
        assert (await signed(s, fc, ExchangeSigner("k1", other, "pp"), "GET", "/accounts"))[1] == {
            "message": "invalid signature"
        }
        old = str(time.time() - 60)
        assert (await signed(s, fc, ok, "GET", "/accounts", ts=old))[1] == {"message": "request timestamp expired"}


async def test_orders_match_hold_and_reject_like_coinbase() -> None:
    async with (
        FakeCoinbase(api_key="k1", api_secret=SECRET, passphrase="pp", balances={"GBP": "100", "BAND": "5"}) as fc,
        aiohttp.ClientSession() as s,
    ):
        sg = ExchangeSigner("k1", SECRET, "pp")
        ask = str(fc.exchange.best(P)[1])
        bid = str(fc.exchange.best(P)[0])
        cid = "6f1c7c1e-8f3b-4f53-9a55-0c1b2f0d9f01"
        st, o = await signed(
            s,
            fc,
            sg,
            "POST",
            "/orders",
            {"product_id": P, "side": "buy", "type": "limit", "price": "10", "size": "1", "client_oid": cid},
        )
        assert st == 200 and o["status"] == "open" and o["client_oid"] == cid
        st, o2 = await signed(s, fc, sg, "GET", f"/orders/client:{cid}")
        assert st == 200 and o2["id"] == o["id"]
        st, e = await signed(
            s,
            fc,
            sg,
            "POST",
            "/orders",
            {
                "product_id": P,
                "side": "buy",
                "type": "limit",
                "price": "10",
                "size": "100",
                "client_oid": "6f1c7c1e-8f3b-4f53-9a55-0c1b2f0d9f02",
            },
        )
        assert (st, e) == (400, {"message": "Insufficient funds"})
        st, e = await signed(
            s,
            fc,
            sg,
            "POST",
            "/orders",
            {"product_id": P, "side": "sell", "type": "limit", "price": bid, "size": "1", "post_only": True},
        )
        assert st == 200 and e["status"] == "rejected" and e["reject_reason"] == "post only"
        st, e = await signed(
            s,
            fc,
            sg,
            "POST",
            "/orders",
            {"product_id": P, "side": "buy", "type": "limit", "price": "10.00001", "size": "1"},
        )
        assert st == 400 and e["message"].startswith("price is too accurate")
        st, t = await signed(
            s,
            fc,
            sg,
            "POST",
            "/orders",
            {"product_id": P, "side": "buy", "type": "limit", "price": ask, "size": "0.5", "time_in_force": "IOC"},
        )
        assert st == 200 and t["status"] == "done" and t["done_reason"] == "filled"
        st, fills = await signed(s, fc, sg, "GET", f"/fills?order_id={t['id']}")
        assert st == 200 and fills[0]["liquidity"] == "T" and fills[0]["price"].startswith(ask)
        st, gone = await signed(s, fc, sg, "DELETE", f"/orders/{o['id']}")
        assert (st, gone) == (200, o["id"])
        assert (await signed(s, fc, sg, "DELETE", f"/orders/{o['id']}"))[0] == 404


async def test_faults_rate_limit_and_5xx() -> None:
    async with FakeCoinbase(private_rate=(1.0, 2)) as fc, aiohttp.ClientSession() as s:
        fc.fail_next_requests(1, 503)
        async with s.get(f"{fc.rest_url}/time") as r:
            assert r.status == 503
        fc.fail_next_requests(1, 429, retry_after=2)
        async with s.get(f"{fc.rest_url}/time") as r:
            assert r.status == 429 and r.headers["Retry-After"] == "2"
        sg = ExchangeSigner(fc.api_key, fc.api_secret, fc.passphrase)
        statuses = [(await signed(s, fc, sg, "GET", "/accounts"))[0] for _ in range(4)]
        assert statuses[:2] == [200, 200] and 429 in statuses[2:]
        async with s.post(f"{fc.rest_url}/_fake/drop_updates?n=2") as r:
            assert (await r.json())["ok"]
        async with s.get(f"{fc.rest_url}/_fake/status") as r:
            assert "position" in await r.json()
