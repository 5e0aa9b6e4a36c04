"""The ``join`` section of a pipeline spec: an interval join of two sides of one key.

Semantics are Kafka Streams' ``JoinWindows``: a left event at ``t`` meets every right event of
the same key with ``t - before_ms <= t_right <= t + after_ms``; see :mod:`pipelines.joins`.

>>> JoinSpec.model_validate(
...     {"left": {"event_types": ["order.created"]},
...      "right": {"event_types": ["payment.*"], "source_stream": "payments"},
...      "after_ms": 60000}
... ).how
'inner'
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from pipelines.spec_base import SpecModel

__all__ = ["JoinHow", "JoinSideSpec", "JoinSpec"]

JoinHow = Literal["inner", "left"]


class JoinSideSpec(SpecModel):
    """Which events make up one side; the right side may read another (co-partitioned) stream."""

    event_types: list[str] = Field(min_length=1)
    source_stream: str | None = Field(default=None, min_length=1)

    @field_validator("event_types")
    @classmethod
    def _globs_not_blank(cls, globs: list[str]) -> list[str]:
        if any(not g.strip() for g in globs):
            raise ValueError("event type patterns must not be blank")
        return globs


class JoinSpec(SpecModel):
    """``before_ms``: how far right may precede left; ``after_ms``: how far it may follow."""

    left: JoinSideSpec
    right: JoinSideSpec
    before_ms: int = Field(default=0, ge=0)
    after_ms: int = Field(default=0, ge=0)
    how: JoinHow = "inner"

    @model_validator(mode="after")
    def _left_reads_the_pipeline_stream(self) -> Self:
        if self.left.source_stream is not None:
            raise ValueError(
                "left.source_stream is not allowed: the left side is the pipeline's "
                "source_stream; set source_stream on the right side to join another stream"
            )
        return self
