"""Memory management under pressure (guide §6.1, ``daemon.memory_management``).

Every ``check_interval_s``, off the hot path, the process's resident memory is compared with its
limit: ``memory_limit_mb`` when set, else the cgroup's ``memory.max`` (systemd's ``MemoryMax``)
when there is one, else the machine's RAM. At or above ``high_pressure_threshold`` of it, and
while ``enable_pressure_handling`` is on, each configured action runs, says so in ``system.log``
and is an incident row (``memory_pressure``):

- ``reduce_order_book_depth``: every book keeps its best ``reduced_book_depth`` levels a side;
  deeper levels are dropped (they come back with the next snapshot; the top of book, all a
  strategy reads, is untouched). Repeated at each check while the pressure lasts;
- ``archive_old_orders``: closed orders older than ``order_archive_after_hours`` go to the
  archive (``engine.daemon.archive``);
- ``sample_market_data``: at or above ``market_data_sample_above_pct``, one market row in
  ``market_data_sample_every`` is written to the event log (strategies still see every update).

When usage falls 5 points below the threshold, sampling stops and one line says the pressure is
over.

Each check also appends one line to ``<log_dir>/metrics_<YYYYMMDD>.log`` (the local date: the
guide reads yesterday's with ``cat metrics_$(date -d "yesterday" +%Y%m%d).log | grep memory``):
``2026-12-07 20:00:00 memory rss_mb=... limit_mb=... usage_pct=... orderbook_memory_mb=...
order_count=... pressure=0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.daemon.archive import archive_orders
from engine.daemon.heap import rss_bytes
from engine.logs import get_logger

if TYPE_CHECKING:
    from engine.book import Book
    from engine.daemon.config import MemorySettings
    from engine.engine import Engine

_log = get_logger("system")
HYSTERESIS = 0.05


def memory_limit_bytes(configured_mb: float = 0.0) -> tuple[int, str]:
    """The limit usage is measured against, and where it came from."""
    if configured_mb > 0:
        return int(configured_mb * 1024 * 1024), "memory_limit_mb"
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            text = Path(path).read_text().strip()
            if text != "max" and int(text) < 1 << 60:
                return int(text), "cgroup"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "ram"
    return 0, "unknown"


def trim_book(book: Book, depth: int) -> int:
    """Drop every level beyond the best ``depth`` of each side; returns how many."""
    dropped = 0
    bids, asks = book.depth
    for side, n in ((1, bids), (-1, asks)):
        if n > depth:
            for price, _size in book.levels(side, n)[depth:]:
                book.apply_level(side, price, 0)
                dropped += 1
    return dropped


class MemoryWatch:
    def __init__(
        self,
        settings: MemorySettings,
        engine: Engine,
        archive_dir: Path,
        rss: Callable[[], int] = rss_bytes,
        log_dir: Path | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.settings = settings
        self.engine = engine
        self.archive_dir = archive_dir
        self.rss = rss
        self.pressure = False
        self.usage = 0.0
        self.limit, self.limit_source = memory_limit_bytes(settings.memory_limit_mb)
        self.actions_taken = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def update(self, settings: MemorySettings) -> None:
        """New settings (SIGHUP reload)."""
        self.settings = settings
        self.limit, self.limit_source = memory_limit_bytes(settings.memory_limit_mb)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.check_interval_s)
            try:
                self.check()
            except Exception as exc:  # the check must never end: log and try again next time
                _log.error("memory check failed: %r", exc)

    def samples(self) -> list[dict[str, Any]]:
        """Gauges for the metrics snapshot."""
        return [
            {
                "name": "hft_memory_usage_ratio",
                "type": "gauge",
                "help": f"Resident memory / limit ({self.limit_source})",
                "labels": {},
                "value": round(self.usage, 4),
            },
            {
                "name": "hft_memory_pressure",
                "type": "gauge",
                "help": "1 while memory pressure handling is acting",
                "labels": {},
                "value": int(self.pressure),
            },
        ]

    def check(self) -> list[str]:
        """One check; returns the actions taken (for tests and the log). The daily metrics line
        says what the check left: its usage, and the pressure state after its decision."""
        rss = self.rss()
        self.usage = rss / self.limit if self.limit else 0.0
        try:
            return self._decide()
        finally:
            self._metrics_line(rss)

    def _decide(self) -> list[str]:
        s = self.settings
        if not s.enable_pressure_handling or not self.limit:
            return []
        pct = self.usage * 100
        what = f"memory usage {pct:.0f}% of {self.limit / 1048576:.0f} MB ({self.limit_source})"
        if self.usage < s.high_pressure_threshold:
            if self.pressure and self.usage < s.high_pressure_threshold - HYSTERESIS:
                self.pressure = False
                self.engine.market_sample_every = 0
                _log.info("Memory pressure over: %s; market data recorded in full again", what)
            return []
        if not self.pressure:
            self.pressure = True
            _log.warning("High memory pressure: %s; threshold %.0f%%", what, s.high_pressure_threshold * 100)
        taken: list[str] = []
        engine = self.engine
        now = time.time_ns()
        if "reduce_order_book_depth" in s.actions:
            dropped = sum(trim_book(b, s.reduced_book_depth) for b in engine.books.values())
            if dropped:
                detail = f"Reducing order book depth to {s.reduced_book_depth} levels: {dropped} levels dropped"
                taken.append(self._act(now, detail, what))
        if "archive_old_orders" in s.actions:
            hours = s.order_archive_after_hours
            n, path = archive_orders(engine.oms, int(hours * 3600e9), now, self.archive_dir)
            if n:
                where = path or "the database (orders table)"
                line = f"Archiving old orders: {n} orders older than {hours:g} h to {where}"
                taken.append(self._act(now, line, what))
        every = s.market_data_sample_every
        sample = "sample_market_data" in s.actions and pct >= s.market_data_sample_above_pct
        if sample and engine.market_sample_every != every:
            engine.market_sample_every = every
            taken.append(self._act(now, f"Sampling market data: 1 in {every} updates recorded", what))
        return taken

    def _metrics_line(self, rss: int) -> None:
        if self.log_dir is None:
            return
        engine = self.engine
        seen: set[int] = set()
        book_bytes = 0
        for book in engine.books.values():
            if id(book.books) not in seen:
                seen.add(id(book.books))
                book_bytes += sum(a.nbytes for a in book.books.arrays())
        line = (
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} memory rss_mb={rss / 1048576:.1f} "
            f"limit_mb={self.limit / 1048576:.0f} usage_pct={self.usage * 100:.1f} "
            f"orderbook_memory_mb={book_bytes / 1e6:.3f} order_count={len(engine.oms.orders)} "
            f"pressure={int(self.pressure)}\n"
        )
        try:
            with (self.log_dir / f"metrics_{time.strftime('%Y%m%d')}.log").open("a") as f:
                f.write(line)
        except OSError as exc:
            _log.error("metrics log not written: %s", exc)

    def _act(self, now: int, detail: str, what: str) -> str:
        self.actions_taken += 1
        _log.warning("%s (%s)", detail, what)
        self.engine.incident(now, "", "", "memory_pressure", detail, round(self.usage, 4))
        return detail
