"""Archiving old orders (``POST /api/v1/orders/archive``, and the memory check's
``archive_old_orders``): closed orders whose last change is older than a cutoff are written,
one JSON document per line, to ``<archive_dir>/orders_<UTC stamp>_<pid>.jsonl`` and dropped from
the order manager's memory. Open orders are never archived.

The order manager also lets closed orders go by itself once they are older than its retention
(the daemon sets it to ``memory_management.order_archive_after_hours``); ``EvictionArchive``
takes those (``OrderManager.on_evict``, on the order path: a list append) and writes them to
``<archive_dir>/orders_evicted_<UTC date>_<pid>.jsonl`` from a periodic task, so an order leaves
memory only into a file. The event log keeps every order's
whole life either way.

With a database (``engine.store``: the session's store service), every order event is already in
the ``orders`` table (the journal first, then the database), so an order leaves memory without a
file: ``EvictionArchive(store_backed=True)`` only counts them, and ``archive_orders`` on an order
manager marked ``mark_store_backed`` drops them and returns no path. The JSONL files are written
only when nothing is stored (``database.backend: none``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from engine.daemon.views import order_doc
from engine.logs import get_logger

if TYPE_CHECKING:
    from engine.oms import OrderManager
    from engine.orders import Order

_log = get_logger("orders")
#: order managers whose orders the database holds (the session has a store service)
_STORE_BACKED: weakref.WeakSet[OrderManager] = weakref.WeakSet()


def mark_store_backed(oms: OrderManager) -> None:
    """Every order of ``oms`` reaches the database: archiving drops orders without a file."""
    _STORE_BACKED.add(oms)


def archive_orders(oms: OrderManager, older_than_ns: int, now_ns: int, archive_dir: Path) -> tuple[int, Path | None]:
    """Archive the closed orders last changed before ``now_ns - older_than_ns``; returns how many
    and the file (None when there were none, or when the database holds them: ``mark_store_backed``)."""
    cutoff = now_ns - older_than_ns
    old = [o for o in oms.orders.values() if o.status.is_terminal and (o.ts_last or o.ts_decided) <= cutoff]
    if not old:
        return 0, None
    if oms in _STORE_BACKED:
        for o in old:
            oms.orders.pop(o.client_order_id, None)
        return len(old), None
    archive_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = archive_dir / f"orders_{stamp}_{os.getpid()}.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for o in old:
            f.write(json.dumps(order_doc(o, oms.instruments.get((o.venue, o.symbol)))) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(path)  # written whole before anything leaves memory
    for o in old:
        oms.orders.pop(o.client_order_id, None)
    return len(old), path


class EvictionArchive:
    """Closed orders the order manager evicted, appended to a daily JSONL file off the order path."""

    def __init__(self, oms: OrderManager, archive_dir: Path, store_backed: bool = False) -> None:
        self.oms = oms
        self.archive_dir = archive_dir
        #: the database holds every order: evicted ones are only counted, no file is written
        self.store_backed = store_backed
        self.pending: list[Order] = []
        self.written = 0

    def add(self, orders: list[Order]) -> None:
        self.pending.extend(orders)

    def flush(self) -> int:
        """Write what is pending (fsync'd); returns how many. On an error they stay pending."""
        if not self.pending:
            return 0
        batch, self.pending = self.pending, []
        if self.store_backed:
            self.written += len(batch)
            return len(batch)
        day = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
        path = self.archive_dir / f"orders_evicted_{day}_{os.getpid()}.jsonl"
        try:
            self.archive_dir.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                for o in batch:
                    f.write(json.dumps(order_doc(o, self.oms.instruments.get((o.venue, o.symbol)))) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self.pending[:0] = batch
            raise
        self.written += len(batch)
        return len(batch)

    async def run(self, interval_s: float = 5.0) -> None:
        """``flush`` every ``interval_s`` until cancelled, and once more then."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                self._flush_logged()
        finally:
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            n = self.flush()
        except OSError as exc:
            kept = len(self.pending)
            _log.error("Cannot write evicted orders to %s: %s (%d kept in memory)", self.archive_dir, exc, kept)
            return
        if n:
            where = "the database (orders table)" if self.store_backed else str(self.archive_dir)
            _log.info("archived %d evicted closed orders to %s", n, where)
