"""Exact decimal parsing used by the importers agrees with engine.model.to_fixed and rejects the rest."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.marketdata.decimals import parse_arrow, parse_strings
from engine.model import to_fixed

decimal_text = st.builds(
    lambda whole, frac, pad: f"{whole}.{frac}{'0' * pad}" if frac else f"{whole}",
    st.integers(min_value=0, max_value=10**9),
    st.text(alphabet="0123456789", max_size=8),
    st.integers(min_value=0, max_value=6),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(decimal_text, min_size=1, max_size=40), st.sampled_from([0, 2, 8]))
def test_parse_strings_matches_to_fixed(values: list[str], scale: int) -> None:
    got, ok = parse_strings(values, scale)
    for text, value, good in zip(values, got.tolist(), ok.tolist(), strict=True):
        frac = text.partition(".")[2].rstrip("0")
        if len(frac) <= scale:
            assert good, text
            assert value == to_fixed(text, scale)
            assert Decimal(value) == Decimal(text).scaleb(scale)
        else:
            assert not good, text
            assert value == 0


def test_binance_wire_strings() -> None:
    got, ok = parse_strings(["61837.63000000", "0.00105000", "61800.20", "0.000", "1001"], 8)
    assert ok.all()
    assert got.tolist() == [6183763000000, 105000, 6180020000000, 0, 100100000000]


@pytest.mark.parametrize(
    "bad",
    ["", ".", "1e5", "-1", "+1", " 1", "1 ", "1_0", "1.2.3", "0x10", "1,5", "٣", "NaN", "inf", "1.000000001"],
)
def test_rejects_what_python_would_accept_or_round(bad: str) -> None:
    got, ok = parse_strings(["1", bad, "2"], 8)
    assert ok.tolist() == [True, False, True]
    assert got.tolist() == [10**8, 0, 2 * 10**8]


def test_overflow_is_rejected_not_wrapped() -> None:
    got, ok = parse_strings(["9999999999.99999999", "99999999999.99999999", "1" + "0" * 40], 8)
    assert ok.tolist() == [True, False, False]
    assert got[0] == 999999999999999999


def test_extra_zero_decimals_beyond_scale_are_exact() -> None:
    got, ok = parse_strings(["0.000000010000", "5.10"], 8)
    assert ok.all()
    assert got.tolist() == [1, 510000000]


def test_parse_arrow_handles_offsets_nulls_and_chunks() -> None:
    arr = pa.array(["x", "1.5", None, "2.25", "bad", "3"])
    values, ok = parse_arrow(arr.slice(1, 4), 2)
    assert ok.tolist() == [True, False, True, False]
    assert values.tolist() == [150, 0, 225, 0]
    chunked = pa.chunked_array([pa.array(["1", "2"]), pa.array(["3"])])
    values, ok = parse_arrow(chunked, 0)
    assert ok.all()
    assert values.tolist() == [1, 2, 3]
    large, ok = parse_arrow(pa.array(["4.5", "6"], pa.large_string()), 1)
    assert ok.all()
    assert large.tolist() == [45, 60]
    empty_values, empty_ok = parse_arrow(pa.array([], pa.string()), 2)
    assert len(empty_values) == 0
    assert empty_ok.dtype == np.bool_
