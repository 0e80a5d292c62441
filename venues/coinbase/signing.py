"""Request signing for both Coinbase APIs (venues.md §2.1, §2.2).

Coinbase Exchange (the trading path, see README): headers ``CB-ACCESS-KEY``, ``CB-ACCESS-SIGN``,
``CB-ACCESS-TIMESTAMP``, ``CB-ACCESS-PASSPHRASE``; the signature is
``base64(HMAC-SHA256(base64decode(secret), timestamp + METHOD + requestPath + body))`` where
``requestPath`` includes the query string and ``body`` is the exact body sent ("" for GET).
The timestamp is seconds since the epoch and must be within 30 s of Coinbase's clock.

Advanced Trade (CDP keys): a JWT signed ES256 (EC P-256) with header ``kid`` = the key name and a
random ``nonce``, claims ``sub``/``iss="cdp"``/``nbf``/``exp`` (+120 s) and, for REST, ``uri`` =
``"<METHOD> <host><path>"``. ES256 signatures are randomised, so there is no byte-exact vector:
the tests verify the token with the public key, as Coinbase does. Built on ``cryptography``
directly (no JWT package is a dependency); the signature is the raw 64-byte ``r || s``
(RFC 7518 §3.4), not DER.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature


def decode_secret(secret: str) -> bytes:
    """The HMAC key: the API secret as Coinbase issues it, base64. ``ValueError`` (never echoing
    the secret) when it is not base64."""
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("coinbase API secret is not base64 (check COINBASE_API_SECRET)") from None


def prehash(timestamp: str, method: str, request_path: str, body: str = "") -> bytes:
    return f"{timestamp}{method.upper()}{request_path}{body}".encode()


def sign(secret_key: bytes, timestamp: str, method: str, request_path: str, body: str = "") -> str:
    """``CB-ACCESS-SIGN`` for one request (``secret_key`` already base64-decoded)."""
    mac = hmac.new(secret_key, prehash(timestamp, method, request_path, body), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def timestamp_now(offset_s: float = 0.0) -> str:
    """``CB-ACCESS-TIMESTAMP``: seconds since the epoch on Coinbase's clock (our clock + offset)."""
    return f"{time.time() + offset_s:.3f}"


class ExchangeSigner:
    """The four ``CB-ACCESS-*`` headers of a request, the key decoded once."""

    def __init__(self, api_key: str, api_secret: str, passphrase: str) -> None:
        self.api_key = api_key
        self._key = decode_secret(api_secret)
        self._passphrase = passphrase

    def headers(self, method: str, request_path: str, body: str = "", timestamp: str | None = None) -> dict[str, str]:
        ts = timestamp if timestamp is not None else timestamp_now()
        return {
            "CB-ACCESS-KEY": self.api_key,
            "CB-ACCESS-SIGN": sign(self._key, ts, method, request_path, body),
            "CB-ACCESS-TIMESTAMP": ts,
            "CB-ACCESS-PASSPHRASE": self._passphrase,
        }

    def __repr__(self) -> str:  # never print the secret
        return f"ExchangeSigner(api_key={self.api_key[:4]}..., secret=***, passphrase=***)"


# --- Advanced Trade: CDP JWT ---------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_ec_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """A CDP key's private key (PEM; the ``\\n`` escapes of an environment variable allowed)."""
    try:
        key = serialization.load_pem_private_key(pem.replace("\\n", "\n").encode(), password=None)
    except ValueError:
        raise ValueError("coinbase CDP private key is not a PEM EC key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("coinbase CDP private key must be an EC (P-256) key for ES256")
    return key


def build_jwt(
    key_name: str,
    private_key: ec.EllipticCurvePrivateKey,
    uri: str | None = None,
    now: float | None = None,
    ttl_s: int = 120,
) -> str:
    """A CDP JWT: ``uri`` (``"GET api.coinbase.com/api/v3/brokerage/accounts"``) for REST, None for
    a WebSocket subscribe."""
    t = int(time.time() if now is None else now)
    header = {"alg": "ES256", "kid": key_name, "nonce": secrets.token_hex(16), "typ": "JWT"}
    claims: dict[str, object] = {"sub": key_name, "iss": "cdp", "nbf": t, "exp": t + ttl_s}
    if uri is not None:
        claims["uri"] = uri
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    der = private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def verify_jwt(token: str, public_key: ec.EllipticCurvePublicKey, now: float | None = None) -> dict[str, object]:
    """The claims of a valid, unexpired ES256 token; ``ValueError`` naming what is wrong."""
    try:
        head, body, sig = token.split(".")
        header = json.loads(_b64url_decode(head))
        claims = json.loads(_b64url_decode(body))
        raw = _b64url_decode(sig)
    except (ValueError, binascii.Error):
        raise ValueError("malformed JWT") from None
    if header.get("alg") != "ES256" or len(raw) != 64:
        raise ValueError("JWT is not ES256")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public_key.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    except Exception:
        raise ValueError("JWT signature invalid") from None
    t = time.time() if now is None else now
    if not (claims.get("nbf", 0) <= t + 5 and t < claims.get("exp", 0)):
        raise ValueError("JWT expired or not yet valid")
    if claims.get("iss") != "cdp" or claims.get("sub") != header.get("kid"):
        raise ValueError("JWT claims do not name the key")
    return claims
