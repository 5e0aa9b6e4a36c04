"""The interval join operator against a brute-force oracle, plus snapshot/restore equivalence.

Hypothesis generates keys, drifting event times with out-of-order and late events on both
sides, exact-copy duplicates, one or two inputs with extra "filtered-out" event time, every
option (before/after, inner/left, lateness, drop/dead_letter) and random batch cuts. Each batch's
output must equal the oracle's: pairs when their second event arrives, unmatched lefts exactly
when their interval closes, late events exactly the oracle's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import SnapshotError
from pipelines.joins import JoinDefinition, JoinOperator
from pipelines.operator_state import unpack_snapshot
from pipelines.spec import PipelineSpec

MIN, MAX = -(2**63), 2**63 - 1
HYPOTHESIS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass(frozen=True)
class Ev:
    side: str  # "L" or "R"
    key: str | None
    t: int
    id: str
    v: int | None


@dataclass
class Scenario:
    definition: JoinDefinition
    batches: list[tuple[list[Ev], list[int | None]]]  # events, extra seen event time per input


Row = tuple[Any, ...]


def frame(events: list[Ev]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "key": [e.key for e in events],
            "event_time_ms": [e.t for e in events],
            "event_id": [e.id for e in events],
            "v": [e.v for e in events],
        },
        schema={"key": pl.String, "event_time_ms": pl.Int64, "event_id": pl.String, "v": pl.Int64},
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    d = JoinDefinition(
        before_ms=draw(st.sampled_from([0, 0, 2, 7])),
        after_ms=draw(st.sampled_from([0, 3, 10])),
        how=draw(st.sampled_from(["inner", "left"])),
        field_types=(("v", "int"),),
        allowed_lateness_ms=draw(st.sampled_from([0, 0, 4])),
        late_policy=draw(st.sampled_from(["drop", "dead_letter"])),
        inputs=draw(st.sampled_from([1, 2])),
    )
    clock, events = 0, []
    rows = st.tuples(
        st.sampled_from("LR"),
        st.sampled_from(["a", "b", "c", None]),
        st.integers(0, 6),
        st.sampled_from([0, 0, 0, 1, 5, 12, 30]),
        st.none() | st.integers(-5, 5),
    )
    for i, (side, key, step, lag, v) in enumerate(draw(st.lists(rows, max_size=40))):
        clock += step
        events.append(Ev(side, key, clock - lag, f"{side}{i}", v))
    if events:
        copies = draw(st.lists(st.tuples(st.sampled_from(events), st.integers(0, 60)), max_size=6))
        for event, position in copies:
            events.insert(min(position, len(events)), event)
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=6)))
    batches = []
    for lo, hi in zip([0, *cuts], [*cuts, len(events)], strict=True):
        extra = [
            draw(st.none() | st.integers(0, clock + 10)) for _ in range(d.inputs)
        ]  # newest event time of records the pipeline filtered out
        batches.append((events[lo:hi], extra))
    return Scenario(d, batches)


class JoinOracle:
    """The semantics of pipelines.joins, one event at a time over plain lists."""

    def __init__(self, d: JoinDefinition) -> None:
        self.d = d
        self.w: int | None = None
        self.seen: list[int | None] = [None] * d.inputs
        self.lefts: list[Ev] = []
        self.rights: list[Ev] = []
        self.ids: set[tuple[str, str]] = set()
        self.matched: set[str] = set()
        self.emitted_unmatched: set[str] = set()

    def row(self, left: Ev, right: Ev | None) -> Row:
        return (
            left.key,
            left.id,
            right and right.id,
            left.t,
            right and right.t,
            left.v,
            right and right.v,
        )

    def meets(self, left: Ev, right: Ev) -> bool:
        return (
            left.key is not None
            and left.key == right.key
            and left.t - self.d.before_ms <= right.t <= left.t + self.d.after_ms
        )

    def batch(self, events: list[Ev], extra: list[int | None]) -> tuple[set[Row], set[str]]:
        d, lo = self.d, MIN if self.w is None else self.w
        new_l, new_r, late = [], [], set()
        for e in events:
            reach = d.after_ms if e.side == "L" else d.before_ms + d.after_ms
            if e.t + reach < lo:
                late.add(e.id)
            elif (e.side, e.id) not in self.ids:
                self.ids.add((e.side, e.id))
                (new_l if e.side == "L" else new_r).append(e)
        out = set()
        open_old = [x for x in self.lefts if x.t + d.after_ms >= lo]
        self.lefts += new_l
        self.rights += new_r
        for left in new_l:
            out |= {self.row(left, r) for r in self.rights if self.meets(left, r)}
        for left in open_old:
            out |= {self.row(left, r) for r in new_r if self.meets(left, r)}
        self.matched |= {r[1] for r in out}
        for i in range(d.inputs):
            side_events = [e for e in events if d.inputs == 1 or e.side == "LR"[i]]
            times = [e.t for e in side_events] + [x for x in [extra[i]] if x is not None]
            if self.seen[i] is not None:
                times.append(self.seen[i])  # type: ignore[arg-type]
            self.seen[i] = max(times) if times else None
        if all(s is not None for s in self.seen):
            candidate = min(s for s in self.seen if s is not None) - d.allowed_lateness_ms
            self.w = candidate if self.w is None else max(self.w, candidate)
        out |= self.close(MIN if self.w is None else self.w)
        return out, late if d.late_policy == "dead_letter" else set()

    def close(self, hi: int) -> set[Row]:
        if self.d.how != "left":
            return set()
        due = [
            x
            for x in self.lefts
            if x.t + self.d.after_ms < hi
            and x.id not in self.matched
            and x.id not in self.emitted_unmatched
        ]
        self.emitted_unmatched |= {x.id for x in due}
        return {self.row(x, None) for x in due}


def run(op: JoinOperator, events: list[Ev], extra: list[int | None]) -> tuple[set[Row], set[str]]:
    out = op.process(
        frame([e for e in events if e.side == "L"]),
        frame([e for e in events if e.side == "R"]),
        extra,
    )
    return set(out.results.rows()), set(out.late.get_column("event_id").to_list())


@HYPOTHESIS
@given(scenarios())
def test_join_matches_the_oracle_batch_by_batch(s: Scenario) -> None:
    op, oracle = JoinOperator.build(s.definition), JoinOracle(s.definition)
    for events, extra in s.batches:
        assert run(op, events, extra) == oracle.batch(events, extra)
    assert set(op.flush().results.rows()) == oracle.close(MAX)
    assert op.buffered == 0


@HYPOTHESIS
@given(scenarios(), st.integers(0, 6))
def test_snapshot_restore_mid_stream_equals_an_uninterrupted_run(s: Scenario, at: int) -> None:
    straight, resumed = JoinOperator.build(s.definition), JoinOperator.build(s.definition)
    for i, (events, extra) in enumerate(s.batches):
        if i == at:
            resumed = JoinOperator.build(s.definition, resume_state=resumed.snapshot())
        assert run(resumed, events, extra) == run(straight, events, extra)
    assert same_state(resumed.snapshot(), straight.snapshot())
    assert resumed.counters == straight.counters


def same_state(a: bytes, b: bytes) -> bool:
    (head_a, frames_a), (head_b, frames_b) = unpack_snapshot(a), unpack_snapshot(b)
    return head_a == head_b and all(frames_a[n].equals(frames_b[n]) for n in frames_a)


def test_left_join_waits_for_the_interval_then_emits_once() -> None:
    op = JoinOperator.build(JoinDefinition(after_ms=10, how="left", field_types=(("v", "int"),)))
    order = [Ev("L", "a", 100, "o1", 1)]
    assert run(op, order, [None]) == (set(), set())
    assert run(op, [], [110]) == (set(), set())  # t + after == watermark: still open
    assert run(op, [], [111]) == ({("a", "o1", None, 100, None, 1, None)}, set())
    # Not late (a later left may take it) but o1's interval has closed: no pair, ever.
    assert run(op, [Ev("R", "a", 105, "p1", 2)], [None]) == (set(), set())
    assert (op.counters.late_dropped, op.buffered) == (0, 1)
    assert run(op, [Ev("R", "a", 99, "p0", 2)], [None]) == (set(), set())
    assert op.counters.late_dropped == 1  # 99 + 10 < 111: no open interval can take it


def test_two_inputs_wait_for_the_slower_one() -> None:
    op = JoinOperator.build(
        JoinDefinition(after_ms=5, how="left", inputs=2, field_types=(("v", "int"),))
    )
    run(op, [Ev("L", "a", 0, "o1", None)], [1000, None])
    assert op.watermark_ms is None  # the right stream has not said where it is
    pairs, _ = run(op, [Ev("R", "a", 3, "p1", None)], [None, 3])
    assert pairs == {("a", "o1", "p1", 0, 3, None, None)}


def test_snapshot_of_another_definition_is_refused() -> None:
    state = JoinOperator.build(JoinDefinition(after_ms=1)).snapshot()
    with pytest.raises(SnapshotError, match="different join definition"):
        JoinOperator.build(JoinDefinition(after_ms=2), resume_state=state)


def test_definition_from_spec() -> None:
    spec = PipelineSpec.from_data(
        {
            "pipeline_name": "orders-payments",
            "source_stream": "orders",
            "fields": {"amount": "float"},
            "allowed_lateness_ms": 7,
            "join": {
                "left": {"event_types": ["order.created"]},
                "right": {"event_types": ["payment.*"], "source_stream": "payments"},
                "before_ms": 1,
                "after_ms": 60_000,
                "how": "left",
            },
        }
    )
    d = JoinDefinition.from_spec(spec)
    assert (d.before_ms, d.after_ms, d.how, d.inputs, d.allowed_lateness_ms) == (
        1,
        60_000,
        "left",
        2,
        7,
    )
    assert d.field_types == (("amount", "float"),)
