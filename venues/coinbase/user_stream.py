"""The private stream: Coinbase Exchange's authenticated ``user`` channel (our orders and fills).

One WebSocket to ``user_ws_url``; on every connect a subscribe
``{"type":"subscribe","channels":[{"name":"user","product_ids":[...]}],"key","passphrase",
"timestamp","signature"}`` signed like ``GET /users/self/verify`` (CB-EX websocket-feed/
authentication), stamped on Coinbase's clock. Its messages are the full channel's, limited to
our orders: ``received`` (our ``client_oid`` -> Coinbase's ``order_id``), ``open``, ``match`` (a
fill; one of the two order ids is ours, with our side's fee rate) and ``done`` (``filled`` /
``canceled``). Coinbase warns that authenticated messages do not move the feed's ``sequence``, so
a lost one cannot be seen here: the execution client keeps polling fills and open orders as a
safety net, and everything is deduplicated by trade id.

An error answer (``authentication failure``: a wrong passphrase, key or secret) is logged in the
guide's words and raised as an incident once per connection; the socket reconnects with backoff.
``heartbeat`` frames are subscribed too, so a silent socket is noticed and replaced.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import msgspec

from engine.events import Incident
from engine.logs import get_logger
from venues.coinbase import decode as d
from venues.coinbase.config import CoinbaseConfig
from venues.coinbase.errors import guide_reason
from venues.coinbase.signing import ExchangeSigner, timestamp_now
from venues.common.backoff import AttemptWindow, ReconnectPolicy
from venues.common.ws import ReconnectingWebSocket, WsSettings

VENUE = "coinbase"
VERIFY_PATH = "/users/self/verify"


def subscribe_message(signer: ExchangeSigner, products: list[str], offset_s: float = 0.0) -> bytes:
    h = signer.headers("GET", VERIFY_PATH, "", timestamp_now(offset_s))
    msg = {
        "type": "subscribe",
        "channels": [{"name": "user", "product_ids": products}],
        "key": h["CB-ACCESS-KEY"],
        "passphrase": h["CB-ACCESS-PASSPHRASE"],
        "timestamp": h["CB-ACCESS-TIMESTAMP"],
        "signature": h["CB-ACCESS-SIGN"],
    }
    return json.dumps(msg, separators=(",", ":")).encode()


class CoinbaseUserStream:
    def __init__(
        self,
        config: CoinbaseConfig,
        signer: ExchangeSigner,
        products: list[str],
        on_message: Callable[[object], None],
        on_incident: Callable[[Incident], None],
        clock_offset: Callable[[], float] = lambda: 0.0,
        attempt_window: AttemptWindow | None = None,
    ) -> None:
        self.config = config
        self.signer = signer
        self.products = products
        self.on_message = on_message
        self.on_incident = on_incident
        self.clock_offset = clock_offset
        self.log = get_logger("exchanges")
        self.subscribed = asyncio.Event()
        self.errors = 0
        self.messages = 0
        self.malformed = 0
        self.ws = ReconnectingWebSocket(
            "coinbase user channel",
            lambda: config.user_ws_url,
            self._on_frame,
            ReconnectPolicy(config.reconnect, shared_window=attempt_window),
            self.log,
            WsSettings(ping_interval_s=config.ping_interval_s, ping_timeout_s=config.ping_timeout_s),
            on_open=self._on_open,
            on_close=self._on_close,
        )

    def start(self) -> asyncio.Task[None]:
        return self.ws.start()

    async def stop(self) -> None:
        await self.ws.stop()

    @property
    def connected(self) -> bool:
        return self.subscribed.is_set()

    async def _on_open(self, _ws: object) -> None:
        self.subscribed.clear()
        self.ws.send_now(subscribe_message(self.signer, self.products, self.clock_offset()))

    def _on_close(self, reason: str) -> None:
        was = self.subscribed.is_set()
        self.subscribed.clear()
        if was and not self.ws.stopping:
            self.on_incident(Incident(time.time_ns(), VENUE, "", "disconnect", f"user channel: {reason}"))

    def _on_frame(self, frame: bytes, ts_recv: int) -> None:
        try:
            msg = d.user_frame.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.malformed += 1
            if self.malformed <= 20:
                self.log.warning(f"coinbase user channel: unreadable frame ({exc}): {frame[:200]!r}")
            return
        if isinstance(msg, d.ExchangeSubscriptions):
            if any(isinstance(c, d.ExchangeChannel) and c.name == "user" for c in msg.channels):
                self.subscribed.set()
                self.log.info(f"coinbase user channel subscribed for {', '.join(self.products)}")
            return
        if isinstance(msg, d.ExchangeError):
            self.errors += 1
            reason = guide_reason(401, msg.reason or msg.message)
            self.log.error(f"{reason}: coinbase user channel refused the subscription ({msg.message!r} {msg.reason!r})")
            self.on_incident(Incident(time.time_ns(), VENUE, "", "venue_error", f"user channel: {reason}"))
            return
        self.messages += 1
        self.on_message(msg)
