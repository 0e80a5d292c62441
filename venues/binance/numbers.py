"""Exact decimal-string -> fixed-point conversion for Binance's price/quantity strings.

Binance sends every price and quantity as a decimal string ("61837.63000000"). Going through
float would lose exactness, and ``engine.model.to_fixed`` is general but slow for the hot path.
``parse_fixed`` handles one string with two string operations and one ``int``;
``levels_from_json`` converts a whole ``[[price, qty], ...]`` array in one compiled pass.

Every id and fixed-point value taken from the wire must be at most ``MAX_WIRE`` (2**62): int64
holds it with room to spare (a sum or difference of two never overflows, ``2 * price`` neither),
and a value beyond it is a malformed message, not a number to apply.
"""

from __future__ import annotations

import numba as nb
import numpy as np

SCALE = 8
#: the largest id or fixed-point value a message may carry (both paths: the compiled scans accept
#: at most 18 digits, below 10**18 < 2**62, and leave longer numbers to the general path)
MAX_WIRE = 2**62
#: the latest venue time (ms) a message may carry: in nanoseconds it stays below ``MAX_WIRE``
MAX_EVENT_MS = MAX_WIRE // 1_000_000
_ZEROS = tuple("0" * i for i in range(19))


def parse_fixed(s: str, scale: int = SCALE) -> int:
    """``"61837.63000000"`` -> ``6183763000000`` at scale 8. Non-negative decimals only.

    Raises ValueError for anything else (signs, exponents, spaces, underscores, extra digits
    past ``scale`` that are not zeros, empty strings).
    """
    whole, _, frac = s.partition(".")
    n = len(frac)
    if n == scale:
        digits = whole + frac
    elif n < scale:
        digits = whole + frac + _ZEROS[scale - n]
    else:
        tail = frac[scale:]
        if tail.strip("0"):
            raise ValueError(f"{s!r} has more than {scale} decimals")
        digits = whole + frac[:scale]
    if not whole and not frac:
        raise ValueError(f"{s!r} is not a decimal number")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{s!r} is not a decimal number")
    return int(digits)


def parse_wire(s: str, scale: int = SCALE) -> int:
    """``parse_fixed`` for a value read from the wire: ValueError beyond ``MAX_WIRE`` as well."""
    v = parse_fixed(s, scale)
    if v > MAX_WIRE:
        raise ValueError(f"{s[:40]!r} is beyond the largest value a message may carry")
    return v


def wire_int(v: int, what: str) -> int:
    """An integer field from the wire (an id, a time): ValueError unless ``0 <= v <= MAX_WIRE``."""
    if not 0 <= v <= MAX_WIRE:
        raise ValueError(f"{what}={v} is outside [0, 2**62]")
    return v


def format_fixed(value: int, scale: int = SCALE) -> str:
    """``6183763000000`` -> ``"61837.63"`` (trailing zeros trimmed, no exponent): what goes on the wire.

    Every order formats its price and quantity, and a quoting strategy uses the same few hundred
    values over and over: the last 16k answers at Binance's scale are kept."""
    if scale == SCALE:
        text = _FORMATTED.get(value)
        if text is not None:
            return text
    if value < 0:
        text = "-" + format_fixed(-value, scale)
    else:
        whole, frac = divmod(value, 10**scale)
        text = str(whole) if frac == 0 else f"{whole}.{str(frac).rjust(scale, '0').rstrip('0')}"
    if scale == SCALE:
        if len(_FORMATTED) >= 16_384:
            _FORMATTED.clear()
        _FORMATTED[value] = text
    return text


_FORMATTED: dict[int, str] = {}


# --- the hot path: whole level arrays at once -------------------------------------------------
# A diff-depth message carries tens of [price, qty] string pairs; converting them one Python call
# at a time costs far more than reading the JSON. The compiled scans below read the raw bytes in
# one pass straight into int64 (n, 2) arrays, the form ``engine.book.Book.apply_levels`` takes.
# They accept only the compact form Binance sends (``[["61837.63000000","1.5"],...]``, keys
# without escapes, prices above zero); anything else makes them report failure and the caller
# takes the general (slower, equally exact) path, which also produces the error for bad input.

_MAX_DIGITS = 18  # whole + scale digits: below 10**18, so int64 holds the fixed-point value
_MAX_INT = 18  # digits of an integer field (ids, times): below 2**63
FAIL = -1
_POW10 = np.array([10**i for i in range(19)], dtype=np.int64)  # a compile-time constant for numba


@nb.njit(cache=True, nogil=True, inline="always")
def _scan_array(buf: np.ndarray, i: int, end: int, out: np.ndarray, k: int, scale: int) -> tuple[int, int]:
    """Parse the level array starting at ``buf[i] == '['`` into ``out[k:]``.

    Returns (index after the closing ']', rows written) or (FAIL, 0)."""
    n = end
    if i >= n or buf[i] != 91:  # [
        return FAIL, 0
    i += 1
    if i < n and buf[i] == 93:  # empty array
        return i + 1, 0
    rows = 0
    if scale < 0 or scale > _MAX_DIGITS - 1:
        return FAIL, 0
    mult = _POW10[scale]
    max_whole = _MAX_DIGITS - scale
    while True:
        # ["
        if i + 1 >= n or buf[i] != 91 or buf[i + 1] != 34:
            return FAIL, 0
        i += 2
        for col in range(2):
            whole = 0
            nwhole = 0
            while i < n and 48 <= buf[i] <= 57:
                whole = whole * 10 + (buf[i] - 48)
                nwhole += 1
                i += 1
            if nwhole == 0 or nwhole > max_whole:
                return FAIL, 0
            frac = 0
            nfrac = 0
            if i < n and buf[i] == 46:  # .
                i += 1
                while i < n and 48 <= buf[i] <= 57:
                    d = buf[i] - 48
                    if nfrac < scale:
                        frac = frac * 10 + d
                    elif d != 0:
                        return FAIL, 0  # more precision than the scale holds
                    nfrac += 1
                    i += 1
            if nfrac < scale:
                frac *= _POW10[scale - nfrac]
            if k + rows >= out.shape[0]:
                return FAIL, 0
            v = whole * mult + frac
            if col == 0 and v == 0:
                return FAIL, 0  # a zero price is no level: the general path reports it (bad_level)
            out[k + rows, col] = v
            if col == 0:
                # ","
                if i + 2 >= n or buf[i] != 34 or buf[i + 1] != 44 or buf[i + 2] != 34:
                    return FAIL, 0
                i += 3
        # "]
        if i + 1 >= n or buf[i] != 34 or buf[i + 1] != 93:
            return FAIL, 0
        i += 2
        rows += 1
        if i >= n:
            return FAIL, 0
        if buf[i] == 93:  # ]
            return i + 1, rows
        if buf[i] != 44:  # ,
            return FAIL, 0
        i += 1


@nb.njit(cache=True, nogil=True)
def _scan_levels(buf: np.ndarray, out: np.ndarray, scale: int) -> int:
    n = buf.shape[0]
    end, rows = _scan_array(buf, 0, n, out, 0, scale)
    if end != n:
        return FAIL
    return rows


@nb.njit(cache=True, nogil=True, inline="always")
def _skip_ws(buf: np.ndarray, i: int, n: int) -> int:
    while i < n and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
        i += 1
    return i


@nb.njit(cache=True, nogil=True)
def _scan_depth(buf: np.ndarray, lo: int, hi: int, out: np.ndarray, scale: int) -> tuple[int, int, int, int, int]:
    """One ``depthUpdate`` payload, ``buf[lo:hi]`` -> (E, U, u, bid rows, ask rows); bids go to
    ``out[:nb]``, asks right after. Returns (FAIL, ...) when the payload is not in the plain form
    Binance sends. ``buf`` may be a uint8 array or ``bytes`` (the frame itself, no copy).

    Fields may come in any order; ``e`` and ``s`` must be strings, ``E``/``U``/``u`` non-negative
    integers, ``b``/``a`` compact level arrays; other fields may hold strings, numbers, booleans
    or null. Anything else (nested values, escapes in keys, duplicate fields) is left to msgspec.
    """
    n = hi
    ev = -1
    first = -1
    last = -1
    nb_ = -1
    na = -1
    seen_e = False
    seen_s = False
    i = _skip_ws(buf, lo, n)
    if i >= n or buf[i] != 123:  # {
        return FAIL, 0, 0, 0, 0
    i = _skip_ws(buf, i + 1, n)
    if i < n and buf[i] == 125:
        return FAIL, 0, 0, 0, 0
    # the asks start after the bids whichever comes first: room for the larger of the two
    half = out.shape[0] // 2
    while True:
        if i >= n or buf[i] != 34:  # "
            return FAIL, 0, 0, 0, 0
        ks = i + 1
        i = ks
        while i < n and buf[i] != 34:
            if buf[i] == 92:  # backslash: escaped key
                return FAIL, 0, 0, 0, 0
            i += 1
        if i >= n:
            return FAIL, 0, 0, 0, 0
        klen = i - ks
        key = buf[ks] if klen == 1 else 0
        i = _skip_ws(buf, i + 1, n)
        if i >= n or buf[i] != 58:  # :
            return FAIL, 0, 0, 0, 0
        i = _skip_ws(buf, i + 1, n)
        if i >= n:
            return FAIL, 0, 0, 0, 0
        c = buf[i]
        if key == 69 or key == 85 or key == 117:  # E U u
            v = 0
            nd = 0
            while i < n and 48 <= buf[i] <= 57:
                v = v * 10 + (buf[i] - 48)
                nd += 1
                i += 1
            if nd == 0 or nd > _MAX_INT:
                return FAIL, 0, 0, 0, 0
            if i < n and (buf[i] == 46 or buf[i] == 101 or buf[i] == 69):  # a float is not an id
                return FAIL, 0, 0, 0, 0
            if key == 69:
                if ev >= 0:
                    return FAIL, 0, 0, 0, 0
                ev = v
            elif key == 85:
                if first >= 0:
                    return FAIL, 0, 0, 0, 0
                first = v
            else:
                if last >= 0:
                    return FAIL, 0, 0, 0, 0
                last = v
        elif key == 98 or key == 97:  # b a
            if key == 98:
                if nb_ >= 0:
                    return FAIL, 0, 0, 0, 0
                i, nb_ = _scan_array(buf, i, n, out[:half], 0, scale)
            else:
                if na >= 0:
                    return FAIL, 0, 0, 0, 0
                i, na = _scan_array(buf, i, n, out[half:], 0, scale)
            if i == FAIL:
                return FAIL, 0, 0, 0, 0
        elif c == 34:  # a string value
            if key == 101:
                if seen_e:
                    return FAIL, 0, 0, 0, 0
                seen_e = True
            elif key == 115:
                if seen_s:
                    return FAIL, 0, 0, 0, 0
                seen_s = True
            i += 1
            while i < n and buf[i] != 34:
                if buf[i] == 92:
                    i += 1
                i += 1
            if i >= n:
                return FAIL, 0, 0, 0, 0
            i += 1
        elif key == 101 or key == 115 or c == 91 or c == 123:
            # e and s must be strings; nested values in fields we do not use are msgspec's job
            return FAIL, 0, 0, 0, 0
        else:  # number, true, false, null
            while i < n and buf[i] != 44 and buf[i] != 125 and buf[i] != 32 and buf[i] != 10:
                i += 1
        i = _skip_ws(buf, i, n)
        if i >= n:
            return FAIL, 0, 0, 0, 0
        if buf[i] == 125:  # }
            break
        if buf[i] != 44:
            return FAIL, 0, 0, 0, 0
        i = _skip_ws(buf, i + 1, n)
    if _skip_ws(buf, i + 1, n) != n:
        return FAIL, 0, 0, 0, 0
    if ev < 0 or first < 0 or last < 0 or nb_ < 0 or na < 0 or not seen_e or not seen_s:
        return FAIL, 0, 0, 0, 0
    if na > 0:
        # move the asks next to the bids so both sides are one block
        for r in range(na):
            out[nb_ + r, 0] = out[half + r, 0]
            out[nb_ + r, 1] = out[half + r, 1]
    return ev, first, last, nb_, na


def levels_from_json(raw: bytes | memoryview, scale: int = SCALE) -> np.ndarray | None:
    """``b'[["61837.63","1.5"]]'`` -> int64 ``[[6183763000000, 150000000]]``; None if not in compact form."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    out = np.empty((buf.shape[0] // 9 + 1, 2), dtype=np.int64)
    k = _scan_levels(buf, out, scale)
    if k < 0:
        return None
    return out[:k]


def depth_from_json(raw: bytes | memoryview, scale: int = SCALE) -> tuple[int, int, int, np.ndarray, np.ndarray] | None:
    """A ``depthUpdate`` payload -> ``(E, U, u, bids, asks)`` with int64 (n, 2) level arrays (two
    views of one block); None when it is not in the plain form (the caller decodes it with msgspec)."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    # a level takes at least 9 bytes (["1","0"],); each side gets room for every level of the payload
    cap = buf.shape[0] // 9 + 1
    out = np.empty((2 * cap, 2), dtype=np.int64)
    ev, first, last, nb_, na = _scan_depth(buf, 0, buf.shape[0], out, scale)
    if ev < 0:
        return None
    return ev, first, last, out[:nb_], out[nb_ : nb_ + na]


def levels_array(pairs: list[tuple[str, str]] | list[list[str]], scale: int = SCALE) -> np.ndarray:
    """Exact general path: decimal string pairs -> int64 (n, 2). ValueError for anything that is
    not a non-negative decimal within the scale and ``MAX_WIRE``. A zero price passes: it is a
    well-formed number, and the book's sync refuses the level (``bad_level``)."""
    vals = [[parse_fixed(p, scale), parse_fixed(q, scale)] for p, q in pairs]
    for p, q in vals:
        if p > MAX_WIRE or q > MAX_WIRE:
            raise ValueError(f"level [{format_fixed(p, scale)}, {format_fixed(q, scale)}] is beyond 2**62")
    if not vals:
        return np.empty((0, 2), dtype=np.int64)
    return np.array(vals, dtype=np.int64)


@nb.njit(cache=True, nogil=True)
def _bad_row(levels: np.ndarray) -> int:
    for r in range(levels.shape[0]):
        if levels[r, 0] <= 0 or levels[r, 1] < 0 or levels[r, 0] > MAX_WIRE or levels[r, 1] > MAX_WIRE:
            return r
    return -1


def bad_level(levels: np.ndarray) -> tuple[int, int] | None:
    """The first ``(price, size)`` row no venue sends (price <= 0, size < 0, either beyond
    ``MAX_WIRE``), or None. One compiled pass over an int64 (n, 2) array."""
    if levels.shape[0] == 0:
        return None
    r = _bad_row(levels)
    if r < 0:
        return None
    return int(levels[r, 0]), int(levels[r, 1])
