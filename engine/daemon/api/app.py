"""The Sanic application of the API process: one handler per route of :mod:`.routes`, each
authorising, validating and then calling its bridge op (reads through the :mod:`.cache`), plus
``/metrics``, ``/api/v1/metrics``, ``/openapi.json`` and the status page at ``/``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sanic import HTTPResponse, Request, Sanic

from engine.daemon import exposition, procstats
from engine.daemon.api import page
from engine.daemon.api.auth import AuthError, Verifier, keys_from_env
from engine.daemon.api.cache import ReadCache
from engine.daemon.api.errors import JsonErrorHandler, error_body, json_body
from engine.daemon.api.openapi import document
from engine.daemon.api.routes import DEFAULT_LIMIT, FAST_TIMEOUT_S, PREFIX, ROUTES, Route
from engine.daemon.api.schema import FieldError, check, coerce_query
from engine.daemon.bridge import BridgeClient, BridgeError
from engine.daemon.config import ApiSettings

log = logging.getLogger("hft.daemon.api")

MAX_BODY = 1 << 20
#: how often the API process checks that the trading process that started it is still there
PARENT_CHECK_S = 1.0


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ApiState:
    settings: ApiSettings
    bridge_path: str
    #: reads need a signature: ``auth_reads`` set, or the socket is bound beyond loopback
    reads_need_auth: bool
    verifier: Verifier
    parent_pid: int | None = None
    client: BridgeClient | None = None
    cache: ReadCache | None = None
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: bridge calls made, by op: what the API has cost the trading loop
    bridge_calls: Counter[str] = field(default_factory=Counter)
    timeouts: dict[str, float] = field(default_factory=dict)

    async def call(self, op: str, args: dict[str, Any], mutating: bool = False) -> Any:
        assert self.client is not None
        self.bridge_calls[op] += 1
        try:
            return await self.client.call(op, args, timeout=self.timeouts.get(op, FAST_TIMEOUT_S))
        except BridgeError as exc:
            # The bridge client's own timeout (no field) means the trading loop is busy or hung; a
            # venue's 502/504 (with a field) is the op's answer and passes through.
            if exc.status == 504 and not exc.field:
                # the request was delivered: a change may still happen when the loop gets to it
                then = "; the change may still be applied: check before retrying" if mutating else "; retry"
                raise BridgeError(503, f"{exc.error}: the trading process is busy{then}") from None
            if exc.status == 500:
                raise BridgeError(503, f"Trading process failed: {exc.error} (see errors.log)", exc.field) from None
            raise


def build_app(
    settings: ApiSettings,
    bridge_path: str,
    bound_host: str,
    parent_pid: int | None = None,
    name: str = "hft_api",
) -> Sanic:
    app = Sanic(name, error_handler=JsonErrorHandler(), configure_logging=False)
    app.config.REQUEST_MAX_SIZE = MAX_BODY
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.ACCESS_LOG = False
    app.config.MOTD = False
    state = ApiState(
        settings=settings,
        bridge_path=bridge_path,
        reads_need_auth=settings.auth_reads or not is_loopback(bound_host),
        verifier=Verifier(
            keys_from_env(settings.keys_env),
            settings.max_clock_skew_ms,
            tuple(v for pair in settings.keys_env.items() for v in pair),
        ),
        parent_pid=parent_pid,
        timeouts={r.op: r.timeout for r in ROUTES},
    )
    app.ctx.state = state

    @app.before_server_start
    async def _open(app: Sanic) -> None:
        state.client = BridgeClient(bridge_path, timeout=FAST_TIMEOUT_S)
        state.cache = ReadCache(state.call, settings.read_cache_ms / 1000)

    watchers: list[asyncio.Task[None]] = []

    @app.after_server_start
    async def _watch(app: Sanic) -> None:
        if state.parent_pid is not None:
            watchers.append(asyncio.ensure_future(_watch_parent(app, state.parent_pid)))

    @app.before_server_stop
    async def _close(app: Sanic) -> None:
        for task in watchers:
            task.cancel()
        if state.client is not None:
            await state.client.close()

    @app.on_response
    async def _count(request: Request, response: HTTPResponse) -> None:
        route = request.route
        label = route.name.rsplit(".", 1)[-1] if route is not None else "unmatched"
        state.requests[(label, response.status)] += 1

    for route in ROUTES:
        app.add_route(
            _handler(state, route),
            route.sanic_uri(),
            methods=list(route.methods),
            name=route.op,
        )
    app.add_route(_metrics_handler(state, api_path=True), PREFIX + "/metrics", methods=["GET"], name="api_metrics")
    app.add_route(_metrics_handler(state, api_path=False), "/metrics", methods=["GET"], name="metrics")
    openapi = json.dumps(document(), indent=1) + "\n"

    async def _openapi(request: Request) -> HTTPResponse:
        return HTTPResponse(openapi, content_type="application/json")

    app.add_route(_openapi, "/openapi.json", methods=["GET"], name="openapi")
    page.register(app)
    return app


async def _watch_parent(app: Sanic, parent_pid: int) -> None:
    # Orphaned (the trading process died without stopping us): nothing left to serve.
    while True:
        await asyncio.sleep(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            log.warning("API process: trading process %d is gone; stopping", parent_pid)
            app.stop()
            return


def _authorize(state: ApiState, request: Request, mutating: bool) -> HTTPResponse | None:
    if not mutating and not state.reads_need_auth and is_loopback(request.ip):
        return None
    path_with_query = request.raw_url.decode("utf-8", "replace")
    try:
        state.verifier.verify(request.headers, request.method, path_with_query, request.body or b"")
    except AuthError as exc:
        return error_body(exc.status, exc.error, reason=exc.reason)
    return None


def _parse_body(request: Request, route: Route) -> Any:
    assert route.body is not None
    raw = request.body or b""
    if not raw.strip():
        value: Any = {}
    else:
        try:
            text = raw.decode("utf-8")
            value = json.loads(text, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise FieldError("body", f"must be a JSON object ({exc})") from None
    return check(value, route.body, "body")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def request_args(route: Route, request: Request, path_args: dict[str, Any]) -> dict[str, Any]:
    """The op's arguments from the path, query and body, each checked against the route's
    schema; :class:`FieldError` naming the first bad field."""
    args: dict[str, Any] = {}
    query = request.get_args(keep_blank_values=True)
    known = {p.name for p in route.params if p.where == "query"}
    for name in query:
        if name not in known:
            accepted = ", ".join(sorted(known)) or "none"
            raise FieldError(name, f"unknown query parameter (accepted: {accepted})")
    for p in route.params:
        if p.where == "path":
            # Sanic hands path segments over still percent-encoded
            args[p.name] = check(unquote(str(path_args.get(p.name, ""))), p.schema, p.name)
            continue
        values = query.getlist(p.name) if p.name in query else []
        if len(values) > 1:
            raise FieldError(p.name, "given more than once")
        if values:
            args[p.name] = coerce_query(values[0], p.schema, p.name)
        elif "default" in p.schema:
            args[p.name] = p.schema["default"]
    if route.body is not None:
        body = _parse_body(request, route)
        if route.body_arg:
            args[route.body_arg] = body
        else:
            args.update(body)
    if route.op == "orders":
        args.setdefault("limit", DEFAULT_LIMIT)
    return args


def _handler(state: ApiState, route: Route) -> Callable[..., Awaitable[HTTPResponse]]:
    async def handle(request: Request, **path_args: Any) -> HTTPResponse:
        refused = _authorize(state, request, route.mutating)
        if refused is not None:
            return refused
        try:
            args = request_args(route, request, path_args)
        except FieldError as exc:
            return error_body(400, exc.message, exc.field)
        assert state.cache is not None
        try:
            if route.mutating:
                try:
                    result = await state.call(route.op, args, mutating=True)
                finally:
                    state.cache.invalidate()
            else:
                result = await state.cache.get(route.op, args)
        except BridgeError as exc:
            return error_body(exc.status, exc.error, exc.field)
        return json_body(result)

    handle.__name__ = f"handle_{route.op}"
    return handle


def _metrics_handler(state: ApiState, api_path: bool) -> Callable[..., Awaitable[HTTPResponse]]:
    async def handle(request: Request) -> HTTPResponse:
        refused = _authorize(state, request, mutating=False)
        if refused is not None:
            return refused
        assert state.cache is not None
        try:
            snapshot = await state.cache.get("metrics", {})
        except BridgeError as exc:
            return error_body(exc.status, exc.error, exc.field)
        samples = exposition.snapshot_samples(snapshot, _proc_samples(snapshot), _api_samples(state))
        if api_path:
            body, content_type = exposition.render(samples, request.headers.get("accept"))
        else:
            body, content_type = exposition.prometheus_text(samples), exposition.PROMETHEUS_CONTENT_TYPE
        return HTTPResponse(body, content_type=content_type)

    handle.__name__ = "handle_api_metrics" if api_path else "handle_metrics"
    return handle


def _proc_samples(snapshot: Any) -> list[dict[str, Any]]:
    pid = snapshot.get("pid") if isinstance(snapshot, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return []
    try:
        return procstats.read(pid).samples()
    except (procstats.ProcStatsError, OSError, ValueError, IndexError) as exc:
        log.debug("no /proc figures for the trading process %s: %s", pid, exc)
        return []


def _api_samples(state: ApiState) -> list[dict[str, Any]]:
    requests = [
        {
            "name": "hft_api_requests_total",
            "type": "counter",
            "help": "HTTP requests the API process answered, by route and status code.",
            "labels": {"route": route, "code": str(code)},
            "value": n,
        }
        for (route, code), n in sorted(state.requests.items())
    ]
    calls = [
        {
            "name": "hft_api_bridge_calls_total",
            "type": "counter",
            "help": "Calls the API process made to the trading process over the bridge, by op.",
            "labels": {"op": op},
            "value": n,
        }
        for op, n in sorted(state.bridge_calls.items())
    ]
    return requests + calls
