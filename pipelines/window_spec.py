"""The ``window`` and ``aggregations`` sections of a pipeline spec: which windows, and what is
computed per key and window. Semantics are in :mod:`pipelines.windows`.

>>> AggregationSpec.model_validate({"name": "orders", "op": "count"}).field is None
True
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from pipelines.spec_base import SpecModel, column_name

__all__ = [
    "AggregationOp",
    "AggregationSpec",
    "HoppingWindowSpec",
    "SessionWindowSpec",
    "TumblingWindowSpec",
    "WindowSpec",
    "check_aggregations",
]

AggregationOp = Literal[
    "count", "sum", "min", "max", "mean", "count_distinct", "first", "last", "percentile"
]
_NUMERIC: frozenset[str] = frozenset({"int", "float"})
_NEEDS_NUMERIC: frozenset[str] = frozenset({"sum", "mean", "percentile"})


class TumblingWindowSpec(SpecModel):
    """Fixed, non-overlapping windows ``[k*size_ms, (k+1)*size_ms)``."""

    type: Literal["tumbling"]
    size_ms: int = Field(gt=0)


class HoppingWindowSpec(SpecModel):
    """Overlapping windows of ``size_ms`` starting every ``slide_ms``."""

    type: Literal["hopping"]
    size_ms: int = Field(gt=0)
    slide_ms: int = Field(gt=0)

    @model_validator(mode="after")
    def _slide_fits(self) -> Self:
        if self.slide_ms > self.size_ms:
            raise ValueError(
                f"slide_ms ({self.slide_ms}) must be <= size_ms ({self.size_ms}); "
                "a larger slide would skip events between windows"
            )
        return self


class SessionWindowSpec(SpecModel):
    """Per-key activity sessions: events closer than ``gap_ms`` share a session."""

    type: Literal["session"]
    gap_ms: int = Field(gt=0)


WindowSpec = Annotated[
    TumblingWindowSpec | HoppingWindowSpec | SessionWindowSpec, Field(discriminator="type")
]


class AggregationSpec(SpecModel):
    """One output column: ``op`` applied to payload ``field`` (no field for ``count``)."""

    name: str
    op: AggregationOp
    field: str | None = None
    q: float | None = Field(default=None, ge=0.0, le=1.0)

    @field_validator("name")
    @classmethod
    def _name_is_column(cls, name: str) -> str:
        return column_name(name, "aggregation name")

    @model_validator(mode="after")
    def _op_arguments(self) -> Self:
        name = repr(self.name)
        if self.op == "count" and self.field is not None:
            raise ValueError(f"{name}: count counts events and takes no field")
        if self.op != "count" and self.field is None:
            raise ValueError(f"{name}: {self.op} needs a field")
        if self.op == "percentile" and self.q is None:
            raise ValueError(f"{name}: percentile needs q between 0 and 1 (e.g. q: 0.95)")
        if self.op != "percentile" and self.q is not None:
            raise ValueError(f"{name}: q is only valid for percentile, not {self.op}")
        return self


def check_aggregations(
    aggs: list[AggregationSpec], fields: dict[str, str] | None
) -> list[AggregationSpec]:
    """Names unique, and every field declared (when ``fields`` is known) with a fitting type."""
    seen: set[str] = set()
    for agg in aggs:
        if agg.name in seen:
            raise ValueError(f"duplicate aggregation name {agg.name!r}")
        seen.add(agg.name)
        if agg.field is None or fields is None:
            continue
        declared = fields.get(agg.field)
        if declared is None:
            raise ValueError(
                f"{agg.name!r}: field {agg.field!r} is not declared in fields "
                f"(add e.g. fields: {{{agg.field}: float}})"
            )
        if agg.op in _NEEDS_NUMERIC and declared not in _NUMERIC:
            raise ValueError(
                f"{agg.name!r}: {agg.op} needs a numeric field (int or float), "
                f"but {agg.field!r} is {declared}"
            )
    return aggs
