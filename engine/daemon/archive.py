"""Archiving old orders (``POST /api/v1/orders/archive``, and the memory check's
``archive_old_orders``): closed orders whose last change is older than a cutoff are written,
one JSON document per line, to ``<archive_dir>/orders_<UTC stamp>_<pid>.jsonl`` and dropped from
the order manager's memory. Open orders are never archived. The event log keeps every order's
whole life either way; the database of issue 15 will take these files' place."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from engine.daemon.views import order_doc

if TYPE_CHECKING:
    from engine.oms import OrderManager


def archive_orders(oms: OrderManager, older_than_ns: int, now_ns: int, archive_dir: Path) -> tuple[int, Path | None]:
    """Archive the closed orders last changed before ``now_ns - older_than_ns``; returns how many
    and the file (None when there were none)."""
    cutoff = now_ns - older_than_ns
    old = [o for o in oms.orders.values() if o.status.is_terminal and (o.ts_last or o.ts_decided) <= cutoff]
    if not old:
        return 0, None
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
