"""The instrument registry: shipped specs, path resolution and field-level errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.marketdata.instruments import (
    DEFAULT_PATH,
    ENV_VAR,
    find_by_venue_symbol,
    get_instrument,
    load_instruments,
)

REPO = Path(__file__).resolve().parents[1]


def test_default_file_is_the_repository_config() -> None:
    assert DEFAULT_PATH == REPO / "config" / "instruments.json"


def test_shipped_binance_specs() -> None:
    reg = load_instruments()
    spot = reg[("binance", "BTC-USDT")]
    assert (spot.price_scale, spot.size_scale) == (8, 8)
    assert spot.tick == 1_000_000  # 0.01 at scale 8
    assert spot.lot == 1_000  # 0.00001
    assert spot.min_notional == 5
    assert spot.maker_fee == spot.taker_fee == 0.001
    assert spot.venue_symbol == "BTCUSDT"
    eth = reg[("binance", "ETH-USDT")]
    assert (eth.tick, eth.lot, eth.min_notional) == (1_000_000, 10_000, 5)
    perp = reg[("binance-futures", "BTC-USDT")]
    assert (perp.tick, perp.lot, perp.min_notional) == (10_000_000, 100_000, 100)
    assert (perp.maker_fee, perp.taker_fee) == (0.0002, 0.0005)
    assert not perp.inverse
    eth_perp = reg[("binance-futures", "ETH-USDT")]
    assert (eth_perp.tick, eth_perp.lot, eth_perp.min_notional) == (1_000_000, 100_000, 20)
    coinm = reg[("binance-delivery", "BTC-USD")]
    assert coinm.venue_symbol == "BTCUSD_PERP"
    assert coinm.inverse and coinm.contract_size == 100
    assert (coinm.tick, coinm.lot) == (10_000_000, 100_000_000)


def test_tardis_sample_instruments_are_listed() -> None:
    reg = load_instruments()
    for venue, wire in (("deribit", "BTC-PERPETUAL"), ("bitmex", "XBTUSD"), ("huobi-dm-swap", "BTC-USD")):
        inst = find_by_venue_symbol(reg, venue, wire)
        assert inst is not None, (venue, wire)
        assert inst.inverse
    assert find_by_venue_symbol(reg, "binance-futures", "btcusdt") is reg[("binance-futures", "BTC-USDT")]


def test_env_var_selects_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "inst.json"
    entry = {
        "venue": "kraken",
        "symbol": "XBT-USD",
        "venue_symbol": "XBTUSD",
        "price_scale": 1,
        "size_scale": 8,
        "tick": "0.1",
        "lot": 1e-8,
    }
    path.write_text(json.dumps({"instruments": [entry]}))
    monkeypatch.setenv(ENV_VAR, str(path))
    reg = load_instruments()
    assert list(reg) == [("kraken", "XBT-USD")]
    assert reg[("kraken", "XBT-USD")].lot == 1
    assert get_instrument("kraken", "XBT-USD").tick == 1


def test_get_instrument_names_what_is_missing() -> None:
    reg = load_instruments()
    with pytest.raises(ConfigError, match="unknown symbol 'DOGE-USDT' on venue 'binance'"):
        get_instrument("binance", "DOGE-USDT", reg)
    with pytest.raises(ConfigError, match="unknown venue 'nasdaq'"):
        get_instrument("nasdaq", "AAPL-USD", reg)


def _write(tmp_path: Path, entries: list[dict]) -> Path:
    """``entries`` as an instruments file; an entry without ``venue_symbol`` gets its symbol
    without the dash (the tests' own shorthand: the file format requires the field)."""
    path = tmp_path / "instruments.json"
    full = [
        e if "venue_symbol" in e or "symbol" not in e else {**e, "venue_symbol": e["symbol"].replace("-", "")}
        for e in entries
    ]
    path.write_text(json.dumps({"instruments": full}))
    return path


GOOD = {
    "venue": "v",
    "symbol": "A-B",
    "price_scale": 2,
    "size_scale": 3,
    "tick": "0.01",
    "lot": "0.001",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tick": "-0.5"}, "instruments[3].tick: must be a positive decimal"),
        ({"tick": "abc"}, "instruments[3].tick: must be a positive decimal"),
        ({"tick": True}, "instruments[3].tick: must be a positive decimal"),
        ({"tick": "0.001"}, "instruments[3].tick: 0.001 has more decimals than the scale (2) can hold"),
        ({"lot": 0}, "instruments[3].lot: must be a positive decimal"),
        ({"price_scale": 30}, "instruments[3].price_scale: must be an integer from 0 to 17"),
        ({"size_scale": "3"}, "instruments[3].size_scale: must be an integer from 0 to 17"),
        ({"symbol": "btcusdt"}, "instruments[3].symbol: must be upper-case BASE-QUOTE"),
        ({"kind": "option"}, "instruments[3].kind: must be one of spot, perp, future"),
        ({"inverse": "yes"}, "instruments[3].inverse: must be true or false"),
        ({"contract_size": "0"}, "instruments[3].contract_size: must be a positive decimal"),
        ({"maker_fee": "2"}, "instruments[3].maker_fee: must be a fraction"),
        ({"tik": "0.01"}, "instruments[3].tik: unknown field"),
    ],
)
def test_bad_field_is_named_with_its_index(tmp_path: Path, change: dict, message: str) -> None:
    entries = [dict(GOOD, symbol=f"A{i}-B") for i in range(3)] + [dict(GOOD, **change)]
    path = _write(tmp_path, entries)
    with pytest.raises(ConfigError) as info:
        load_instruments(path)
    assert str(info.value).startswith(f"Failed to load configuration from {path}: ")
    assert message in str(info.value)


def test_missing_field_duplicate_and_file_errors(tmp_path: Path) -> None:
    missing = dict(GOOD)
    del missing["lot"]
    with pytest.raises(ConfigError, match=r"instruments\[0\].lot: missing"):
        load_instruments(_write(tmp_path, [missing]))
    path = tmp_path / "no_wire_name.json"
    path.write_text(json.dumps({"instruments": [GOOD]}))
    with pytest.raises(ConfigError, match=r"instruments\[0\].venue_symbol: missing"):
        load_instruments(path)  # the venue's spelling is never guessed
    with pytest.raises(ConfigError, match=r"instruments\[1\]: duplicate instrument v A-B"):
        load_instruments(_write(tmp_path, [GOOD, GOOD]))
    with pytest.raises(ConfigError, match="venue_symbol: AB on v already used by instruments"):
        load_instruments(_write(tmp_path, [GOOD, dict(GOOD, symbol="AB-X", venue_symbol="AB")]))
    with pytest.raises(ConfigError, match="file not found"):
        load_instruments(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"instruments": [')
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_instruments(bad)
    bad.write_text("[]")
    with pytest.raises(ConfigError, match='expected an object with an "instruments" list'):
        load_instruments(bad)


def test_decimal_numbers_are_read_exactly(tmp_path: Path) -> None:
    path = tmp_path / "i.json"
    path.write_text(
        '{"instruments": [{"venue": "v", "symbol": "A-B", "venue_symbol": "AB", "price_scale": 8, "size_scale": 8,'
        ' "tick": 0.1, "lot": 0.00000003, "min_qty": 0.00000003}]}'
    )
    inst = load_instruments(path)[("v", "A-B")]
    assert (inst.tick, inst.lot, inst.min_qty) == (10_000_000, 3, 3)
