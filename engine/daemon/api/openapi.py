"""The OpenAPI 3.0 document of the operator API (``GET /openapi.json``), generated from the route
table so that it describes exactly the routes, parameters and bodies the server checks."""

from __future__ import annotations

import copy
from typing import Any

from engine.daemon.api.auth import HOW_TO_SIGN
from engine.daemon.api.routes import PREFIX, ROUTES, Route

VERSION = "1"

ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, in the operator guide's words"},
        "status": {"type": "integer"},
        "field": {"type": "string", "description": "the request field at fault, when there is one"},
        "reason": {
            "type": "string",
            "enum": ["missing", "unknown key", "bad signature", "expired", "replayed"],
            "description": "why a signature was refused (401 only)",
        },
    },
}

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY", "description": "the key's id"},
    "Timestamp": {"type": "apiKey", "in": "header", "name": "X-TIMESTAMP", "description": "Unix milliseconds"},
    "Signature": {"type": "apiKey", "in": "header", "name": "X-SIGNATURE", "description": HOW_TO_SIGN},
}
SIGNED = [{"ApiKey": [], "Timestamp": [], "Signature": []}]
#: reads: open on loopback by default, signed when the daemon requires it
READ_SECURITY: list[dict[str, list[str]]] = [{}, *SIGNED]


def _error(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    # a copy: whoever edits the document must not edit the route table the server checks with
    return copy.deepcopy(schema)


def _operation(route: Route, method: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.op if len(route.methods) == 1 else f"{route.op}_{method.lower()}",
        "summary": route.summary,
        "tags": [route.path.strip("/").split("/")[0]],
        "x-bridge-op": route.op,
    }
    params = [
        {"name": p.name, "in": p.where, "required": p.required or p.where == "path", "schema": _clean(p.schema)}
        for p in route.params
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "description": "JSON, whatever the Content-Type (curl -d sends form-encoded)",
            "content": {"application/json": {"schema": _clean(route.body)}},
        }
    responses: dict[str, Any] = {
        "200": {"description": "the op's answer", "content": {"application/json": {"schema": _clean(route.response)}}},
        "400": _error("a bad parameter or body; `field` names it"),
    }
    if route.mutating:
        responses["401"] = _error("unsigned, wrongly signed, expired or replayed: " + HOW_TO_SIGN)
        responses["429"] = _error("too many signed requests in the clock window")
        op["security"] = SIGNED
    else:
        responses["401"] = _error("reads need a signature on this daemon (auth_reads, or bound beyond loopback)")
        op["security"] = READ_SECURITY
    if any(p.where == "path" for p in route.params):
        responses["404"] = _error("unknown exchange, symbol, strategy, order or component (the guide's words)")
    responses["503"] = _error("the trading process is unreachable or did not answer in time; retry")
    op["responses"] = responses
    return op


def _metrics_paths() -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    lines = {"application/x-ndjson": {"schema": {"type": "string"}}}
    return {
        PREFIX + "/metrics": {
            "get": {
                "operationId": "metrics_api",
                "summary": "Metrics: one JSON object per line (latency lines carry p50/p99/p999 in us); "
                "Prometheus text when Accept names text/plain or openmetrics",
                "tags": ["metrics"],
                "security": READ_SECURITY,
                "responses": {
                    "200": {"description": "metrics", "content": {**lines, **text}},
                    "401": _error("reads need a signature on this daemon"),
                    "503": _error("the trading process is unreachable"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics_prometheus",
                "summary": "Metrics in Prometheus text format (the scrape target)",
                "tags": ["metrics"],
                "security": READ_SECURITY,
                "responses": {
                    "200": {"description": "Prometheus text exposition", "content": text},
                    "401": _error("reads need a signature on this daemon"),
                    "503": _error("the trading process is unreachable"),
                },
            }
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI document (a fresh copy on every call)."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item = paths.setdefault(PREFIX + route.path, {})
        for method in route.methods:
            item[method.lower()] = _operation(route, method)
    paths.update(_metrics_paths())
    paths["/"] = {
        "get": {
            "operationId": "status_page",
            "summary": "Read-only status page (HTML), refreshed every second",
            "tags": ["page"],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "HFT daemon operator API",
            "version": VERSION,
            "description": "The calls of the operator guide (docs/daemon-contract.md). Mutations are signed: "
            + HOW_TO_SIGN
            + ". Reads are open on loopback unless the daemon sets auth_reads or listens beyond loopback.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths,
        "components": {"schemas": {"Error": ERROR}, "securitySchemes": SECURITY_SCHEMES},
    }
