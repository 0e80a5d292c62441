"""Opening one or more event logs (``runs/<run_id>/``) as DuckDB tables the reports query.

Every table the reports need is loaded once into an in-memory DuckDB database with a ``run``
column (the index of the run in the set), so a report over one run and an aggregate over many
runs are the same SQL. Only the columns the reports read are loaded, and a strategy filter is
pushed into the Parquet scan. Anything wrong with the files becomes a one-line ``RunLogError``.

A paper or live run that is still running, or that crashed (``kill -9``, a power loss) and was
not recovered yet, has its tables as Arrow IPC streams (``<table>.arrows``, ``engine.recorder``)
instead of ``<table>.parquet``. The reports read them as they are, never changing the run: each
such table is copied, up to the last complete batch of each segment, into a Parquet file in a
temporary directory (``RunInfo.table_paths``, bounded memory) and scanned like any other; a table
with neither file is empty. ``engine.recorder.recover_run`` (or the next session of the same
config) turns the streams into the run's own ``<table>.parquet``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import RunLogError
from engine.eventlog_schema import MANIFEST, TABLES
from engine.recorder import stream_files, streams_to_parquet

# Columns each report reads, per table. Keeping the list short keeps the 1M-fill benchmark fast.
FILL_COLUMNS = (
    "seq", "ts", "strategy_id", "venue", "symbol", "side", "price", "qty", "notional",
    "fee", "liquidity", "mid_at_decision", "mid_at_fill", "position_after", "realized_pnl",
)  # fmt: skip
POSITION_COLUMNS = ("seq", "ts", "strategy_id", "venue", "symbol", "position", "realized_pnl", "unrealized_pnl", "fees")
MARKET_COLUMNS = ("ts", "venue", "symbol", "bid", "ask", "mid")
REJECT_COLUMNS = ("seq", "ts", "strategy_id", "venue", "symbol", "reason", "code")
MAX_CASE_KEYS = 16  # up to this many keys, a CASE maps strings to keys (keeps file order); beyond, a join
RISK_COLUMNS = ("seq", "ts", "strategy_id", "venue", "symbol", "check", "passed", "reason")
INCIDENT_COLUMNS = ("seq", "ts", "venue", "symbol", "kind", "detail")

HOUR_NS = 3_600_000_000_000
LIQUIDITY = {0: "other", 1: "maker", 2: "taker"}  # fills.liq codes

_PART = re.compile(r"^(?P<table>[a-z]+)(?:-(?P<n>\d+))?\.parquet$")


@dataclass
class RunInfo:
    """One run directory: its manifest, the Parquet files of each table (parts in order) and the
    stream segments of the tables that have no Parquet file yet (a running or crashed session)."""

    path: Path
    run_id: str
    manifest: dict[str, Any]
    files: dict[str, list[Path]] = field(default_factory=dict)
    streams: dict[str, list[Path]] = field(default_factory=dict)
    _copies: dict[str, list[Path]] = field(default_factory=dict, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def mode(self) -> str:
        return str(self.manifest.get("mode") or "unknown")

    @property
    def partial(self) -> bool:
        """A session's log that was never closed: read from its streams, missing tables are empty."""
        return bool(self.streams) or self.manifest.get("status") in ("running", "crashed")

    def table_paths(self, table: str) -> list[Path]:
        """The Parquet files holding ``table``: the run's own, else a copy of what its streams hold
        (made once, in a temporary directory), else, for a partial run, an empty table."""
        files = self.files.get(table)
        if files:
            return files
        if table in self._copies:
            return self._copies[table]
        segments = self.streams.get(table, [])
        own = self.path / f"{table}.parquet"
        if segments and own.exists():  # converted meanwhile (the session closed)
            self._copies[table] = [own]
            return self._copies[table]
        if not segments and not self.partial:
            return []
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"hft-{self.path.name}-")
        out = Path(self._tmp.name) / f"{table}.parquet"
        try:
            streams_to_parquet(segments, table, out, durable=False)
        except Exception as exc:
            where = str(segments[0] if segments else self.path)
            raise RunLogError(where, f"unreadable stream ({_first_line(exc)})") from None
        self._copies[table] = [out]
        return self._copies[table]

    def strategies(self) -> list[str]:
        """Strategy ids named in the manifest (strings, or objects with an ``id``/``strategy_id``)."""
        out: list[str] = []
        for s in self.manifest.get("strategies") or []:
            if isinstance(s, str):
                out.append(s)
            elif isinstance(s, dict):
                sid = s.get("strategy_id") or s.get("id") or s.get("name")
                if sid:
                    out.append(str(sid))
        return out


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest, ``{}`` when there is none (a run written before sessions wrote theirs at
    start)."""
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunLogError(str(path), f"manifest is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunLogError(str(path), "manifest is not a JSON object")
    return data


def table_files(run_dir: Path) -> dict[str, list[Path]]:
    """``<table>.parquet`` and rolled parts ``<table>-<n>.parquet`` of each known table, in part order."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for p in run_dir.iterdir():
        m = _PART.match(p.name)
        if m and m["table"] in TABLES and p.is_file():
            found.setdefault(m["table"], []).append((int(m["n"]) if m["n"] else -1, p))
    return {t: [p for _, p in sorted(parts)] for t, parts in found.items()}


def inspect_run(run_dir: str | Path) -> RunInfo:
    """Check that ``run_dir`` is an event log and list its files; no data is read yet."""
    path = Path(run_dir)
    if not path.exists():
        raise RunLogError(str(path), "no such run directory")
    if not path.is_dir():
        raise RunLogError(str(path), "not a directory (expected runs/<run_id>/)")
    manifest = read_manifest(path)
    files = table_files(path)
    streams = {t: s for t, s in stream_files(path).items() if t not in files}
    if not manifest and not files and not streams:
        raise RunLogError(str(path), f"not an event log: no {MANIFEST} and no <table>.parquet files")
    run_id = str(manifest.get("run_id") or path.name)
    return RunInfo(path=path, run_id=run_id, manifest=manifest, files=files, streams=streams)


def _check_files(run: RunInfo, table: str, columns: Sequence[str]) -> list[Path]:
    files = run.table_paths(table)
    for f in files:
        try:
            schema = pq.read_schema(f)
        except Exception as exc:  # pyarrow raises several types for truncated or foreign files
            raise RunLogError(str(f), f"corrupt Parquet file ({_first_line(exc)})") from None
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise RunLogError(str(f), f"{table} table lacks column(s) {', '.join(missing)}")
    return files


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def sql_list(paths: Iterable[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


class EventLog:
    """A DuckDB connection holding the tables of one or more runs, filtered to one strategy if asked.

    ``run`` in every table is the index of the run in ``runs``. Insertion order is preserved (DuckDB's
    default): the P&L curve relies on running sums over a table stored in time order.
    """

    def __init__(self, runs: Sequence[RunInfo], strategy: str | None = None, threads: int | None = None) -> None:
        if not runs:
            raise ValueError("EventLog needs at least one run")
        self.runs = list(runs)
        self.strategy = strategy
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET preserve_insertion_order = true")  # the streaming windows read tables in order
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.orders_filled = 0
        if strategy is not None:
            self._check_strategy(strategy)

    def require(self, tables: Iterable[str]) -> None:
        for run in self.runs:
            for table in tables:
                if not run.table_paths(table):
                    raise RunLogError(str(run.path), f"missing {table}.parquet")

    # --- loading -----------------------------------------------------------------------------
    def scan(self, table: str, columns: Sequence[str], where: str = "", strategy_col: bool = True) -> str:
        """UNION ALL over runs of the Parquet scan of ``table``; empty-schema SELECT when no run has it."""
        parts = []
        for i, run in enumerate(self.runs):
            files = _check_files(run, table, columns)
            if not files:
                continue
            cond = []
            if where:
                cond.append(f"({where})")
            if strategy_col and self.strategy is not None:
                cond.append("strategy_id = $strategy")
            clause = (" WHERE " + " AND ".join(cond)) if cond else ""
            cols = ", ".join(f'"{c}"' for c in columns)
            parts.append(
                f"SELECT {i} AS run, {cols} FROM read_parquet({sql_list(files)}, union_by_name = true){clause}"
            )
        if not parts:
            schema = TABLES[table]
            cols = ", ".join(f'CAST(NULL AS {_duck_type(schema.field(c).type)}) AS "{c}"' for c in columns)
            return f"SELECT CAST(NULL AS INTEGER) AS run, {cols} WHERE false"
        return " UNION ALL ".join(parts)

    def _params(self, sql: str, params: Any) -> Any:
        if "$strategy" in sql:
            return {**(params or {}), "strategy": self.strategy}
        return params

    def create(self, name: str, sql: str, table: str) -> None:
        """``CREATE TABLE name AS sql`` where ``sql`` scans ``table``; a read failure is a ``RunLogError``."""
        try:
            self.con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}", self._params(sql, None))
        except duckdb.Error as exc:
            where = self.runs[0].path if len(self.runs) == 1 else Path(self.runs[0].path).parent
            raise RunLogError(str(where), f"cannot read the {table} table ({_first_line(exc)})") from None

    def load_post_mortem(self) -> None:
        """Load the post-mortem tables.

        ``keys`` numbers each (run, strategy, venue, symbol) as ``k`` and ``mkeys`` each (run, venue,
        symbol) as ``mkey``: small integer keys keep the window functions and ASOF joins fast.
        ``fills``, ``ledger`` (positions) and ``market`` carry those keys instead of the strings; ``fills``
        is stored in (k, seq) order and ``ledger`` in (ts, run, seq) order, which the streaming window
        functions rely on;
        ``order_events`` counts order events, ``rejects`` lists rejections, ``risk_fail`` failed checks.
        """
        self.require(("orders", "fills", "positions", "market"))
        key_cols = ("strategy_id", "venue", "symbol")
        self.create(
            "keys",
            f"""SELECT CAST(row_number() OVER (ORDER BY run, strategy_id, venue, symbol) AS INTEGER) AS k, *
                FROM (SELECT DISTINCT run, strategy_id, venue, symbol FROM (
                    {self.scan("fills", key_cols)} UNION ALL {self.scan("positions", key_cols)}))""",
            "fills",
        )
        self.create(
            "mkeys",
            f"""SELECT CAST(row_number() OVER (ORDER BY run, venue, symbol) AS INTEGER) AS mkey, *
                FROM (SELECT DISTINCT run, venue, symbol FROM (
                    SELECT run, venue, symbol FROM keys
                    UNION ALL {self.scan("market", ("venue", "symbol"), strategy_col=False)}))""",
            "market",
        )
        self.con.execute(
            """CREATE OR REPLACE TABLE keys AS SELECT keys.*, m.mkey FROM keys
               JOIN mkeys m ON keys.run = m.run AND keys.venue IS NOT DISTINCT FROM m.venue
                           AND keys.symbol IS NOT DISTINCT FROM m.symbol ORDER BY k"""
        )
        k_of, mkey_of, join = self._key_exprs()
        nan_safe = "CASE WHEN isnan(s.{0}) THEN NULL ELSE s.{0} END"
        self.create(
            "fills",
            f"""SELECT {k_of} AS k, {mkey_of} AS mkey, s.run, s.seq, s.ts,
                       CAST((s.ts // {HOUR_NS}) % 24 AS INTEGER) AS hour,
                       CASE WHEN s.side = 'buy' THEN 1 ELSE -1 END AS sgn, s.price, s.qty,
                       CASE WHEN s.notional IS NULL OR isnan(s.notional) THEN s.price * s.qty ELSE s.notional END
                         AS notional,
                       coalesce({nan_safe.format("fee")}, 0) AS fee,
                       CAST(CASE s.liquidity WHEN 'maker' THEN 1 WHEN 'taker' THEN 2 ELSE 0 END AS TINYINT) AS liq,
                       {nan_safe.format("mid_at_decision")} AS mid_at_decision,
                       {nan_safe.format("mid_at_fill")} AS mid_at_fill, s.position_after,
                       coalesce({nan_safe.format("realized_pnl")}, 0) AS realized_pnl
                FROM ({self.scan("fills", FILL_COLUMNS)}) s {join}""",
            "fills",
        )
        # A 64-bit hash per order id: counting distinct orders then needs no strings in memory.
        self.create(
            "fill_orders",
            f"SELECT run, hash(client_order_id) AS h FROM ({self.scan('fills', ('client_order_id',))})",
            "fills",
        )
        self.orders_filled = int(self.one("SELECT count(DISTINCT (run, h)) FROM fill_orders")[0])
        self.con.execute("DROP TABLE fill_orders")
        self.create(
            "ledger",
            f"""SELECT {k_of} AS k, s.run, s.seq, s.ts, s.position,
                       coalesce({nan_safe.format("realized_pnl")}, 0) AS realized,
                       coalesce({nan_safe.format("unrealized_pnl")}, 0) AS unrealized,
                       coalesce({nan_safe.format("fees")}, 0) AS fees
                FROM ({self.scan("positions", POSITION_COLUMNS)}) s {join}""",
            "positions",
        )
        self.ensure_order("fills", ("k", "seq"))
        self.ensure_order("ledger", ("ts", "run", "seq"))
        market = self.scan("market", MARKET_COLUMNS, where="mid > 0 AND NOT isnan(mid)", strategy_col=False)
        self.create(
            "market",
            f"""SELECT m.mkey, s.ts, s.bid, s.ask, s.mid FROM ({market}) s
                JOIN mkeys m ON s.run = m.run AND s.venue IS NOT DISTINCT FROM m.venue
                            AND s.symbol IS NOT DISTINCT FROM m.symbol""",
            "market",
        )
        # The order stream is the largest table: count its events, keep only the rejections.
        self.create(
            "order_events",
            f"SELECT run, event, count(*) AS n FROM ({self.scan('orders', ('event',))}) GROUP BY ALL",
            "orders",
        )
        self.create("rejects", self.scan("orders", REJECT_COLUMNS, where="event = 'rejected'"), "orders")
        self.create("risk_fail", self.scan("risk", RISK_COLUMNS, where="NOT passed"), "risk")
        self.create("incidents", self.scan("incidents", INCIDENT_COLUMNS, strategy_col=False), "incidents")

    def _key_exprs(self) -> tuple[str, str, str]:
        """SQL for ``k`` and ``mkey`` of a scanned row ``s`` (and the JOIN clause they need, if any).

        With few keys a CASE over literals does it: unlike a hash join it keeps the rows in file
        order, which is usually the order the reports need, saving a sort.
        """
        keys = self.dicts("SELECT k, mkey, run, strategy_id, venue, symbol FROM keys ORDER BY k")
        if len(keys) > MAX_CASE_KEYS:
            join = """JOIN keys kj ON s.run = kj.run AND s.strategy_id IS NOT DISTINCT FROM kj.strategy_id
                      AND s.venue IS NOT DISTINCT FROM kj.venue AND s.symbol IS NOT DISTINCT FROM kj.symbol"""
            return "kj.k", "kj.mkey", join

        def match(row: dict[str, Any], cols: Sequence[str]) -> str:
            parts = [f"s.run = {int(row['run'])}"]
            for c in cols:
                v = row[c]
                parts.append(f"s.{c} IS NULL" if v is None else f"s.{c} = '{str(v).replace(chr(39), chr(39) * 2)}'")
            return " AND ".join(parts)

        if not keys:
            return "CAST(NULL AS INTEGER)", "CAST(NULL AS INTEGER)", ""
        k_of = " ".join(f"WHEN {match(r, ('strategy_id', 'venue', 'symbol'))} THEN {r['k']}" for r in keys)
        mk_of = " ".join(f"WHEN {match(r, ('venue', 'symbol'))} THEN {r['mkey']}" for r in keys)
        return f"CAST(CASE {k_of} END AS INTEGER)", f"CAST(CASE {mk_of} END AS INTEGER)", ""

    def ensure_order(self, table: str, cols: Sequence[str]) -> None:
        """Make ``table``'s storage order ``cols`` (ascending); sorts only when it is not already.

        Logs are written in seq order, so a one-key run usually needs no sort. The check is one
        streaming pass; the streaming window functions of the reports rely on this order.
        """
        prev = [f"lag({c}) OVER () AS p_{c}" for c in cols]
        out_of_order = []
        for i, c in enumerate(cols):
            same = " AND ".join(f"{d} = p_{d}" for d in cols[:i])
            out_of_order.append(f"({same + ' AND ' if same else ''}{c} < p_{c})")
        bad = self.one(
            f"SELECT count(*) FROM (SELECT *, {', '.join(prev)} FROM {table}) WHERE {' OR '.join(out_of_order)}"
        )[0]
        if bad:
            self.con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table} ORDER BY {', '.join(cols)}")

    def _check_strategy(self, strategy: str) -> None:
        for run in self.runs:
            named = run.strategies()
            if strategy in named:
                return
        present = set()
        for run in self.runs:
            present.update(run.strategies())
            files = _check_files(run, "orders", ("strategy_id",)) + _check_files(run, "fills", ("strategy_id",))
            if files:
                try:
                    rows = self.con.sql(
                        f"SELECT DISTINCT strategy_id FROM read_parquet({sql_list(files)}, union_by_name = true)"
                    ).fetchall()
                except duckdb.Error as exc:
                    raise RunLogError(str(run.path), f"cannot read the orders table ({_first_line(exc)})") from None
                present.update(r[0] for r in rows if r[0])
        if strategy not in present:
            where = self.runs[0].path if len(self.runs) == 1 else self.runs[0].path.parent
            listed = ", ".join(sorted(present)) or "none"
            raise RunLogError(str(where), f"strategy '{strategy}' is not in this log (strategies: {listed})")

    # --- helpers -----------------------------------------------------------------------------
    def query(self, sql: str, params: Any = None) -> list[tuple]:
        return self.con.execute(sql, self._params(sql, params)).fetchall()

    def one(self, sql: str, params: Any = None) -> tuple:
        row = self.con.execute(sql, self._params(sql, params)).fetchone()
        return row if row is not None else ()

    def dicts(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, self._params(sql, params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duck_type(t: Any) -> str:
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    return "VARCHAR"
