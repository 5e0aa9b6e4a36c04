"""Event time helpers (idle clocks) and the stages partition owners drive: what a checkpoint
holds (the operator snapshot, the other input's next offset) and that old window checkpoints
still resume."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.event_time import IdleClock, newest_time
from pipelines.spec import PipelineSpec
from pipelines.stages import JoinStage, WindowStage, build_stage
from pipelines.windows import WindowDefinition, WindowOperator
from pipelines.windows.state import SnapshotError

WINDOWS = PipelineSpec.from_data(
    {
        "pipeline_name": "totals",
        "source_stream": "orders",
        "window": {"type": "tumbling", "size_ms": 10},
        "aggregations": [{"name": "n", "op": "count"}],
    }
)
JOIN = PipelineSpec.from_data(
    {
        "pipeline_name": "paid",
        "source_stream": "orders",
        "join": {
            "left": {"event_types": ["order.created"]},
            "right": {"event_types": ["payment.*"], "source_stream": "payments"},
            "after_ms": 5,
            "how": "left",
        },
    }
)


def rows(types: list[str], times: list[int], ids: list[str], key: str = "a") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "key": [key] * len(ids),
            "event_time_ms": times,
            "event_id": ids,
            "event_type": types,
            "aggregate_id": [key] * len(ids),
        },
        schema={
            "key": pl.String,
            "event_time_ms": pl.Int64,
            "event_id": pl.String,
            "event_type": pl.String,
            "aggregate_id": pl.String,
        },
    )


def test_idle_clock_runs_on_with_the_wall_clock_only_when_quiet() -> None:
    clock = IdleClock(idle_timeout_ms=100)
    assert clock.idle_event_time(now_ms=10_000) is None  # never saw an event
    clock.observe(50, now_ms=1_000)
    clock.observe(None, now_ms=1_050)  # records without a time (undecodable) still count
    assert not clock.is_idle(1_149) and clock.idle_event_time(1_149) is None
    assert clock.is_idle(1_150) and clock.idle_event_time(1_150) == 150
    clock.observe(40, now_ms=2_000)  # an older event does not move it back
    assert clock.idle_event_time(2_500) == 550
    assert newest_time(rows([], [], [])) is None


def test_a_window_stage_closes_on_idle_event_time() -> None:
    stage = build_stage(WINDOWS)
    assert stage.process([rows(["x"], [3], ["e1"])], [3]).results == []
    out = stage.process([rows([], [], [])], [25])
    assert [(r["key"], r["window_start_ms"], r["n"]) for r in out.results] == [("a", 0, 1)]


def test_a_two_stream_join_stage_keeps_the_right_offset_in_its_snapshot() -> None:
    stage = build_stage(JOIN)
    assert isinstance(stage, JoinStage) and stage.inputs == 2
    left, right = rows(["order.created"], [0], ["o1"]), rows(["payment.captured"], [3], ["p1"])
    pairs = stage.process([left, right], [0, 3]).results
    assert [(r["left_event_id"], r["right_event_id"]) for r in pairs] == [("o1", "p1")]
    stage.extra_offsets[0] = 42
    resumed = build_stage(JOIN, stage.snapshot())
    assert resumed.extra_offsets == [42] and resumed.watermark_ms == 0


def test_old_window_checkpoints_still_resume() -> None:
    operator = WindowOperator.build(WindowDefinition.from_spec(WINDOWS))
    operator.process(rows(["x"], [3], ["e1"]))
    stage = build_stage(WINDOWS, operator.snapshot())  # a checkpoint from before stages
    assert isinstance(stage, WindowStage) and stage.watermark_ms == 3


def test_a_checkpoint_of_another_kind_is_refused() -> None:
    with pytest.raises(SnapshotError, match="not WindowStage"):
        build_stage(WINDOWS, build_stage(JOIN).snapshot())
    data = JOIN.model_dump(mode="json")
    data["join"]["right"]["source_stream"] = None
    one_stream = PipelineSpec.from_data(data)  # a one-input join: its snapshot is the operator's
    with pytest.raises(SnapshotError, match="window snapshot"):
        build_stage(WINDOWS, build_stage(one_stream).snapshot())
