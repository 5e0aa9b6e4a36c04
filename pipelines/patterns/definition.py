"""A pattern pipeline's definition: what stays fixed for a job (the patterns may change live)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pipelines.pattern_spec import PatternSpec
from pipelines.spec import FieldType, LatePolicy, PipelineSpec

__all__ = ["PatternDefinition"]


@dataclass(frozen=True)
class PatternDefinition:
    patterns: tuple[PatternSpec, ...]
    key_type: FieldType = "str"
    field_types: tuple[tuple[str, FieldType], ...] = field(default=())
    allowed_lateness_ms: int = 0
    late_policy: LatePolicy = "drop"

    def __post_init__(self) -> None:
        if self.allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms must be >= 0")
        names = [p.name for p in self.patterns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate pattern names in {names}")
        types = dict(self.field_types)
        for p in self.patterns:
            for step in p.steps:
                for cond in step.where:
                    if cond.field not in types:
                        raise ValueError(f"{p.name}: where field {cond.field!r} has no type")

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> PatternDefinition:
        if spec.patterns is None:
            raise ValueError("only a patterns pipeline has a pattern definition")
        return cls(
            patterns=tuple(spec.patterns),
            key_type=spec.key_type,
            field_types=tuple(sorted(spec.fields.items())),
            allowed_lateness_ms=spec.allowed_lateness_ms,
            late_policy=spec.late_policy,
        )

    @property
    def used_fields(self) -> dict[str, FieldType]:
        types = dict(self.field_types)
        used = {c.field for p in self.patterns for s in p.steps for c in s.where}
        return {f: types[f] for f in sorted(used)}

    def fingerprint(self) -> str:
        """Digest of what a snapshot must agree on: everything but the (changeable) patterns."""
        fixed = (self.key_type, self.field_types, self.allowed_lateness_ms, self.late_policy)
        return hashlib.sha256(repr(fixed).encode()).hexdigest()[:16]
