"""Component log files: redaction of every formatted line, and writes that wait for the event
loop's current callback (so an order's bytes leave before its log line is written)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.logs import (
    DeferredFileHandler,
    flush_logs,
    get_logger,
    info_later,
    redact,
    register_secret,
    setup_logging,
)

SECRET = "Abc123def456GHI789jkl"


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        return pytest.importorskip("uvloop").new_event_loop()
    return asyncio.new_event_loop()


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    path = setup_logging(tmp_path / "logs")
    assert path is not None
    yield path
    setup_logging(None)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_secrets_are_redacted_in_messages_arguments_and_tracebacks(logs: Path) -> None:
    log = get_logger("exchanges")
    log.info(f"request signature={SECRET}")
    log.info("headers %s", {"X-MBX-APIKEY": SECRET})
    try:
        raise ValueError(f"apiKey={SECRET}")
    except ValueError:
        log.exception("request failed")
    flush_logs()
    text = (logs / "exchanges.log").read_text()
    assert SECRET not in text
    assert "signature=***" in text
    assert "'X-MBX-APIKEY': '***" in text
    assert "apiKey=***" in text  # in the traceback
    assert SECRET not in (logs / "errors.log").read_text()


def test_the_exact_key_and_secret_values_held_are_masked_wherever_they_appear(logs: Path) -> None:
    """A bare key, without a label the pattern knows, is masked once the adapter registered it."""
    key, secret = "k3yV4lue" + "Q" * 56, "s3cr3tV4lue" + "W" * 53
    register_secret(key, secret, "", None, "abc")  # empty, missing and short values are ignored
    log = get_logger("exchanges")
    log.info("connected as %s", key)
    log.warning("bad request %s", {"q": f"x={secret}&y=1", "list": [key]})
    try:
        raise RuntimeError(f"refused {key}/{secret}")
    except RuntimeError:
        log.exception("order entry failed")
    info_later(get_logger("orders"), "owner %s", key)
    flush_logs()
    for name in ("exchanges.log", "errors.log", "orders.log"):
        text = (logs / name).read_text()
        assert key not in text and secret not in text, name
        assert "***" in text
    assert "connected as ***" in (logs / "exchanges.log").read_text()
    assert redact("abc and abcd") == "abc and abcd"  # "abc" was too short to register


def test_credential_variables_of_the_environment_are_masked_from_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOMEVENUE_API_KEY", "envKeyValue0123456789")
    monkeypatch.setenv("SOMEVENUE_PASSPHRASE", "envPassphrase42")
    monkeypatch.setenv("SOMEVENUE_SYMBOL", "BTCUSDTPERP")  # not a credential: left alone
    path = setup_logging(tmp_path / "logs")
    assert path is not None
    try:
        get_logger("system").info("env envKeyValue0123456789 envPassphrase42 BTCUSDTPERP")
        flush_logs()
        assert (path / "system.log").read_text().rstrip().endswith("env *** *** BTCUSDTPERP")
    finally:
        setup_logging(None)


def test_without_a_running_loop_lines_are_written_at_once(logs: Path) -> None:
    get_logger("orders").info("submit order client_order_id=a-1")
    assert _lines(logs / "orders.log")[-1].endswith("submit order client_order_id=a-1")


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_on_a_loop_lines_wait_for_the_callback_and_keep_their_order(logs: Path, kind: str) -> None:
    log = get_logger("orders")
    path = logs / "orders.log"
    seen: dict[str, list[str]] = {}

    def callback() -> None:
        log.info("one")
        log.warning("two")
        seen["inside"] = _lines(path)
        log.error("three")  # errors are written at once, after what waits
        seen["after_error"] = _lines(path)
        log.info("four")

    async def main() -> None:
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen["next_turn"] = _lines(path)

    loop = new_loop(kind)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen["inside"] == []
    assert [ln.rsplit("] ", 1)[1] for ln in seen["after_error"]] == ["one", "two", "three"]
    assert [ln.rsplit("] ", 1)[1] for ln in seen["next_turn"]] == ["one", "two", "three", "four"]
    errors = [ln.rsplit("] ", 1)[1] for ln in _lines(logs / "errors.log")]
    assert errors == ["two", "three"]


def test_the_message_is_fixed_when_logged(logs: Path) -> None:
    state = ["pending"]

    async def main() -> None:
        get_logger("orders").info("order state %s", state)
        state[0] = "filled"  # the line must say what was true when it was logged

    asyncio.run(main())
    flush_logs()
    assert _lines(logs / "orders.log")[-1].endswith("order state ['pending']")


def test_lines_left_by_a_closed_loop_are_written_by_the_next(logs: Path) -> None:
    path = logs / "orders.log"
    log = get_logger("orders")
    loop = asyncio.new_event_loop()
    loop.call_soon(log.info, "from the first loop")
    loop.call_soon(loop.stop)
    loop.run_forever()  # the write was queued after the stop: it never runs on this loop
    loop.close()
    assert _lines(path) == []

    async def main() -> None:
        log.info("from the second loop")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert [ln.rsplit("] ", 1)[1] for ln in _lines(path)] == ["from the first loop", "from the second loop"]


def test_close_writes_what_waits(tmp_path: Path) -> None:
    h = DeferredFileHandler(tmp_path / "x.log")
    h.setFormatter(logging.Formatter("%(message)s"))
    lg = logging.getLogger("test_logs.close")
    lg.propagate = False
    lg.addHandler(h)

    async def main() -> None:
        lg.warning("waiting")
        lg.removeHandler(h)
        h.close()  # e.g. setup_logging replacing the handlers while a loop runs

    asyncio.run(main())
    assert (tmp_path / "x.log").read_text() == "waiting\n"


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_an_orders_bytes_leave_before_its_log_line_is_written(logs: Path, kind: str) -> None:
    """The order path writes an order and logs it in one callback: when the line is written,
    the peer can already read the order."""
    peeked: list[bytes] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    class Watching(DeferredFileHandler):
        def _write_pending(self) -> None:
            if self._pending:
                try:
                    peeked.append(peer.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT))
                except BlockingIOError:
                    peeked.append(b"")
            super()._write_pending()

    log = get_logger("orders")
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    watch = Watching(logs / "orders.log")
    log.addHandler(watch)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, *srv.getsockname())
        done = loop.create_future()

        def on_tick() -> None:
            transport.write(b"ORDER")
            log.info("submit order client_order_id=a-1")
            loop.call_soon(loop.call_soon, done.set_result, None)

        loop.call_soon(on_tick)
        await done
        transport.close()

    loop = new_loop(kind)
    try:
        peer = None

        async def accept_and_run() -> None:
            nonlocal peer
            task = asyncio.ensure_future(main())
            conn, _ = await asyncio.get_running_loop().sock_accept(srv)
            peer = conn
            await task

        srv.setblocking(False)
        loop.run_until_complete(accept_and_run())
    finally:
        loop.close()
        srv.close()
        log.removeHandler(watch)
        watch.close()
        if peer is not None:
            peer.close()
    assert peeked == [b"ORDER"]
    assert _lines(logs / "orders.log")[-1].endswith("submit order client_order_id=a-1")


class _CountRecords:
    """Counts the log records made, through logging's own record factory hook."""

    def __init__(self) -> None:
        self.made = 0
        self._old = logging.getLogRecordFactory()

    def __enter__(self) -> _CountRecords:
        def factory(*a: object, **k: object) -> logging.LogRecord:
            self.made += 1
            return self._old(*a, **k)

        logging.setLogRecordFactory(factory)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.setLogRecordFactory(self._old)


@contextlib.contextmanager
def _only_log_files() -> Iterator[None]:
    """pytest's own capture handlers sit on the ``hft`` logger during a test; in a run only the
    log files are there (and ``info_later`` rightly makes a record at once for anything else)."""
    root = logging.getLogger("hft")
    others = [h for h in root.handlers if not isinstance(h, DeferredFileHandler)]
    for h in others:
        root.removeHandler(h)
    try:
        yield
    finally:
        for h in others:
            root.addHandler(h)


def test_info_later_makes_the_record_after_the_callback_in_its_place_and_time(logs: Path) -> None:
    log = get_logger("orders")
    for h in log.handlers:
        h.setFormatter(logging.Formatter("%(created).6f %(message)s"))
    seen: dict[str, object] = {}

    def callback() -> None:
        seen["t0"] = time.time()
        with _CountRecords() as count:
            log.info("before")
            info_later(log, "submit order client_order_id=%s price=%s", "a-1", 61837.63)
            log.info("after")
        seen["t1"] = time.time()
        seen["made_inside"] = count.made

    async def main() -> None:
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    with _only_log_files():
        asyncio.run(main())
    assert seen["made_inside"] == 2  # "before" and "after"; not the deferred one
    lines = _lines(logs / "orders.log")
    assert [ln.split(" ", 1)[1] for ln in lines] == [
        "before",
        "submit order client_order_id=a-1 price=61837.63",
        "after",
    ]
    created = float(lines[1].split(" ", 1)[0])
    assert seen["t0"] <= created <= seen["t1"]  # stamped when logged, not when written


def test_info_later_without_a_loop_or_with_another_handler_logs_at_once(logs: Path) -> None:
    log = get_logger("orders")
    info_later(log, "no loop %s", 1)
    assert _lines(logs / "orders.log")[-1].endswith("no loop 1")

    class Capture(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    cap = Capture()
    log.addHandler(cap)
    try:

        async def main() -> None:
            info_later(log, "captured %s", 2)
            assert [r.getMessage() for r in cap.records] == ["captured 2"]  # a real record, now

        asyncio.run(main())
    finally:
        log.removeHandler(cap)


def test_info_later_makes_nothing_when_no_handler_takes_it() -> None:
    setup_logging(None)  # logs kept in memory only: a NullHandler
    log = get_logger("orders")

    async def main() -> int:
        with _CountRecords() as count:
            info_later(log, "submit order client_order_id=%s", "a-1")
        return count.made

    with _only_log_files():
        assert asyncio.run(main()) == 0


def test_a_line_whose_arguments_do_not_fit_loses_only_itself(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = get_logger("orders")

    async def main() -> None:
        log.info("first")
        info_later(log, "submit order client_order_id=%s price=%s", "a-1")  # one argument short
        log.info("last")
        await asyncio.sleep(0)

    with _only_log_files():
        asyncio.run(main())
    assert [ln.rsplit("] ", 1)[1] for ln in _lines(logs / "orders.log")] == ["first", "last"]
    assert "not enough arguments for format string" in capsys.readouterr().err  # logging's own report
