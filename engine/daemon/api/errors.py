"""JSON error answers. The operator API never answers 500: an unreachable or slow trading process
is a 503 saying so, and an unexpected exception (a bug) is logged and answered 503 as well, so a
client always gets a JSON body it can read and retry on."""

from __future__ import annotations

import json
import logging
from typing import Any

from sanic import HTTPResponse
from sanic.exceptions import MethodNotAllowed, NotFound, SanicException
from sanic.handlers import ErrorHandler
from sanic.request import Request

log = logging.getLogger("hft.daemon.api")

JSON_TYPE = "application/json"


def json_body(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    # a trailing newline so that a plain `curl` leaves the shell prompt on its own line
    data = json.dumps(obj, allow_nan=False, default=str) + "\n"
    return HTTPResponse(data, status=status, headers=headers, content_type=JSON_TYPE)


def error_body(status: int, error: str, field: str | None = None, **extra: Any) -> HTTPResponse:
    if status == 500:
        status = 503
    body: dict[str, Any] = {"error": error, "status": status}
    if field:
        body["field"] = field
    body.update(extra)
    headers = {"Retry-After": "1"} if status == 503 else None
    return json_body(body, status, headers)


class JsonErrorHandler(ErrorHandler):
    """Whatever Sanic or a handler raises becomes a JSON error, never a 500."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, NotFound):
            return error_body(404, f"Not found: {request.method} {request.path} (routes: /openapi.json)")
        if isinstance(exception, MethodNotAllowed):
            allowed = sorted(getattr(exception, "allowed_methods", None) or ())
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            return error_body(405, f"Method not allowed: {request.method} {request.path}{hint}")
        if isinstance(exception, SanicException) and exception.status_code < 500:
            return error_body(exception.status_code, str(exception) or type(exception).__name__)
        log.error(
            "API request %s %s failed: %s: %s",
            request.method,
            request.path,
            type(exception).__name__,
            exception,
            exc_info=exception,
        )
        return error_body(503, f"Internal error serving {request.method} {request.path}: {type(exception).__name__}")
