"""The read-only status page at ``/`` (``static/status.html`` and ``static/status.js``): it has no
data of its own and no external asset (the daemon's host may have no internet); the script reads
the API's own read endpoints once a second."""

from __future__ import annotations

from importlib import resources

from sanic import HTTPResponse, Request, Sanic

#: the page may load only what this daemon serves
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'"


def _asset(name: str) -> bytes:
    return resources.files("engine.daemon.api").joinpath("static", name).read_bytes()


def register(app: Sanic) -> None:
    html = _asset("status.html")
    script = _asset("status.js")
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

    async def page(request: Request) -> HTTPResponse:
        return HTTPResponse(html, headers=headers, content_type="text/html; charset=utf-8")

    async def js(request: Request) -> HTTPResponse:
        return HTTPResponse(script, headers=headers, content_type="text/javascript; charset=utf-8")

    app.add_route(page, "/", methods=["GET"], name="status_page")
    app.add_route(js, "/status.js", methods=["GET"], name="status_js")
