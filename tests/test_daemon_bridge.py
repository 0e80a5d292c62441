"""The bridge between the API process and the trading process: requests and replies matched by
id, refusals in the guide's words, a failing op answered 500 without killing the server, a slow
op not holding up a quick one, and the client reconnecting after the trading process restarts."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from engine.daemon.bridge import BridgeClient, BridgeError, BridgeServer, OpError, call_sync


def _dispatch(op: str, args: dict[str, Any]) -> Any:
    if op == "echo":
        return {"args": args}
    if op == "missing":
        raise OpError(404, f"Order not found: {args.get('order_id')}", "order_id")
    if op == "boom":
        raise RuntimeError("a bug in an op")
    if op == "slow":
        return _slow(args)
    raise OpError(404, f"Unknown op: {op}", "op")


async def _slow(args: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(args.get("s", 0.2)))
    return {"slept": True}


@pytest.fixture
def sock(tmp_path: Path) -> str:
    return str(tmp_path / "bridge.sock")


async def test_calls_reply_with_result_or_the_guides_error(sock: str) -> None:
    server = BridgeServer(sock, _dispatch)
    await server.start()
    client = BridgeClient(sock, timeout=5)
    try:
        assert await client.call("echo", {"x": 1}) == {"args": {"x": 1}}
        with pytest.raises(BridgeError) as err:
            await client.call("missing", {"order_id": "42"})
        assert (err.value.status, err.value.error, err.value.field) == (404, "Order not found: 42", "order_id")
    finally:
        await client.close()
        await server.close()


async def test_a_failing_op_is_a_500_line_and_the_server_keeps_answering(
    sock: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = BridgeServer(sock, _dispatch)
    await server.start()
    client = BridgeClient(sock, timeout=5)
    try:
        with pytest.raises(BridgeError) as err:
            await client.call("boom")
        assert err.value.status == 500
        assert "a bug in an op" not in err.value.error  # internals stay in the log
        assert any("boom" in r.getMessage() and "a bug in an op" in r.getMessage() for r in caplog.records)
        assert await client.call("echo") == {"args": {}}
    finally:
        await client.close()
        await server.close()


async def test_a_slow_op_does_not_hold_up_a_quick_one_on_the_same_connection(sock: str) -> None:
    server = BridgeServer(sock, _dispatch)
    await server.start()
    client = BridgeClient(sock, timeout=10)
    try:
        order: list[str] = []

        async def run(op: str, args: dict[str, Any]) -> None:
            await client.call(op, args)
            order.append(op)

        await asyncio.gather(run("slow", {"s": 0.5}), run("echo", {}))
        assert order == ["echo", "slow"]
    finally:
        await client.close()
        await server.close()


async def test_an_unanswered_call_times_out_with_504(sock: str) -> None:
    server = BridgeServer(sock, _dispatch)
    await server.start()
    client = BridgeClient(sock, timeout=5)
    try:
        with pytest.raises(BridgeError) as err:
            await client.call("slow", {"s": 5}, timeout=0.05)
        assert err.value.status == 504
        assert await client.call("echo", {"after": True}) == {"args": {"after": True}}
    finally:
        await client.close()
        await server.close()


async def test_the_client_reports_503_while_down_and_reconnects_when_back(sock: str) -> None:
    client = BridgeClient(sock, timeout=2)
    with pytest.raises(BridgeError) as err:
        await client.call("echo")
    assert err.value.status == 503
    server = BridgeServer(sock, _dispatch)
    await server.start()
    assert await client.call("echo", {"n": 1}) == {"args": {"n": 1}}
    await server.close()  # the trading process restarts
    with pytest.raises(BridgeError) as err:
        await client.call("echo")
    assert err.value.status == 503
    server = BridgeServer(sock, _dispatch)
    await server.start()
    try:
        assert await client.call("echo", {"n": 2}) == {"args": {"n": 2}}
    finally:
        await client.close()
        await server.close()


async def test_malformed_lines_get_400_and_the_connection_stays_usable(sock: str) -> None:
    server = BridgeServer(sock, _dispatch)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(sock)
        writer.write(b"not json\n")
        writer.write(b'{"id": 3, "args": {}}\n')
        writer.write(b'{"id": 4, "op": "echo", "args": [1]}\n')
        writer.write(b'{"id": 5, "op": "echo"}\n')
        replies = [json.loads(await reader.readline()) for _ in range(4)]
        writer.close()
        assert [(r["id"], r["ok"], r.get("status")) for r in replies] == [
            (None, False, 400),
            (3, False, 400),
            (4, False, 400),
            (5, True, None),
        ]
        assert replies[1]["field"] == "op" and replies[2]["field"] == "args"
    finally:
        await server.close()


async def test_call_sync_for_tools_outside_a_loop(sock: str) -> None:
    server = BridgeServer(sock, _dispatch)
    await server.start()
    try:
        result = await asyncio.to_thread(call_sync, sock, "echo", {"k": "v"})
        assert result == {"args": {"k": "v"}}
        with pytest.raises(BridgeError) as err:
            await asyncio.to_thread(call_sync, sock, "missing", {"order_id": "9"})
        assert err.value.status == 404
    finally:
        await server.close()
    assert not Path(sock).exists()
    with pytest.raises(BridgeError) as err:
        call_sync(sock, "echo")
    assert err.value.status == 503


def test_the_socket_file_is_private(sock: str) -> None:
    async def main() -> int:
        server = BridgeServer(sock, _dispatch)
        await server.start()
        try:
            return Path(sock).stat().st_mode & 0o777
        finally:
            await server.close()

    assert asyncio.run(main()) == 0o600
    assert socket.AF_UNIX  # unix sockets are what the bridge rides on
