"""Venue profiles: client ids within each venue's rules, and its error vocabulary both ways.

The rules of ``../shared/docs/venues.md``: Binance ``^[a-zA-Z0-9-_]{1,36}$``; Kraken a UUID or
18 characters of free text; Coinbase UUIDs. The order manager must make valid ids for each, the
same on every backtest run, never the same twice in a session.
"""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.oms import session_tag
from engine.venue.profile import (
    GENERIC_PROFILE,
    LOT_SIZE,
    POST_ONLY_WOULD_TAKE,
    REJECTED,
    UNKNOWN_ORDER,
    ClientIdRules,
    ErrorVocabulary,
    VenueError,
)
from venues.binance.profile import PROFILE as BINANCE

KRAKEN_LIKE = ClientIdRules(max_len=18, charset="A-Za-z0-9_-", uuid_ok=True)
COINBASE_LIKE = ClientIdRules(uuid_only=True)
BINANCE_ID = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")

strategy_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(strategy_ids, st.integers(1, 10**10 - 1), st.booleans())
def test_binance_ids_fit_its_pattern_for_any_strategy_id_and_counter(sid: str, n: int, live: bool) -> None:
    rules = BINANCE.client_ids
    cid = rules.make(rules.prefix(sid, session_tag(10**18) if live else ""), n)
    assert BINANCE_ID.match(cid) and rules.valid(cid)
    assert not rules.uses_uuid and cid.endswith(f"-{n}")


@settings(max_examples=100, deadline=None)
@given(strategy_ids, st.integers(1, 10**10 - 1))
def test_short_free_text_venues_and_uuid_venues_get_uuids_that_are_stable_and_distinct(sid: str, n: int) -> None:
    for rules in (KRAKEN_LIKE, COINBASE_LIKE):
        assert rules.uses_uuid  # 18 characters leave no room for a session tag and a counter
        prefix = rules.prefix(sid, "abc123")
        cid = rules.make(prefix, n)
        assert str(uuid.UUID(cid)) == cid and rules.valid(cid)
        assert cid == rules.make(prefix, n)  # deterministic: a backtest's ids are the same every run
        assert cid != rules.make(prefix, n + 1)


def test_validity_follows_each_venues_rules() -> None:
    a_uuid = str(uuid.uuid4())
    assert KRAKEN_LIKE.valid("short-text_18chars") and KRAKEN_LIKE.valid(a_uuid)
    assert not KRAKEN_LIKE.valid("x" * 19) and not KRAKEN_LIKE.valid("has space")
    assert COINBASE_LIKE.valid(a_uuid) and not COINBASE_LIKE.valid("mm-1")
    assert not BINANCE.client_ids.valid("a" * 37) and not BINANCE.client_ids.valid("é")


def test_binance_speaks_its_own_words_and_reads_them_back() -> None:
    e = BINANCE.error(POST_ONLY_WOULD_TAKE)
    assert (e.code, e.text) == (-2010, "Order would immediately match and take.")
    assert BINANCE.errors.classify(-2010, "Order would immediately match and take.") == POST_ONLY_WOULD_TAKE
    assert BINANCE.errors.classify(-1013, "Filter failure: LOT_SIZE") == LOT_SIZE
    assert BINANCE.errors.classify(-2011, "Unknown order sent.") == UNKNOWN_ORDER
    # -2010 carries several texts: an unknown one is not guessed to be any of them
    assert BINANCE.errors.classify(-2010, "Something new") == REJECTED


def test_a_reason_a_venue_does_not_name_falls_back_to_the_generic_words() -> None:
    vocab = ErrorVocabulary({LOT_SIZE: VenueError(7, "too small")})
    assert vocab.error(LOT_SIZE) == VenueError(7, "too small")
    assert vocab.error(UNKNOWN_ORDER) == GENERIC_PROFILE.error(UNKNOWN_ORDER)
    with pytest.raises(ValueError, match="unknown canonical reasons"):
        ErrorVocabulary({"lot_sise": VenueError(1, "x")})
