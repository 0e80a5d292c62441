"""Signed requests with their constant parts rendered once: the wire text of an order in one format.

An order's request has a dozen parameters, and only a few change from one order to the next (the
client order id, price, quantity, timestamp). Building a dict, sorting it, percent-encoding and
JSON-encoding it for every order costs tens of microseconds on the tick-to-order path;
``SignedTemplate`` does that work once per kind of order (symbol, side, type, time in force) and
then renders each request with one ``str.format`` per form, producing exactly the text the
general path (``signing.signed_query`` / ``signing.ws_payload`` + ``msgspec`` JSON) would.

Slot values must be URL- and JSON-safe as they are (``[A-Za-z0-9._-]``): client order ids are
checked against Binance's own pattern before they get here, and prices and quantities are decimal
digits. Constants may be anything; they are encoded when the template is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import msgspec

from venues.binance.signing import HmacSigner, param_str

_json = msgspec.json.encode


def _lit(text: str) -> str:
    """``text`` as literal %-format text."""
    return text.replace("%", "%%")


class SignedTemplate:
    """One kind of signed request. ``params`` maps each parameter, in the order the general path
    would send them, to its constant value or to None for a slot; ``slots`` lists the slot names in
    the order ``render_*`` take their values in (the parameters' order).

    %-formatting: ``str.format`` costs several times as much for the same text.
    """

    __slots__ = ("_json", "_payload", "_payload_order", "_payload_pre", "_query", "_query_pre", "api_key", "slots")

    def __init__(self, params: Mapping[str, object], api_key: str, recv_window_ms: int) -> None:
        self.api_key = api_key
        self.slots = tuple(k for k, v in params.items() if v is None)

        # REST: parameters in order, then recvWindow and timestamp, then the signature
        parts = []
        for k, v in params.items():
            key = _lit(quote(k, safe=""))
            parts.append(f"{key}=%s" if v is None else f"{key}={_lit(quote(param_str(v), safe=''))}")
        parts.append(f"recvWindow={recv_window_ms}")
        parts.append("timestamp=%d")
        self._query_pre, self._query = _split_constant(parts)

        # WS API: the signature covers the parameters sorted by name, apiKey included; the slots
        # come in a different order there, so the renderer reorders them (``_payload_order``)
        ws_params: dict[str, object] = {**params, "apiKey": api_key, "recvWindow": recv_window_ms, "timestamp": None}
        payload = []
        order = []
        for k in sorted(ws_params):
            v = ws_params[k]
            if k == "timestamp":
                payload.append("timestamp=%d")
                order.append(len(self.slots))
            elif v is None:
                payload.append(f"{_lit(k)}=%s")
                order.append(self.slots.index(k))
            else:
                payload.append(_lit(f"{k}={param_str(v)}"))
        self._payload_pre, self._payload = _split_constant(payload)
        # None when the slots (and the timestamp after them) already come in sorted order, as they
        # do for the adapter's own orders: then nothing needs reordering per request
        self._payload_order = None if order == sorted(order) else tuple(order)

        # WS API JSON: {"id":..,"method":..,"params":{..}} with params in the general path's order
        fields = []
        for k, v in ws_params.items():
            name = _lit(_json(k).decode())
            if k == "timestamp":
                fields.append(f"{name}:%d")
            elif v is None:
                fields.append(f'{name}:"%s"')
            else:
                fields.append(f"{name}:{_lit(_json(v).decode())}")
        fields.append('"signature":"%s"')
        self._json = '{"id":"%s","method":"%s","params":{' + ",".join(fields) + "}}"

    def render_query(self, signer: HmacSigner, values: tuple[str, ...], ts_ms: int) -> str:
        """The signed REST query string; ``values`` in ``slots`` order."""
        pre = self._query_pre
        rest = self._query % (*values, ts_ms)
        return f"{pre}{rest}&signature={signer.sign_after(pre, rest)}"

    def render_ws(self, signer: HmacSigner, method: str, rid: str, values: tuple[str, ...], ts_ms: int) -> bytes:
        """The WS API request frame's text; ``values`` in ``slots`` order."""
        every = (*values, ts_ms)
        order = self._payload_order
        rest = self._payload % (every if order is None else tuple([every[i] for i in order]))
        sig = signer.sign_after(self._payload_pre, rest)
        return (self._json % (rid, method, *every, sig)).encode()


def _split_constant(parts: list[str]) -> tuple[str, str]:
    """``"&".join(parts)`` (a %-format) as (the constant text before its first slot, unescaped;
    the %-format of the rest): the signer hashes the constant part once per template."""
    text = "&".join(parts)
    i = 0
    while True:
        i = text.find("%", i)
        if i < 0 or text[i + 1] != "%":
            break
        i += 2
    if i < 0:
        return text.replace("%%", "%"), ""
    return text[:i].replace("%%", "%"), text[i:]
