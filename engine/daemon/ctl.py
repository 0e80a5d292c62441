"""``hft ctl METHOD PATH [JSON]``: one signed call to a running daemon's operator API.

The operator guide's mutating ``curl`` commands carry no signature, and the daemon refuses them;
this is their signed equivalent (``hft ctl POST config '{"trading_enabled": false}'``). The key
and secret come from ``HFT_API_KEY`` / ``HFT_API_SECRET`` (the same variables the daemon reads).
``PATH`` is relative to ``/api/v1`` unless it starts with ``/`` (``/metrics``); a query string
goes with it (``'orders?status=pending&limit=10'``; ``'positions/reconcile?exchange=binance'`` is
what ``scripts/reconcile_positions.sh binance`` sends). The answer's JSON is printed on stdout; a
4xx/5xx answer prints its error on stderr and exits 1 (2 when the daemon cannot be reached or
the arguments are wrong).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from engine.daemon.api.auth import sign_headers

DEFAULT_URL = "http://127.0.0.1:8080"
METHODS = ("GET", "POST", "PUT", "DELETE")
#: characters left as they are in PATH (everything else is percent-encoded, so that the path the
#: server sees is byte for byte the one that was signed)
SAFE = "/?&=:@,;-._~+%"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ctl",
        help="call the running daemon's API, signed (hft ctl POST config '{\"trading_enabled\": false}')",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", metavar="METHOD", help="GET, POST, PUT or DELETE")
    p.add_argument("path", metavar="PATH", help="under /api/v1 (status, orders?status=pending), or /metrics")
    p.add_argument("body", metavar="JSON", nargs="?", help="request body (JSON; - reads it from stdin)")
    p.add_argument("--url", default=os.environ.get("HFT_API_URL", DEFAULT_URL), help=f"daemon URL ({DEFAULT_URL})")
    p.add_argument("--key-env", default="HFT_API_KEY", help="variable holding the API key (HFT_API_KEY)")
    p.add_argument("--secret-env", default="HFT_API_SECRET", help="variable holding its secret (HFT_API_SECRET)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (30)")
    p.set_defaults(func=cmd_ctl)


def request_path(path: str) -> str:
    """The path with query as sent (and signed): relative paths go under ``/api/v1``."""
    path = path.strip()
    if not path.startswith("/"):
        path = "/api/v1/" + path
    return urllib.parse.quote(path, safe=SAFE)


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def cmd_ctl(args: argparse.Namespace) -> int:
    method = args.method.upper()
    if method not in METHODS:
        return _fail(f"METHOD: must be one of {', '.join(METHODS)}, got {args.method!r}")
    body = b""
    if args.body is not None:
        text = sys.stdin.read() if args.body == "-" else args.body
        try:
            json.loads(text)
        except ValueError as exc:
            return _fail(f"JSON: not valid JSON ({exc})")
        body = text.encode()
    path = request_path(args.path)
    headers = {"Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    key, secret = os.environ.get(args.key_env, ""), os.environ.get(args.secret_env, "")
    if key and secret:
        headers.update(sign_headers(key, secret, method, path, body))
    elif method != "GET":
        return _fail(
            f"{method} needs a signature: set {args.key_env} and {args.secret_env} to the daemon's API key and "
            f"secret (the daemon reads the same variables)"
        )
    url = args.url.rstrip("/") + path
    req = urllib.request.Request(url, data=body if body or method in ("POST", "PUT") else None, method=method)
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            _print(resp.read(), resp.headers.get("Content-Type", ""), sys.stdout)
            return 0
    except urllib.error.HTTPError as exc:
        data = exc.read()
        return _fail(f"HTTP {exc.code}: {_error_text(data)}", 1)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(f"cannot reach the daemon at {args.url}: {reason}")


def _error_text(data: bytes) -> str:
    try:
        obj: Any = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace").strip() or "(no body)"
    if isinstance(obj, dict) and "error" in obj:
        extra = f" (reason: {obj['reason']})" if obj.get("reason") else ""
        return f"{obj['error']}{extra}"
    return json.dumps(obj)


def _print(data: bytes, content_type: str, out: Any) -> None:
    if content_type.startswith("application/json"):
        try:
            out.write(json.dumps(json.loads(data), indent=2) + "\n")
            return
        except ValueError:
            pass
    text = data.decode("utf-8", "replace")
    out.write(text if text.endswith("\n") or not text else text + "\n")
