"""The event log: what every run (backtest, paper, live) writes to ``runs/<run_id>/``.

Reports read only these files (through DuckDB), so a backtest and a live session of the same
events give the same report. Each table is one Parquet file named ``<table>.parquet``; a live
session that rolls files writes ``<table>-<n>.parquet`` parts (readers glob ``<table>*.parquet``).
While a paper or live session runs, and after it crashed until it is recovered, a table is an
Arrow IPC stream ``<table>.arrows`` (later segments ``<table>-<n>.arrows``) with the same schema,
readable up to its last complete batch; a graceful close or ``engine.recorder.recover_run`` turns
it into ``<table>.parquet`` (``docs/crash-safety.md``).

Timestamps are int64 nanoseconds on the engine's local clock (simulated in a backtest, wall clock
live) unless named ``ts_event``/``ts_venue`` (venue clock). ``seq`` is one counter across all tables
of a run: sorting by ``seq`` gives the exact order in which the engine saw things.
Prices and quantities are DOUBLE decimals (converted from the engine's fixed-point at the edge).
Missing stage timestamps are 0.

Latency stages (what ``reports/latency`` computes):
- feed:               ``market.feed_latency_ns`` (simulated in a backtest, measured live)
- tick to decision:   ``orders.ts_decided - orders.ts_tick`` on ``event = 'submit'`` rows
- decision to send:   ``orders.ts_sent - orders.ts_decided`` on ``submit`` rows (risk + OMS)
- send to ack:        ``orders.ts_acked - orders.ts_sent`` on ``accepted`` rows
- ack to fill:        ``fills.ts - fills.ts_acked``
- end to end:         ``orders.ts_acked - orders.ts_tick`` on ``accepted`` rows
``manifest.json`` key ``latency_source`` says ``simulated`` or ``measured``.
"""

from __future__ import annotations

import pyarrow as pa

_S = pa.string()
_I = pa.int64()
_F = pa.float64()
_B = pa.bool_()

ORDERS = pa.schema(
    [
        ("seq", _I),
        ("ts", _I),
        # submit | accepted | rejected | cancel_request | canceled | cancel_rejected | expired
        # | modify_request | modified | partially_filled | filled | adopted (found open at the
        # venue at start-up and taken over, ``engine.reconcile``)
        ("event", _S),
        ("strategy_id", _S),
        ("venue", _S),
        ("symbol", _S),
        ("client_order_id", _S),
        ("venue_order_id", _S),
        ("side", _S),  # buy | sell
        ("order_type", _S),  # LIMIT | MARKET
        ("tif", _S),
        ("price", _F),  # limit price (0 for market orders)
        ("qty", _F),
        ("filled_qty", _F),
        ("leaves_qty", _F),
        ("status", _S),  # engine.model.OrderStatus value after this event
        ("reason", _S),  # rejection / cancel reason in the guide's wording
        ("code", _I),  # venue error code, 0 when none
        ("ts_tick", _I),  # ts_recv of the market data the decision was made on
        ("ts_decided", _I),
        ("ts_sent", _I),
        ("ts_acked", _I),
        ("ts_venue", _I),  # venue time of this response
        ("mid", _F),  # mid the engine saw at ts (NaN when no book)
        ("post_only", _B),
    ]
)

FILLS = pa.schema(
    [
        ("seq", _I),
        ("ts", _I),  # local receipt of the fill
        ("ts_event", _I),  # venue time of the fill
        ("strategy_id", _S),
        ("venue", _S),
        ("symbol", _S),
        ("client_order_id", _S),
        ("venue_order_id", _S),
        ("trade_id", _S),
        ("side", _S),
        ("price", _F),
        ("qty", _F),
        ("notional", _F),  # quote currency
        ("fee", _F),  # quote currency, negative = rebate
        ("fee_asset", _S),
        ("liquidity", _S),  # maker | taker
        ("order_price", _F),
        ("mid_at_decision", _F),
        ("mid_at_fill", _F),  # mid the engine saw when the fill arrived
        ("ts_tick", _I),
        ("ts_decided", _I),
        ("ts_sent", _I),
        ("ts_acked", _I),
        ("position_after", _F),
        ("realized_pnl", _F),  # realized by this fill, before fees
    ]
)

POSITIONS = pa.schema(
    [
        ("seq", _I),
        ("ts", _I),
        ("strategy_id", _S),
        ("venue", _S),
        ("symbol", _S),
        ("position", _F),  # signed base quantity
        ("avg_price", _F),
        ("realized_pnl", _F),  # cumulative, before fees
        ("unrealized_pnl", _F),
        ("fees", _F),  # cumulative
        ("mark_price", _F),
        ("reason", _S),  # fill | mark (periodic mark-to-market) | final | restored (from the store at start)
    ]
)

RISK = pa.schema(
    [
        ("seq", _I),
        ("ts", _I),
        ("strategy_id", _S),
        ("venue", _S),
        ("symbol", _S),
        ("client_order_id", _S),
        ("check", _S),  # trading_enabled | max_order_size | position_limit | global_position_limit
        # | daily_loss | balance | order_rate | price_band | strategy_halted | ok
        ("passed", _B),
        ("reason", _S),  # "Risk check failed: Position limit exceeded", ...
        ("value", _F),
        ("limit", _F),
    ]
)

MARKET = pa.schema(
    [
        ("seq", _I),
        ("ts", _I),  # ts_recv: when the strategy was shown this book
        ("ts_event", _I),
        ("venue", _S),
        ("symbol", _S),
        ("bid", _F),
        ("ask", _F),
        ("bid_size", _F),
        ("ask_size", _F),
        ("mid", _F),
        ("data_seq", _I),  # venue sequence of the batch: reference into the market data
        ("feed_latency_ns", _I),
    ]
)

TIMERS = pa.schema([("seq", _I), ("ts", _I), ("strategy_id", _S), ("name", _S)])

INCIDENTS = pa.schema(
    [
        ("seq", _I),
        ("ts", _I),
        ("venue", _S),
        ("symbol", _S),
        ("kind", _S),
        ("detail", _S),
        ("value", _F),
    ]
)

RECONCILE = pa.schema(
    [
        ("seq", _I),
        ("ts", _I),
        ("venue", _S),
        ("symbol", _S),
        ("item", _S),  # order | balance | fill | position
        # adopted | cancelled | cancel_failed | closed | filled_while_away | loaded | differs, and with
        # a store (engine.reconcile): restored | order_gone_at_venue | order_unknown_locally |
        # fill_missed | fill_unattributed | filled_from_venue | position_drift | baseline | unreadable
        ("action", _S),
        ("client_order_id", _S),
        ("venue_order_id", _S),
        ("local_value", _F),  # what this node believed (NaN when it knew nothing)
        ("venue_value", _F),  # what the venue reported
        ("detail", _S),
    ]
)

INCIDENT_KINDS = (
    "sequence_gap",  # "Market data sequence gap"
    "crossed_book",
    "bad_level",  # non-positive price or size in the feed
    "stale_data",
    "resync",
    "id_jump",  # an update id implausibly far from the book's: refused, the book rebuilt
    "disconnect",
    "reconnect",
    "rate_limit_wait",  # the local limiter held a request back
    "rate_limit",  # HTTP 429 "Rate limit exceeded": nothing leaves before Retry-After
    "ip_banned",  # HTTP 418: the IP is banned until Retry-After
    "venue_unreachable",  # no answer in time, connection refused or dropped ("Failed to connect to ...")
    "venue_error",  # HTTP 5XX, -1007 ("Exchange outage")
    "venue_restored",  # first answer after an outage (value: its seconds)
    "bad_trade",  # a trade print outside the plausible band around the book
    "strategy_halted",
    "decode_error",
    "clock_offset",
    "order_state_unknown",
    "reconcile",  # the venue's account differed from what this node knew at start-up
    "memory_pressure",  # the daemon's memory check acted (engine.daemon.memory)
    # the database (engine.store.service); orders and fills wait in the journal meanwhile
    "database_unavailable",  # "Database connection failed: could not connect to server ..."
    "database_timeout",  # "Database query timeout: ..."
    "database_restored",  # connected again (value: the outage's seconds); the journal is replayed
    "queue_full",  # "Queue full": market data for the database sampled or dropped (value: rows dropped so far)
)

TABLES: dict[str, pa.Schema] = {
    "orders": ORDERS,
    "fills": FILLS,
    "positions": POSITIONS,
    "risk": RISK,
    "market": MARKET,
    "timers": TIMERS,
    "incidents": INCIDENTS,
    "reconcile": RECONCILE,
}

MANIFEST = "manifest.json"
# manifest.json keys: run_id, name (the config's), mode (backtest|paper|live), latency_source
# (simulated|measured), config (the resolved config, secrets redacted), config_path, data {root,
# venue, symbols, from_ns, to_ns, files, rows}, code_version, seeds, strategies [ids], instruments
# [{venue, symbol, tick, lot, ...}], summary {pnl, fees, trades, ...} written at the end of the run.
# A backtest writes it once, at the end. A paper or live session writes it when it starts, without
# a summary, and again when it closes; those add: status (running -> closed; crashed once a run
# that died running is recovered), started_at, closed_at (UTC, ms), continues / continued_by (the
# run id a restart after a crash continues, and the run that continued it), recovered_at,
# recovered_rows {table: rows}, recovered_torn_segments. A run without a status is closed.
