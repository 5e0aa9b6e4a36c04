"""The ``patterns`` section of a pipeline spec: CEP sequences per key, on event time.

Semantics (Flink CEP where it defines them, and where we differ) are in :mod:`pipelines.patterns`.

>>> p = PatternSpec.model_validate({
...     "name": "brute-force", "within_ms": 60000,
...     "steps": [{"name": "fails", "event_types": ["login.failed"], "times": {"min": 3},
...                "where": [{"field": "ip_risk", "op": ">", "value": 0.5}]}]})
>>> p.contiguity, p.skip, p.steps[0].times.max is None
('relaxed', 'no_skip', True)
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from pipelines.spec_base import IDENTIFIER, NAME_PATTERN, SpecModel

__all__ = [
    "CompareOp",
    "ConditionSpec",
    "Contiguity",
    "PatternSpec",
    "PatternStepSpec",
    "SkipStrategy",
    "TimesSpec",
    "check_patterns",
]

CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
Contiguity = Literal["strict", "relaxed"]
SkipStrategy = Literal["no_skip", "past_last_event"]


class ConditionSpec(SpecModel):
    """``<payload field> <op> <value>``; a missing (null) field never satisfies it."""

    field: str
    op: CompareOp
    value: bool | int | float | str


class TimesSpec(SpecModel):
    """How many events the step takes: ``min`` to ``max`` (no ``max``: no upper bound)."""

    min: int = Field(default=1, ge=1)
    max: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _max_not_below_min(self) -> Self:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"times.max ({self.max}) must be >= times.min ({self.min})")
        return self


class PatternStepSpec(SpecModel):
    """One step: events of ``event_types`` satisfying every ``where`` condition."""

    name: str
    event_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    where: list[ConditionSpec] = Field(default_factory=list)
    times: TimesSpec = Field(default_factory=lambda: TimesSpec(min=1, max=1))
    absent: bool = False

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, name: str) -> str:
        if not IDENTIFIER.match(name):
            raise ValueError(f"step name {name!r} must be an identifier (letters, digits, _)")
        return name

    @model_validator(mode="after")
    def _absent_takes_no_times(self) -> Self:
        if self.absent and self.times != TimesSpec(min=1, max=1):
            raise ValueError(f"step {self.name!r}: an absent step takes no times")
        return self


class PatternSpec(SpecModel):
    """A named sequence of steps; every match spans less than ``within_ms`` of event time."""

    name: str = Field(pattern=NAME_PATTERN)
    within_ms: int = Field(gt=0)
    contiguity: Contiguity = "relaxed"
    skip: SkipStrategy = "no_skip"
    steps: list[PatternStepSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _steps_form_a_sequence(self) -> Self:
        names = [s.name for s in self.steps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"pattern {self.name!r}: duplicate step names {dupes}")
        for i, step in enumerate(self.steps[:-1]):
            if step.absent:
                raise ValueError(
                    f"pattern {self.name!r}: step {i} ({step.name!r}) is absent, but only the "
                    "last step may be absent (absence fires at the within_ms deadline)"
                )
        if self.steps[0].absent:
            raise ValueError(
                f"pattern {self.name!r}: an absent step needs a step before it that starts "
                "the match"
            )
        return self

    @property
    def absence(self) -> bool:
        """Whether matches are absences (the last step is absent): they fire at the deadline."""
        return self.steps[-1].absent


_NUMERIC = ("int", "float")


def check_patterns(patterns: list[PatternSpec], fields: dict[str, str]) -> list[PatternSpec]:
    """Names unique across patterns and every ``where`` fits a declared field's type."""
    names = [p.name for p in patterns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate pattern names {dupes}")
    for p in patterns:
        for step in p.steps:
            for cond in step.where:
                where = f"pattern {p.name!r} step {step.name!r}: where on {cond.field!r}"
                declared = fields.get(cond.field)
                if declared is None:
                    raise ValueError(
                        f"{where}: the field is not declared in fields "
                        f"(add e.g. fields: {{{cond.field}: float}})"
                    )
                value = cond.value
                if declared in _NUMERIC:
                    ok = isinstance(value, int | float) and not isinstance(value, bool)
                elif declared == "bool":
                    ok = isinstance(value, bool) and cond.op in ("==", "!=")
                else:
                    ok = isinstance(value, str)
                if not ok:
                    raise ValueError(
                        f"{where}: {cond.op} {value!r} does not fit a {declared} field"
                        + (" (bool fields take == or != true/false)" if declared == "bool" else "")
                    )
    return patterns
