"""One partition's computation, whatever the spec computes: windows, an interval join or
patterns, behind one interface the partition owner drives (it does the I/O, this stays pure).

A stage takes the partition's decoded, keyed frame per input (input 0: the pipeline's source
stream, already filtered by ``event_types``; input 1: a join's right stream) and the newest
event time of every record each input delivered, and answers result documents (JSON-able dicts,
what the results store, live clients and output topics get), late rows and counters.

A two-stream join's stage also carries the right topic's next offset inside its snapshot, so it
resumes both topics exactly from one checkpoint; other stages' snapshots are the operator's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.decode import filter_event_types
from pipelines.errors import SnapshotError
from pipelines.joins import JoinDefinition, JoinOperator
from pipelines.operator_state import pack_snapshot, unpack_snapshot
from pipelines.pattern_spec import PatternSpec
from pipelines.patterns import PatternDefinition, PatternOperator
from pipelines.spec import PipelineSpec
from pipelines.windows import WindowDefinition, WindowOperator

__all__ = ["Stage", "StageOutput", "build_stage"]


@dataclass(frozen=True)
class StageOutput:
    results: list[dict[str, Any]]
    retracted: list[dict[str, Any]]  # session windows a merge replaced (windows only)
    late: pl.DataFrame
    counters: dict[str, int]


class Stage(ABC):
    inputs: int = 1
    operator: WindowOperator | JoinOperator | PatternOperator

    def __init__(self) -> None:
        self.extra_offsets: list[int | None] = [None] * (self.inputs - 1)

    @abstractmethod
    def process(self, frames: Sequence[pl.DataFrame], seen_ms: Sequence[int | None]) -> StageOutput:
        """``frames[i]``: input i's selected rows; ``seen_ms[i]``: its newest record time."""

    @property
    def watermark_ms(self) -> int | None:
        return self.operator.watermark_ms

    def snapshot(self) -> bytes:
        """The operator's snapshot; with a second input, wrapped with its next offset (a
        one-input stage adds nothing, so the window hot path pays no extra copy)."""
        if self.inputs == 1:
            return self.operator.snapshot()
        header = {"stage": type(self).__name__, "extra_offsets": self.extra_offsets}
        inner = pl.DataFrame({"state": [self.operator.snapshot()]}, schema={"state": pl.Binary})
        return pack_snapshot(header, {"operator": inner})

    @staticmethod
    def unwrap(state: bytes | None, kind: str) -> tuple[bytes | None, list[int | None]]:
        if state is None:
            return None, []
        header, frames = unpack_snapshot(state)
        if "stage" not in header:
            return state, []  # an operator snapshot itself (its restore checks the kind)
        if header.get("stage") != kind:
            raise SnapshotError(f"checkpoint is a {header.get('stage')} state, not {kind}")
        return frames["operator"].get_column("state")[0], list(header["extra_offsets"])


class WindowStage(Stage):
    operator: WindowOperator

    def __init__(self, spec: PipelineSpec, state: bytes | None) -> None:
        super().__init__()
        inner, _ = self.unwrap(state, type(self).__name__)
        self.operator = WindowOperator.build(WindowDefinition.from_spec(spec), inner)

    def process(self, frames: Sequence[pl.DataFrame], seen_ms: Sequence[int | None]) -> StageOutput:
        out = self.operator.process(frames[0], seen_ms[0])
        return StageOutput(
            out.results.to_dicts(), out.retracted.to_dicts(), out.late, out.counters.as_dict()
        )


class JoinStage(Stage):
    operator: JoinOperator

    def __init__(self, spec: PipelineSpec, state: bytes | None) -> None:
        definition = JoinDefinition.from_spec(spec)
        self.inputs = definition.inputs
        super().__init__()
        assert spec.join is not None
        self.join = spec.join
        inner, offsets = self.unwrap(state, type(self).__name__)
        self.extra_offsets = offsets or self.extra_offsets
        self.operator = JoinOperator.build(definition, inner)

    def process(self, frames: Sequence[pl.DataFrame], seen_ms: Sequence[int | None]) -> StageOutput:
        left = filter_event_types(frames[0], self.join.left.event_types)
        right = filter_event_types(frames[-1], self.join.right.event_types)
        out = self.operator.process(left, right, seen_ms)
        return StageOutput(out.results.to_dicts(), [], out.late, out.counters.as_dict())


class PatternStage(Stage):
    operator: PatternOperator

    def __init__(self, spec: PipelineSpec, state: bytes | None) -> None:
        super().__init__()
        inner, _ = self.unwrap(state, type(self).__name__)
        self.operator = PatternOperator.build(PatternDefinition.from_spec(spec), inner)

    def process(self, frames: Sequence[pl.DataFrame], seen_ms: Sequence[int | None]) -> StageOutput:
        out = self.operator.process(frames[0], seen_ms[0])
        return StageOutput(out.results, [], out.late, out.counters.as_dict())

    def replace_patterns(self, patterns: Sequence[PatternSpec]) -> None:
        self.operator.replace_patterns(patterns)


def build_stage(spec: PipelineSpec, state: bytes | None = None) -> Stage:
    """The stage for ``spec``, resumed from a checkpoint's state when given."""
    if spec.join is not None:
        return JoinStage(spec, state)
    if spec.patterns is not None:
        return PatternStage(spec, state)
    return WindowStage(spec, state)
