"""Window definitions: small, frozen, picklable configs, separate from the runtime operators.

A definition is what a job ships to every partition owner (Ray pickles it); the operator built
from it holds the state. Build one from a spec, or directly in tests:

>>> from pipelines.windows.definitions import Aggregation, TumblingWindow, WindowDefinition
>>> d = WindowDefinition(TumblingWindow(size_ms=1000), (Aggregation("n", "count"),))
>>> d.retention_ms, d.window.size_ms
(0, 1000)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pipelines.spec import (
    AggregationOp,
    EmitMode,
    FieldType,
    HoppingWindowSpec,
    LatePolicy,
    PipelineSpec,
    SessionWindowSpec,
)

__all__ = [
    "Aggregation",
    "HoppingWindow",
    "SessionWindow",
    "TumblingWindow",
    "WindowDefinition",
    "WindowKind",
]

_OPS = frozenset(
    {"count", "sum", "min", "max", "mean", "count_distinct", "first", "last", "percentile"}
)


@dataclass(frozen=True, slots=True)
class TumblingWindow:
    """Windows ``[k*size_ms, (k+1)*size_ms)``; each event is in exactly one."""

    size_ms: int

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ValueError("size_ms must be > 0")


@dataclass(frozen=True, slots=True)
class HoppingWindow:
    """Windows ``[k*slide_ms, k*slide_ms + size_ms)``; an event is in about size/slide of them."""

    size_ms: int
    slide_ms: int

    def __post_init__(self) -> None:
        if not 0 < self.slide_ms <= self.size_ms:
            raise ValueError("need 0 < slide_ms <= size_ms")


@dataclass(frozen=True, slots=True)
class SessionWindow:
    """Per-key sessions ``[first, last + gap_ms)``; events closer than gap_ms share one."""

    gap_ms: int

    def __post_init__(self) -> None:
        if self.gap_ms <= 0:
            raise ValueError("gap_ms must be > 0")


WindowKind = TumblingWindow | HoppingWindow | SessionWindow


@dataclass(frozen=True, slots=True)
class Aggregation:
    """Output column ``name`` = ``op`` over payload ``field`` (None for count)."""

    name: str
    op: AggregationOp
    field: str | None = None
    q: float | None = None

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown aggregation op {self.op!r}")
        if (self.op == "count") != (self.field is None):
            raise ValueError(f"{self.name}: count takes no field, every other op needs one")
        if (self.op == "percentile") != (self.q is not None):
            raise ValueError(f"{self.name}: q is required for percentile and only for it")
        if self.q is not None and not 0.0 <= self.q <= 1.0:
            raise ValueError(f"{self.name}: q must be within [0, 1]")


@dataclass(frozen=True, slots=True)
class WindowDefinition:
    """Everything an operator needs; equal definitions produce compatible snapshots.

    ``retain_closed_ms`` only matters with ``late_policy="update"``: a closed window's state is
    kept until ``window_end_ms + retain_closed_ms <= watermark`` so late events can update it.
    """

    window: WindowKind
    aggregations: tuple[Aggregation, ...]
    key_type: FieldType = "str"
    field_types: tuple[tuple[str, FieldType], ...] = field(default=())
    allowed_lateness_ms: int = 0
    late_policy: LatePolicy = "drop"
    emit: EmitMode = "on_close"
    retain_closed_ms: int = 0

    def __post_init__(self) -> None:
        if not self.aggregations:
            raise ValueError("at least one aggregation is required")
        if self.allowed_lateness_ms < 0 or self.retain_closed_ms < 0:
            raise ValueError("allowed_lateness_ms and retain_closed_ms must be >= 0")
        names = [a.name for a in self.aggregations]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate aggregation names in {names}")
        types = dict(self.field_types)
        for agg in self.aggregations:
            if agg.field is not None and agg.field not in types:
                raise ValueError(f"{agg.name}: field {agg.field!r} has no declared type")
            if agg.op in ("sum", "mean", "percentile") and types.get(agg.field or "") not in (
                "int",
                "float",
            ):
                raise ValueError(f"{agg.name}: {agg.op} needs an int or float field")

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> WindowDefinition:
        """The definition a validated :class:`~pipelines.spec.PipelineSpec` describes."""
        w = spec.window
        if w is None or spec.aggregations is None:
            raise ValueError("only an aggregations pipeline has a window definition")
        window: WindowKind
        if isinstance(w, SessionWindowSpec):
            window = SessionWindow(gap_ms=w.gap_ms)
        elif isinstance(w, HoppingWindowSpec):
            window = HoppingWindow(size_ms=w.size_ms, slide_ms=w.slide_ms)
        else:
            window = TumblingWindow(size_ms=w.size_ms)
        return cls(
            window=window,
            aggregations=tuple(
                Aggregation(name=a.name, op=a.op, field=a.field, q=a.q) for a in spec.aggregations
            ),
            key_type=spec.key_type,
            field_types=tuple(sorted(spec.fields.items())),
            allowed_lateness_ms=spec.allowed_lateness_ms,
            late_policy=spec.late_policy,
            emit=spec.emit,
            retain_closed_ms=spec.closed_retention_ms,
        )

    @property
    def retention_ms(self) -> int:
        """How long closed windows stay updatable (0 unless late_policy is "update")."""
        return self.retain_closed_ms if self.late_policy == "update" else 0

    @property
    def used_fields(self) -> dict[str, FieldType]:
        """Payload fields the aggregations read, with their declared types."""
        types = dict(self.field_types)
        return {a.field: types[a.field] for a in self.aggregations if a.field is not None}

    def fingerprint(self) -> str:
        """A stable digest stored in snapshots, so state is never resumed under another config."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]
