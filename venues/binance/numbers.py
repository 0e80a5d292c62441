"""Exact decimal-string -> fixed-point conversion for Binance's price/quantity strings.

Binance sends every price and quantity as a decimal string ("61837.63000000"). Going through
float would lose exactness, and ``engine.model.to_fixed`` is general but slow for the hot path.
``parse_fixed`` handles one string with two string operations and one ``int``;
``levels_from_json`` converts a whole ``[[price, qty], ...]`` array in one compiled pass.
"""

from __future__ import annotations

import numba as nb
import numpy as np

SCALE = 8
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


def format_fixed(value: int, scale: int = SCALE) -> str:
    """``6183763000000`` -> ``"61837.63"`` (trailing zeros trimmed, no exponent): what goes on the wire."""
    if value < 0:
        return "-" + format_fixed(-value, scale)
    whole, frac = divmod(value, 10**scale)
    if frac == 0:
        return str(whole)
    return f"{whole}.{str(frac).rjust(scale, '0').rstrip('0')}"


# --- the hot path: a whole level array at once -------------------------------------------------
# A diff-depth message carries tens of [price, qty] string pairs; converting them one Python call
# at a time costs far more than reading the JSON. ``levels_from_json`` scans the raw bytes of the
# array in one compiled pass. It accepts only the compact form Binance sends
# (``[["61837.63000000","1.5"],...]``); anything else returns None and the caller takes the
# general (slower, equally exact) path, which also produces the error for bad input.

_MAX_WHOLE = 10  # digits before the point: 10**10 * 10**8 still fits in int64


@nb.njit(cache=True, nogil=True)
def _scan_levels(buf: np.ndarray, out: np.ndarray, scale: int) -> int:
    n = buf.shape[0]
    if n < 2 or buf[0] != 91 or buf[n - 1] != 93:  # [ ]
        return -1
    i = 1
    k = 0
    if n == 2:
        return 0
    while True:
        # ["
        if i + 1 >= n or buf[i] != 91 or buf[i + 1] != 34:
            return -1
        i += 2
        for col in range(2):
            whole = 0
            nwhole = 0
            while i < n and 48 <= buf[i] <= 57:
                whole = whole * 10 + (buf[i] - 48)
                nwhole += 1
                i += 1
            if nwhole == 0 or nwhole > _MAX_WHOLE:
                return -1
            frac = 0
            nfrac = 0
            if i < n and buf[i] == 46:  # .
                i += 1
                while i < n and 48 <= buf[i] <= 57:
                    d = buf[i] - 48
                    if nfrac < scale:
                        frac = frac * 10 + d
                    elif d != 0:
                        return -1  # more precision than the scale holds
                    nfrac += 1
                    i += 1
            for _ in range(nfrac, scale):
                frac *= 10
            out[k, col] = whole * 10**scale + frac
            if col == 0:
                # ","
                if i + 2 >= n or buf[i] != 34 or buf[i + 1] != 44 or buf[i + 2] != 34:
                    return -1
                i += 3
        # "]
        if i + 1 >= n or buf[i] != 34 or buf[i + 1] != 93:
            return -1
        i += 2
        k += 1
        if i == n - 1:
            return k
        if buf[i] != 44:  # ,
            return -1
        i += 1


def levels_from_json(raw: bytes | memoryview, scale: int = SCALE) -> list[list[int]] | None:
    """``b'[["61837.63","1.5"]]'`` -> ``[[6183763000000, 150000000]]``; None if not in compact form."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    out = np.empty((buf.shape[0] // 9 + 1, 2), dtype=np.int64)
    k = _scan_levels(buf, out, scale)
    if k < 0:
        return None
    return out[:k].tolist()
