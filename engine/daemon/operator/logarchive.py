"""``archive_logs.sh --days=N`` (guide §6.2): compress the rotated component logs
(``<name>.log.<n>``) and the daily ``metrics_YYYYMMDD.log`` files older than N days into one
``.tar.gz`` in the archive directory, then remove them. The live logs (``*.log``) are never
touched. ``metrics_YYYYMMDD.log`` is included because the guide's cleanup ``find -name "*.log.*"``
never matches it (operator-surface §6.2 note)."""

from __future__ import annotations

import datetime as dt
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

_ROTATED = re.compile(r"^[A-Za-z0-9_.-]+\.log\.[A-Za-z0-9_.-]+$")
_DAILY = re.compile(r"^metrics_(\d{8})\.log$")


@dataclass
class ArchiveResult:
    archive: Path | None
    files: list[Path]
    bytes_in: int
    bytes_out: int


def candidates(log_dir: Path, days: float, now: float | None = None) -> list[Path]:
    """Rotated logs whose modification time is over ``days`` old, and daily metrics logs whose
    date (from the name; the file's time if that is not a date) is over ``days`` old."""
    now = time.time() if now is None else now
    cutoff = now - days * 86400
    out = []
    for p in sorted(log_dir.iterdir()):
        if not p.is_file() or p.name.endswith((".tar.gz", ".tmp")):
            continue
        m = _DAILY.match(p.name)
        if m:
            try:
                day_end = dt.datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
                stamp = day_end.timestamp()
            except ValueError:
                stamp = p.stat().st_mtime
            if stamp < cutoff:
                out.append(p)
        elif _ROTATED.match(p.name) and p.stat().st_mtime < cutoff:
            out.append(p)
    return out


def archive(log_dir: Path, days: float, archive_dir: Path | None = None, dry_run: bool = False) -> ArchiveResult:
    """Archive then delete; a file is removed only after the archive was written and re-read."""
    if not log_dir.is_dir():
        raise FileNotFoundError(f"--log-dir: {log_dir} is not a directory")
    files = candidates(log_dir, days)
    size_in = sum(p.stat().st_size for p in files)
    if not files or dry_run:
        return ArchiveResult(None, files, size_in, 0)
    archive_dir = archive_dir or log_dir / "archive"
    archive_dir.mkdir(parents=True, exist_ok=True)
    target = archive_dir / f"hft_logs_{time.strftime('%Y%m%dT%H%M%S')}.tar.gz"
    n = 1
    while target.exists():
        target = archive_dir / f"hft_logs_{time.strftime('%Y%m%dT%H%M%S')}_{n}.tar.gz"
        n += 1
    tmp = target.with_name(target.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for p in files:
            tar.add(p, arcname=p.name)
    with tarfile.open(tmp, "r:gz") as tar:  # the archive must read back whole before anything is deleted
        names = set(tar.getnames())
    if names != {p.name for p in files}:
        tmp.unlink()
        raise OSError(f"{target}: the archive did not read back whole; nothing deleted")
    tmp.rename(target)
    for p in files:
        p.unlink()
    return ArchiveResult(target, files, size_in, target.stat().st_size)
