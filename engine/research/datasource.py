"""Where a sweep point's market data is: a local path, a ``file://`` URI, or any URI that
``pyarrow.fs.FileSystem.from_uri`` opens (``s3://``, ``gs://``, ``hdfs://``, ...).

The replay reader reads local files, so data on another filesystem is copied first, partition by
partition, into a cache on the machine that runs the point (``stage``): only the
``venue=/symbol=/date=`` partitions the point's venue, symbols and window need (and, for the
book's warm-up, every earlier date of those symbols), each file written under a temporary name
and renamed, so that tasks sharing a machine share the copy and a killed copy is never taken for
a whole one. A file already in the cache with the remote file's size is not copied again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from engine.config import resolve_path
from engine.research.grid import SweepError

NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True, slots=True)
class DataLocation:
    """``local``: a directory on this machine; else ``uri`` is read through ``filesystem``."""

    text: str
    local: Path | None
    uri: str | None = None


def locate(root: str, relative_to: Path | None = None) -> DataLocation:
    """A data root as the config or ``--data`` gives it; a URI no filesystem opens is a ``SweepError``."""
    if "://" not in root:
        return DataLocation(root, resolve_path(root, relative_to))
    try:
        fs, path = pafs.FileSystem.from_uri(root)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise SweepError(f"data root {root}: cannot open it as a pyarrow filesystem URI: {exc}") from None
    if isinstance(fs, pafs.LocalFileSystem):
        return DataLocation(root, Path(path))
    return DataLocation(root, None, root)


def cache_root() -> Path:
    """This machine's cache of staged market data (``HFT_SWEEP_CACHE``, else under the temp dir)."""
    return Path(os.environ.get("HFT_SWEEP_CACHE") or Path(tempfile.gettempdir()) / "hft-sweep-cache")


def stage(
    uri: str,
    venue: str | None,
    symbols: list[str] | None,
    end_ns: int | None,
    cache: Path | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> Path:
    """A local copy of the partitions a point reads from ``uri`` (see the module docstring); its
    root. ``filesystem`` and a path as ``uri`` skip ``from_uri`` (a filesystem built in code)."""
    if filesystem is not None:
        fs, base = filesystem, uri
    else:
        try:
            fs, base = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise SweepError(f"data root {uri}: cannot open it: {exc}") from None
    local = (cache or cache_root()) / hashlib.sha256(uri.encode()).hexdigest()[:16]
    base = base.rstrip("/")
    for rel in _wanted_files(fs, base, venue, symbols, end_ns):
        dest = local / rel
        info = fs.get_file_info(f"{base}/{rel}")
        if dest.is_file() and dest.stat().st_size == info.size:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".staging-")
        try:
            with os.fdopen(fd, "wb") as out, fs.open_input_stream(f"{base}/{rel}") as src:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return local


def _wanted_files(
    fs: pafs.FileSystem, base: str, venue: str | None, symbols: list[str] | None, end_ns: int | None
) -> list[str]:
    """Paths under ``base`` of the Parquet files of the wanted partitions (relative, sorted)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except (pa.ArrowException, OSError) as exc:
        raise SweepError(f"data root {base}: cannot list it: {exc}") from None
    wanted = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        rel = info.path[len(base) :].lstrip("/")
        parts = rel.split("/")
        if len(parts) != 4:
            continue
        v, s, d = (_value(p, k) for p, k in zip(parts[:3], ("venue", "symbol", "date"), strict=True))
        if v is None or s is None or d is None:
            continue
        if (venue is not None and v != venue) or (symbols and s not in symbols):
            continue
        if end_ns is not None and _day_ns(d) >= end_ns:
            continue
        wanted.append(rel)
    return sorted(wanted)


def _value(part: str, key: str) -> str | None:
    prefix = f"{key}="
    return part[len(prefix) :] if part.startswith(prefix) and len(part) > len(prefix) else None


def _day_ns(date: str) -> int:
    import numpy as np

    try:
        return int(np.datetime64(date, "ns").astype("int64"))
    except ValueError:
        return -1
