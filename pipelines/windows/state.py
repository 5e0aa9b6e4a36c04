"""Operator outputs, counters and the snapshot format.

A snapshot is self-contained bytes (safe to keep in Redis, a Kafka changelog or a Ray object):

    b"ESBWIN1\\n" | u32 header size | JSON header | (u16 name size | name | u64 size | IPC)*

The JSON header holds scalars (watermark, counters, definition fingerprint); each frame is written
as Arrow IPC (zstd), so floats and lists round-trip bit for bit. No pickle: a snapshot never runs
code when loaded.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import polars as pl

from pipelines.errors import SnapshotError

__all__ = ["SnapshotError", "WindowCounters", "WindowOutput", "pack_snapshot", "unpack_snapshot"]

_MAGIC = b"ESBWIN1\n"
# Watermark sentinels: before any event nothing is closed; after flush() everything is.
WATERMARK_MIN = -(2**63)
WATERMARK_MAX = 2**63 - 1


@dataclass
class WindowCounters:
    """Event accounting; every input event lands in exactly one bucket besides events_in.

    ``events_in = duplicates + late_dropped + late_dead_lettered + (events applied)``, where
    applied events include ``late_updated``.
    """

    events_in: int = 0
    duplicates: int = 0
    late_dropped: int = 0
    late_dead_lettered: int = 0
    late_updated: int = 0
    windows_emitted: int = 0

    def add(self, other: WindowCounters) -> None:
        """Accumulate another call's counters into these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class WindowOutput:
    """What one ``process()`` or ``flush()`` call produced.

    ``results``: key, window_start_ms, window_end_ms, <aggregations>, revision, closed.
    ``late``: dead-lettered input rows (late_policy "dead_letter"), with the input's columns.
    ``retracted``: key, window_start_ms, window_end_ms of previously emitted session windows that
    a merge replaced; sinks delete them before writing ``results``. Always empty for fixed windows.
    """

    results: pl.DataFrame
    late: pl.DataFrame
    retracted: pl.DataFrame
    counters: WindowCounters = field(default_factory=WindowCounters)


def pack_snapshot(header: dict[str, Any], frames: dict[str, pl.DataFrame]) -> bytes:
    """Serialise scalars and frames into one snapshot blob."""
    out = io.BytesIO()
    out.write(_MAGIC)
    head = json.dumps(header, sort_keys=True).encode()
    out.write(struct.pack(">I", len(head)))
    out.write(head)
    for name, frame in frames.items():
        blob = io.BytesIO()
        frame.write_ipc(blob, compression="zstd")
        raw_name = name.encode()
        out.write(struct.pack(">H", len(raw_name)))
        out.write(raw_name)
        out.write(struct.pack(">Q", blob.tell()))
        out.write(blob.getvalue())
    return out.getvalue()


def unpack_snapshot(data: bytes) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """Inverse of :func:`pack_snapshot`; raises :class:`SnapshotError` on malformed input."""
    view = memoryview(data)
    if bytes(view[: len(_MAGIC)]) != _MAGIC:
        raise SnapshotError("not a window operator snapshot (bad magic)")
    try:
        pos = len(_MAGIC)
        (head_len,) = struct.unpack_from(">I", view, pos)
        pos += 4
        header = json.loads(bytes(view[pos : pos + head_len]))
        pos += head_len
        frames: dict[str, pl.DataFrame] = {}
        while pos < len(view):
            (name_len,) = struct.unpack_from(">H", view, pos)
            pos += 2
            name = bytes(view[pos : pos + name_len]).decode()
            pos += name_len
            (size,) = struct.unpack_from(">Q", view, pos)
            pos += 8
            frames[name] = pl.read_ipc(io.BytesIO(bytes(view[pos : pos + size])))
            pos += size
    except (struct.error, ValueError, pl.exceptions.PolarsError) as exc:
        raise SnapshotError(f"corrupt window operator snapshot: {exc}") from exc
    return header, frames
