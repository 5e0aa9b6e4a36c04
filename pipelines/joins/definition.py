"""A join's definition: small, frozen and picklable, shipped to every partition owner."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pipelines.join_spec import JoinHow
from pipelines.spec import FieldType, LatePolicy, PipelineSpec

__all__ = ["JoinDefinition"]


@dataclass(frozen=True, slots=True)
class JoinDefinition:
    """``inputs`` is 2 when the right side reads another stream: event time is then the minimum
    of the two inputs' (so a lagging input never sees its partners' intervals closed early)."""

    before_ms: int = 0
    after_ms: int = 0
    how: JoinHow = "inner"
    key_type: FieldType = "str"
    field_types: tuple[tuple[str, FieldType], ...] = field(default=())
    allowed_lateness_ms: int = 0
    late_policy: LatePolicy = "drop"
    inputs: int = 1

    def __post_init__(self) -> None:
        if self.before_ms < 0 or self.after_ms < 0 or self.allowed_lateness_ms < 0:
            raise ValueError("before_ms, after_ms and allowed_lateness_ms must be >= 0")
        if self.inputs not in (1, 2):
            raise ValueError("a join reads one stream or two")

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> JoinDefinition:
        join = spec.join
        if join is None:
            raise ValueError("only a join pipeline has a join definition")
        other = join.right.source_stream
        return cls(
            before_ms=join.before_ms,
            after_ms=join.after_ms,
            how=join.how,
            key_type=spec.key_type,
            field_types=tuple(sorted(spec.fields.items())),
            allowed_lateness_ms=spec.allowed_lateness_ms,
            late_policy=spec.late_policy,
            inputs=2 if other is not None and other != spec.source_stream else 1,
        )

    def fingerprint(self) -> str:
        """A stable digest stored in snapshots, so state is never resumed under another config."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]
