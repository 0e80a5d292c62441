"""The run config's ``database`` section: where the store lives and how it is fed.

A config without the section gets the embedded DuckDB store (``<runs_root>/hft.duckdb``), so a
backtest, paper session or one-box live setup needs no server; ``"backend": "postgresql"``
selects PostgreSQL/TimescaleDB, ``"none"`` turns the store off. The password never sits in the
file (a ``password`` key is refused): it comes from the variable ``password_env`` names, or from
``~/.pgpass`` / ``PGPASSWORD`` which asyncpg reads itself. ``HFT_DB_HOST``, ``HFT_DB_PORT``,
``HFT_DB_NAME`` and ``HFT_DB_USER`` win over the file, so an operator (or a test) can point a
shipped config at another server without editing it.

``writer`` says where the database work runs: ``"process"`` (a child process at a lower CPU
priority, ``engine.store.writer_process``) or ``"thread"`` (a thread of the trading process,
``engine.store.service``). Without the key PostgreSQL gets the process (the trading loop keeps
its latency: docs/persistence.md "Measured") and DuckDB the thread (an embedded file, the
default of backtests and one-box setups, where a second interpreter buys nothing measurable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from engine.config import Section, load_json, resolve_path
from engine.errors import ConfigError

BACKENDS = ("postgresql", "duckdb", "none")
WRITERS = ("process", "thread")
DEFAULT_CONFIG = "config/production.json"
_KEYS = {
    "backend", "host", "port", "name", "user", "password_env", "connection_pool_size", "min_pool_size",
    "connect_timeout_s", "query_timeout_s", "duckdb_path", "journal_dir", "journal_retention_days",
    "queue_rows", "batch_rows", "flush_interval_ms", "retention_days", "partition_ahead_days", "market_data",
    "writer",
}  # fmt: skip
_ENV = {"host": "HFT_DB_HOST", "port": "HFT_DB_PORT", "name": "HFT_DB_NAME", "user": "HFT_DB_USER"}


@dataclass(frozen=True)
class MarketDataSettings:
    ticks: bool = True  #: copy every event-log ``market`` row into market_data_ticks
    snapshot_interval_s: float = 1.0  #: 0 turns order-book snapshots off
    snapshot_depth: int = 20


@dataclass(frozen=True)
class StoreSettings:
    backend: str = "duckdb"
    host: str = "localhost"
    port: int = 5432
    name: str = "hft_db"
    user: str = "hft_user"
    password_env: str = "HFT_DB_PASSWORD"
    connection_pool_size: int = 50
    min_pool_size: int = 2
    connect_timeout_s: float = 5.0
    query_timeout_s: float = 5.0
    duckdb_path: Path = Path("runs/hft.duckdb")
    journal_dir: Path = Path("runs/journal")
    journal_retention_days: int = 7
    queue_rows: int = 100_000
    batch_rows: int = 5000
    flush_interval_ms: int = 200
    retention_days: int = 90
    partition_ahead_days: int = 3
    market_data: MarketDataSettings = field(default_factory=MarketDataSettings)
    writer: str = ""  #: "process", "thread", or "" for the backend's default (``writer_kind``)
    source: str = ""  #: the config file these came from ("" when built in code)

    @property
    def enabled(self) -> bool:
        return self.backend != "none"

    @property
    def writer_kind(self) -> str:
        """Where the database work runs: ``writer`` when set, else the backend's default."""
        if self.writer:
            return self.writer
        return "process" if self.backend == "postgresql" else "thread"

    def password(self) -> str | None:
        """The password from ``password_env``; None lets asyncpg use PGPASSWORD or ~/.pgpass."""
        return os.environ.get(self.password_env) or None

    def dsn(self) -> str:
        """A libpq URI without the password (asyncpg, psql); a host starting with ``/`` is a socket dir."""
        user = quote(self.user, safe="")
        if self.host.startswith("/"):
            return f"postgresql://{user}@/{quote(self.name, safe='')}?host={quote(self.host)}&port={self.port}"
        return f"postgresql://{user}@{self.host}:{self.port}/{quote(self.name, safe='')}"

    @property
    def where(self) -> str:
        """What an error names: ``host:port/db`` or the DuckDB file."""
        if self.backend == "duckdb":
            return str(self.duckdb_path)
        return f"{self.host}:{self.port}/{self.name}"


def parse_store(section: Section | None, runs_root: Path) -> StoreSettings:
    """The ``database`` section (None: absent, the DuckDB default) with paths under ``runs_root``."""
    runs_root = Path(runs_root)
    if section is None:
        return _env(StoreSettings(duckdb_path=runs_root / "hft.duckdb", journal_dir=runs_root / "journal"))
    s = section
    if "password" in s.data:
        raise s.fail(
            "password",
            "passwords must not be stored in config files; set the variable password_env names "
            "(HFT_DB_PASSWORD by default) or use ~/.pgpass",
        )
    s.known(_KEYS)
    backend = s.str("backend", "duckdb")
    if backend not in BACKENDS:
        raise s.fail("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    writer = s.str("writer") if s.has("writer") else ""
    if writer and writer not in WRITERS:
        raise s.fail("writer", f"must be one of {', '.join(WRITERS)}, got {writer!r}")
    md = s.section("market_data")
    md.known({"ticks", "snapshot_interval_s", "snapshot_depth"})
    pool = s.int("connection_pool_size", 50, minimum=1)
    min_pool = s.int("min_pool_size", min(2, pool), minimum=0)
    if min_pool > pool:
        raise s.fail("min_pool_size", f"must be <= connection_pool_size ({pool}), got {min_pool}")

    def under_root(key: str, default: str) -> Path:
        p = Path(s.str(key, default)).expanduser()
        return p if p.is_absolute() else runs_root / p

    settings = StoreSettings(
        backend=backend,
        host=s.str("host", "localhost"),
        port=s.int("port", 5432, minimum=1),
        name=s.str("name", "hft_db"),
        user=s.str("user", "hft_user"),
        password_env=s.str("password_env", "HFT_DB_PASSWORD"),
        connection_pool_size=pool,
        min_pool_size=min_pool,
        connect_timeout_s=s.number("connect_timeout_s", 5.0, positive=True),
        query_timeout_s=s.number("query_timeout_s", 5.0, positive=True),
        duckdb_path=under_root("duckdb_path", "hft.duckdb"),
        journal_dir=under_root("journal_dir", "journal"),
        journal_retention_days=s.int("journal_retention_days", 7, minimum=1),
        queue_rows=s.int("queue_rows", 100_000, minimum=1),
        batch_rows=s.int("batch_rows", 5000, minimum=1),
        flush_interval_ms=s.int("flush_interval_ms", 200, minimum=1),
        retention_days=s.int("retention_days", 90, minimum=1),
        partition_ahead_days=s.int("partition_ahead_days", 3, minimum=0),
        market_data=MarketDataSettings(
            ticks=md.bool("ticks", True),
            snapshot_interval_s=md.number("snapshot_interval_s", 1.0, minimum=0),
            snapshot_depth=md.int("snapshot_depth", 20, minimum=1),
        ),
        writer=writer,
        source=s.path,
    )
    return _env(settings)


def _env(settings: StoreSettings) -> StoreSettings:
    from dataclasses import replace

    changes: dict[str, object] = {}
    for key, var in _ENV.items():
        value = os.environ.get(var)
        if not value:
            continue
        if key == "port":
            try:
                changes[key] = int(value)
            except ValueError:
                raise ConfigError(f"${var}", f"must be a port number, got {value!r}") from None
        else:
            changes[key] = value
    return replace(settings, **changes) if changes else settings


def load_store_settings(config_path: str | Path = DEFAULT_CONFIG) -> StoreSettings:
    """The store settings of a run config file (its ``database`` and ``output.runs_root``)."""
    path = resolve_path(config_path)
    data = load_json(path)
    root = Section(data, str(config_path))
    base = path.resolve().parent
    out = root.section("output")
    runs_root = resolve_path(out.str("runs_root", "runs"), base) if isinstance(out.data, dict) else base / "runs"
    section = root.section("database") if root.has("database") else None
    settings = parse_store(section, runs_root)
    from dataclasses import replace

    return replace(settings, source=str(config_path))
