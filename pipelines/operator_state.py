"""What every stateful operator (windows, joins, patterns) shares: a watermark, event counters,
``build(definition, resume_state)`` and the snapshot format.

A snapshot is self-contained bytes (safe to keep in Redis, a Kafka changelog or a Ray object):

    b"ESBWIN1\\n" | u32 header size | JSON header | (u16 name size | name | u64 size | IPC)*

The JSON header holds scalars (format, kind, definition fingerprint, watermark, counters, and
what an operator adds); each frame is written as Arrow IPC (zstd), so floats and lists
round-trip bit for bit. No pickle: a snapshot never runs code when loaded.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import polars as pl

from pipelines.errors import SnapshotError

__all__ = [
    "WATERMARK_MAX",
    "WATERMARK_MIN",
    "Counters",
    "StatefulOperator",
    "pack_snapshot",
    "unpack_snapshot",
]

_MAGIC = b"ESBWIN1\n"
_FORMAT = 1
# Watermark sentinels: before any event nothing is closed; after flush() everything is.
WATERMARK_MIN = -(2**63)
WATERMARK_MAX = 2**63 - 1


@dataclass
class Counters:
    """Base of an operator's event counters (subclasses declare the int fields)."""

    def add(self, other: Self) -> None:
        """Accumulate another call's counters into these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Definition(Protocol):
    def fingerprint(self) -> str: ...


D = TypeVar("D", bound=_Definition)
C = TypeVar("C", bound=Counters)


class StatefulOperator(Generic[D, C]):
    """The watermark, counters, build/restore and snapshot header one operator kind needs.

    A subclass names its snapshot ``kind``, its ``counters_type``, how error messages call it
    (``describes``, ``definition_name``), and packs/reads its frames with :meth:`_pack` and
    :meth:`_restore` (which checks format, kind and definition before anything is used).
    """

    kind: ClassVar[str]
    describes: ClassVar[str]  # "snapshot is not a format-1 <describes> snapshot"
    definition_name: ClassVar[str]  # "snapshot was taken with a different <...> definition"
    counters_type: type[C]

    def __init__(self, definition: D) -> None:
        self.definition = definition
        self.counters = self.counters_type()
        self._watermark: int | None = None

    @classmethod
    def build(cls, definition: D, resume_state: bytes | None = None) -> Self:
        """A fresh operator for ``definition``, or one resumed from a :meth:`snapshot`."""
        op = cls._class_for(definition)(definition)
        if resume_state is not None:
            op._restore(resume_state)
        return op

    @classmethod
    def _class_for(cls, definition: D) -> type[Self]:
        return cls

    @property
    def watermark_ms(self) -> int | None:
        """Event time minus allowed lateness (None before any event, int64 max after flush)."""
        return self._watermark

    def _pack(self, frames: dict[str, pl.DataFrame], **extra: Any) -> bytes:
        header: dict[str, Any] = {
            "format": _FORMAT,
            "kind": self.kind,
            "definition": self.definition.fingerprint(),
            "watermark_ms": self._watermark,
            "counters": self.counters.as_dict(),
            **extra,
        }
        return pack_snapshot(header, frames)

    def _restore(self, resume_state: bytes) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
        """Checks a snapshot, restores watermark and counters; answers header and frames."""
        header, frames = unpack_snapshot(resume_state)
        if header.get("format") != _FORMAT or header.get("kind") != self.kind:
            raise SnapshotError(f"snapshot is not a format-{_FORMAT} {self.describes} snapshot")
        if header.get("definition") != self.definition.fingerprint():
            raise SnapshotError(
                f"snapshot was taken with a different {self.definition_name} definition"
            )
        self._watermark = header["watermark_ms"]
        self.counters = self.counters_type(**header["counters"])
        return header, frames


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
