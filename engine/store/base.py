"""``Store``: what the rest of the system asks of a database, and the row mapping both backends share.

Writes take event-log tuples exactly as the recorder hands them over (``TABLES[table]`` column
order) and are idempotent, so a journal can be replayed any number of times: event tables have a
key (``(run_id, seq)``, fills ``(venue, symbol, trade_id, client_order_id)``) and conflicting rows
are skipped; ``orders`` and ``positions`` hold current state and a row only replaces a stored one
that is not newer by ``(ts, seq)``. Several events of one order in a batch are folded into one
row here first (a single upsert statement may not touch a row twice).

Reads are the same SQL on both backends (``$n`` parameters work in PostgreSQL and DuckDB), so
the two stores answer alike; each backend supplies ``_fetch`` and its own bulk paths.
"""

from __future__ import annotations

import datetime as dt
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from engine.model import OrderStatus
from engine.store.schema import EVENT_TABLES, ORDER_EVENT_COLS, POSITION_COLS, RISK_COLS

TERMINAL_STATUSES = tuple(s.value for s in OrderStatus if s.is_terminal)
DAY_NS = 86_400 * 1_000_000_000
UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

_OE = {c: i for i, (c, _) in enumerate(ORDER_EVENT_COLS)}
_POS = {c: i for i, (c, _) in enumerate(POSITION_COLS)}
RISK_PASSED = next(i for i, (c, _) in enumerate(RISK_COLS) if c == "passed")


def to_datetime(ts_ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(ts_ns) // 1000)


def to_datetimes(ts_ns: Sequence[int]) -> list[dt.datetime]:
    """UTC datetimes (microseconds, truncated) of ns timestamps; numpy does the arithmetic and the
    aware objects are built from its naive ones (asyncpg reads naive as local time)."""
    naive = np.asarray(ts_ns, dtype=np.int64).view("datetime64[ns]").astype("datetime64[us]").tolist()
    return [t.replace(tzinfo=UTC) for t in naive]


def day_of(ts_ns: int) -> str:
    return to_datetime(ts_ns - ts_ns % DAY_NS).strftime("%Y-%m-%d")


def days_between(first_ns: int, last_ns: int) -> list[str]:
    """Every UTC day (``YYYY-MM-DD``) from the day of ``first_ns`` to the day of ``last_ns``."""
    start = first_ns - first_ns % DAY_NS
    return [day_of(t) for t in range(start, last_ns + 1, DAY_NS)]


#: per table, the event-log columns of its key: batches are written in key order, so two writers
#: inserting overlapping batches lock rows in the same order and cannot deadlock
_KEY_ORDER = {
    "fills": tuple(next(i for i, (c, _) in enumerate(EVENT_TABLES["fills"][1]) if c == k)
                   for k in ("venue", "symbol", "trade_id", "client_order_id")),
    "positions": (_POS["strategy_id"], _POS["venue"], _POS["symbol"]),
}  # fmt: skip


def key_sorted(table: str, rows: Sequence[tuple]) -> list[tuple]:
    idx = _KEY_ORDER.get(table, (0,))  # event tables: seq
    return sorted(rows, key=lambda r: tuple("" if r[i] is None else r[i] for i in idx))


def event_rows(table: str, rows: Sequence[tuple], run_id: str) -> list[tuple]:
    """Event-log tuples as store rows: ``(run_id, time, *row)`` in key order; ``risk`` keeps only
    refusals."""
    if table == "risk":
        rows = [r for r in rows if not r[RISK_PASSED]]
    if not rows:
        return []
    rows = key_sorted(table, rows)
    times = to_datetimes([r[1] for r in rows])
    return [(run_id, t, *r) for t, r in zip(times, rows, strict=True)]


def order_states(rows: Sequence[tuple], run_id: str) -> list[tuple]:
    """One ``orders`` row per order from a batch of its events: the newest event's state, the
    oldest event's time as ``created``; columns in ``schema.ORDER_STATE_COLS`` order."""
    newest: dict[tuple[str, str], tuple] = {}
    created: dict[tuple[str, str], int] = {}
    ts_i, seq_i = _OE["ts"], _OE["seq"]
    for r in rows:
        key = (r[_OE["venue"]], r[_OE["client_order_id"]])
        old = newest.get(key)
        if old is None or (r[ts_i], r[seq_i]) >= (old[ts_i], old[seq_i]):
            newest[key] = r
        if key not in created or r[ts_i] < created[key]:
            created[key] = r[ts_i]
    out = []
    for key, r in sorted(newest.items()):
        c = created[key]
        out.append(
            (
                key[0], key[1], r[_OE["venue_order_id"]], run_id, r[_OE["strategy_id"]], r[_OE["symbol"]],
                r[_OE["side"]], r[_OE["order_type"]], r[_OE["tif"]], r[_OE["price"]], r[_OE["qty"]],
                r[_OE["filled_qty"]], r[_OE["leaves_qty"]], r[_OE["status"]], r[_OE["reason"]], r[_OE["post_only"]],
                to_datetime(c), to_datetime(r[ts_i]), c, r[ts_i], r[seq_i],
            )
        )  # fmt: skip
    return out


def newest_positions(rows: Sequence[tuple]) -> list[tuple]:
    """The newest (ts, seq) position row per (strategy_id, venue, symbol) of a batch."""
    newest: dict[tuple[str, str, str], tuple] = {}
    for r in rows:
        key = (r[_POS["strategy_id"]], r[_POS["venue"]], r[_POS["symbol"]])
        old = newest.get(key)
        if old is None or (r[1], r[0]) >= (old[1], old[0]):
            newest[key] = r
    return list(newest.values())


def snapshot_rows(rows: Iterable[tuple]) -> list[tuple]:
    """``(ts_ns, venue, symbol, data_seq, bid_px, bid_sz, ask_px, ask_sz)`` as order_book_snapshots rows."""
    rows = list(rows)
    times = to_datetimes([r[0] for r in rows])
    return [
        (t, r[0], r[1], r[2], r[3], max(len(r[4]), len(r[6])), list(r[4]), list(r[5]), list(r[6]), list(r[7]))
        for t, r in zip(times, rows, strict=True)
    ]


def check_table(table: str) -> None:
    from engine.store.errors import StoreError
    from engine.store.schema import WRITE_TABLES

    if table not in WRITE_TABLES:
        raise StoreError(f"unknown table {table!r} for Store.write (expected one of {', '.join(WRITE_TABLES)})")


def clean(value: Any) -> Any:
    """NaN as None in JSON documents (a manifest's summary may carry NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


class Store(ABC):
    """The persistence interface; every method is a coroutine (DuckDB's run synchronously inside)."""

    backend: str = ""

    # --- lifecycle ----------------------------------------------------------------------------
    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def migrate(self) -> list[int]: ...

    # --- writes ---------------------------------------------------------------------------------
    @abstractmethod
    async def write(self, table: str, rows: list[tuple], run_id: str) -> int: ...

    @abstractmethod
    async def copy_ticks(self, rows: list[tuple], run_id: str | None = None) -> int: ...

    @abstractmethod
    async def copy_snapshots(self, rows: list[tuple]) -> int: ...

    @abstractmethod
    async def put_balances(self, venue: str, balances: dict[str, tuple[float, float]], ts_ns: int) -> None: ...

    @abstractmethod
    async def begin_run(
        self, run_id: str, name: str, mode: str, config_path: str, started_ns: int, manifest: dict
    ) -> None: ...

    @abstractmethod
    async def end_run(self, run_id: str, status: str, closed_ns: int, summary: dict | None) -> None: ...

    @abstractmethod
    async def ensure_partitions(self, first_ns: int, last_ns: int) -> None: ...

    @abstractmethod
    async def retention(self, older_than_days: int, now_ns: int) -> dict[str, list[str]]: ...

    @abstractmethod
    async def health(self) -> dict: ...

    @abstractmethod
    async def delete_ticks(self, run_id: str, first_ns: int, last_ns: int) -> int:
        """Remove a run's ticks in ``[first_ns, last_ns]`` (reloading a run replaces its ticks)."""

    @abstractmethod
    async def applied_migrations(self) -> list[dict]:
        """``schema_migrations`` rows (version, name, checksum, flavor, applied_at), oldest first."""

    @abstractmethod
    async def sql(self, text: str) -> tuple[list[str], list[tuple]]:
        """Any one statement (``hft db sql``): column names and rows."""

    @abstractmethod
    async def _fetch(self, sql: str, *args: Any) -> list[dict]:
        """Rows of a query with ``$n`` parameters, as dicts."""

    async def table_counts(self) -> dict[str, int | None]:
        """Rows per store table (None: the table does not exist yet)."""
        from engine.store.schema import ALL_TABLES

        out: dict[str, int | None] = {}
        have = {r["table_name"] for r in await self._fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema IN ('public', 'main')"
        )}  # fmt: skip
        for t in ALL_TABLES:
            out[t] = (await self._fetch(f"SELECT count(*) AS n FROM {t}"))[0]["n"] if t in have else None
        return out

    # --- reads (the same SQL on both backends) ------------------------------------------------------
    async def open_orders(self, venue: str, symbols: list[str] | None = None) -> list[dict]:
        args: list[Any] = [venue, *TERMINAL_STATUSES]
        marks = ", ".join(f"${i + 2}" for i in range(len(TERMINAL_STATUSES)))
        sql = f"SELECT * FROM orders WHERE venue = $1 AND status NOT IN ({marks})"
        if symbols:
            sql += f" AND symbol IN ({_marks(len(args), len(symbols))})"
            args += list(symbols)
        return await self._fetch(sql + " ORDER BY created_ns, client_order_id", *args)

    async def order(self, venue: str | None, client_order_id: str) -> dict | None:
        if venue is None:
            rows = await self._fetch(
                "SELECT * FROM orders WHERE client_order_id = $1 ORDER BY updated_ns DESC LIMIT 1", client_order_id
            )
        else:
            rows = await self._fetch(
                "SELECT * FROM orders WHERE venue = $1 AND client_order_id = $2", venue, client_order_id
            )
        return rows[0] if rows else None

    async def orders(
        self, *, symbol: str | None = None, status: str | None = None, since_ns: int | None = None, limit: int = 100
    ) -> list[dict]:
        where, args = _where({"symbol = ": symbol, "status = ": status, "created_ns >= ": since_ns})
        args.append(int(limit))
        return await self._fetch(
            f"SELECT * FROM orders{where} ORDER BY created_ns DESC, client_order_id LIMIT ${len(args)}", *args
        )

    async def positions(self, venue: str | None = None) -> list[dict]:
        where, args = _where({"venue = ": venue})
        return await self._fetch(f"SELECT * FROM positions{where} ORDER BY strategy_id, venue, symbol", *args)

    async def balances(self, venue: str) -> dict[str, dict]:
        rows = await self._fetch("SELECT * FROM balances WHERE venue = $1 ORDER BY asset", venue)
        return {r["asset"]: r for r in rows}

    async def fills(
        self,
        *,
        venue: str | None = None,
        symbol: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        where, args = _where(
            {"venue = ": venue, "symbol = ": symbol, "ts_event >= ": since_ns, "ts_event < ": until_ns}
        )
        sql = f"SELECT * FROM fills{where} ORDER BY ts_event, venue, symbol, trade_id, client_order_id"
        if limit is not None:
            args.append(int(limit))
            sql += f" LIMIT ${len(args)}"
        return await self._fetch(sql, *args)

    async def fill_trade_ids(self, venue: str, symbol: str, since_ns: int) -> set[tuple[str, str]]:
        rows = await self._fetch(
            "SELECT trade_id, client_order_id FROM fills WHERE venue = $1 AND symbol = $2 AND ts_event >= $3",
            venue,
            symbol,
            int(since_ns),
        )
        return {(r["trade_id"], r["client_order_id"]) for r in rows}

    async def last_fill_ns(self, venue: str, symbol: str) -> int | None:
        rows = await self._fetch(
            "SELECT max(ts_event) AS last FROM fills WHERE venue = $1 AND symbol = $2", venue, symbol
        )
        last = rows[0]["last"] if rows else None
        return int(last) if last is not None else None

    async def run(self, run_id: str) -> dict | None:
        rows = await self._fetch("SELECT * FROM strategy_runs WHERE run_id = $1", run_id)
        return rows[0] if rows else None

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _marks(start: int, n: int) -> str:
    return ", ".join(f"${start + i + 1}" for i in range(n))


def _where(conds: dict[str, Any]) -> tuple[str, list[Any]]:
    parts: list[str] = []
    args: list[Any] = []
    for expr, value in conds.items():
        if value is None:
            continue
        args.append(int(value) if isinstance(value, int | np.integer) and not isinstance(value, bool) else value)
        parts.append(f"{expr}${len(args)}")
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


__all__ = ["EVENT_TABLES", "TERMINAL_STATUSES", "Store"]
