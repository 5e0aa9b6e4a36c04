"""Window operators against the brute-force oracle, plus snapshot/restore equivalence.

Hypothesis generates keys, drifting event times with out-of-order and late events, exact-copy
duplicates, all late policies and emit modes, and random batch cuts; the operator's final sink
view (latest revision per window, retractions applied) must equal the oracle's exactly (floats
within 1e-9).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipelines.operator_state import pack_snapshot, unpack_snapshot
from pipelines.windows import (
    Aggregation,
    HoppingWindow,
    SessionWindow,
    SnapshotError,
    TumblingWindow,
    WindowDefinition,
    WindowKind,
    WindowOperator,
    WindowOutput,
)
from tests.unit.oracle import Event, Oracle

FIELDS: tuple[tuple[str, Any], ...] = (("b", "bool"), ("s", "str"), ("v", "int"), ("x", "float"))
SCHEMA = {
    "key": pl.String,
    "event_time_ms": pl.Int64,
    "event_id": pl.String,
    "v": pl.Int64,
    "x": pl.Float64,
    "s": pl.String,
    "b": pl.Boolean,
}
AGGS = (
    Aggregation("n", "count"),
    Aggregation("sum_v", "sum", "v"),
    Aggregation("sum_x", "sum", "x"),
    Aggregation("min_v", "min", "v"),
    Aggregation("max_x", "max", "x"),
    Aggregation("min_s", "min", "s"),
    Aggregation("max_b", "max", "b"),
    Aggregation("mean_x", "mean", "x"),
    Aggregation("mean_v", "mean", "v"),
    Aggregation("distinct_s", "count_distinct", "s"),
    Aggregation("distinct_v", "count_distinct", "v"),
    Aggregation("first_x", "first", "x"),
    Aggregation("first_v", "first", "v"),
    Aggregation("last_s", "last", "s"),
    Aggregation("p30_x", "percentile", "x", q=0.3),
    Aggregation("p90_v", "percentile", "v", q=0.9),
)
HYPOTHESIS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass
class Scenario:
    definition: WindowDefinition
    batches: list[list[Event]]


def definition(window: WindowKind, **options: Any) -> WindowDefinition:
    return WindowDefinition(window=window, aggregations=AGGS, field_types=FIELDS, **options)


def windows(kind: str) -> st.SearchStrategy[WindowKind]:
    if kind == "tumbling":
        return st.builds(TumblingWindow, st.integers(1, 30))
    if kind == "hopping":
        return st.integers(1, 20).flatmap(
            lambda size: st.builds(HoppingWindow, st.just(size), st.integers(1, size))
        )
    return st.builds(SessionWindow, st.integers(1, 20))


EVENT_ROWS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", None]),
        st.integers(0, 8),  # how far the stream advances
        st.sampled_from([0, 0, 0, 1, 4, 9, 16, 25, 40]),  # how far this event lags
        st.none() | st.integers(-5, 5),
        st.none() | st.integers(-400, 400).map(lambda i: i / 4),
        st.none() | st.sampled_from(["p", "q", "r"]),
        st.none() | st.booleans(),
    ),
    max_size=40,
)


@st.composite
def scenarios(draw: st.DrawFn, kind: str, late_policy: str | None = None) -> Scenario:
    d = definition(
        draw(windows(kind)),
        allowed_lateness_ms=draw(st.sampled_from([0, 0, 3, 10])),
        late_policy=late_policy or draw(st.sampled_from(["drop", "dead_letter", "update"])),
        emit=draw(st.sampled_from(["on_close", "on_update"])),
        retain_closed_ms=draw(st.sampled_from([0, 5, 20, 60])),
    )
    clock, events = 0, []
    for i, (key, step, lag, v, x, s, b) in enumerate(draw(EVENT_ROWS)):
        clock += step
        values = (("v", v), ("x", x), ("s", s), ("b", b))
        events.append(Event(key, clock - lag, f"e{i}", values))
    if events:  # exact re-deliveries, anywhere in the stream
        copies = draw(st.lists(st.tuples(st.sampled_from(events), st.integers(0, 60)), max_size=8))
        for event, position in copies:
            events.insert(min(position, len(events)), event)
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=10)))
    bounds = [0, *cuts, len(events)]
    batches = [events[a:b] for a, b in itertools.pairwise(bounds)]
    return Scenario(d, batches)


def frame(events: list[Event]) -> pl.DataFrame:
    rows = [
        {"key": e.key, "event_time_ms": e.t, "event_id": e.id, **dict(e.values)} for e in events
    ]
    return pl.DataFrame(rows, schema=SCHEMA)


def sink_view(outputs: list[WindowOutput]) -> dict[tuple[Any, int, int], dict[str, Any]]:
    """What a results store holds after applying every output in order."""
    view: dict[tuple[Any, int, int], dict[str, Any]] = {}
    for out in outputs:
        for key, start, end in out.retracted.iter_rows():
            del view[(key, start, end)]  # strict: a retraction must name a row the sink holds
        for row in out.results.iter_rows(named=True):
            view[(row.pop("key"), row.pop("window_start_ms"), row.pop("window_end_ms"))] = row
    return view


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def check_against_oracle(scenario: Scenario, seen: list[int | None] | None = None) -> None:
    op = WindowOperator.build(scenario.definition)
    oracle = Oracle(scenario.definition)
    outputs, dead = [], []
    for i, batch in enumerate(scenario.batches):
        filtered_out = None if seen is None else seen[i % len(seen)]
        out = op.process(frame(batch), seen_ms=filtered_out)
        oracle.process(batch, filtered_out)
        assert op.watermark_ms == oracle.watermark
        outputs.append(out)
        dead += out.late.get_column("event_id").to_list()
    outputs.append(op.flush())
    oracle.flush()

    view = sink_view(outputs)
    assert view.keys() == oracle.final.keys()
    for window, expected in oracle.final.items():
        got = view[window]
        wrong = {k: (got[k], v) for k, v in expected.items() if not same(got[k], v)}
        assert not wrong, f"window {window}: (operator, oracle) differ in {wrong}"
    assert dead == oracle.dead_letters
    assert op.counters.as_dict() == oracle.counters
    assert op.open_windows == 0


@HYPOTHESIS
@given(scenarios("tumbling"))
def test_tumbling_matches_oracle(scenario: Scenario) -> None:
    check_against_oracle(scenario)


@HYPOTHESIS
@given(scenarios("hopping"))
def test_hopping_matches_oracle(scenario: Scenario) -> None:
    check_against_oracle(scenario)


@HYPOTHESIS
@given(scenarios("session"))
def test_session_matches_oracle(scenario: Scenario) -> None:
    check_against_oracle(scenario)


@HYPOTHESIS
@given(
    st.sampled_from(["tumbling", "hopping", "session"]).flatmap(scenarios),
    st.lists(st.none() | st.integers(0, 300), min_size=1, max_size=5),
)
def test_filtered_out_records_advance_event_time(
    scenario: Scenario, seen: list[int | None]
) -> None:
    """Records the pipeline does not select still move the watermark (``seen_ms``)."""
    check_against_oracle(scenario, seen)


def test_only_unselected_records_still_close_windows() -> None:
    op = WindowOperator.build(definition(TumblingWindow(10)))
    op.process(frame([Event("a", 3, "e1")]))
    closed = op.process(frame([]), seen_ms=25)  # e.g. only "user.*" arrived, up to t=25
    assert closed.results.select("key", "window_start_ms", "n").rows() == [("a", 0, 1)]


@HYPOTHESIS
@given(
    st.sampled_from(["tumbling", "hopping", "session"]).flatmap(lambda k: scenarios(k, "update"))
)
def test_late_updates_match_oracle(scenario: Scenario) -> None:
    check_against_oracle(scenario)


@settings(
    max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.sampled_from(["tumbling", "hopping", "session"]).flatmap(scenarios),
    st.integers(0, 10),
)
def test_snapshot_restore_continues_exactly(scenario: Scenario, cut: int) -> None:
    straight = WindowOperator.build(scenario.definition)
    resumed = WindowOperator.build(scenario.definition)
    cut = min(cut, len(scenario.batches))
    for i, batch in enumerate(scenario.batches):
        if i == cut:
            resumed = WindowOperator.build(scenario.definition, resume_state=resumed.snapshot())
        a, b = straight.process(frame(batch)), resumed.process(frame(batch))
        assert_same_output(a, b)
    assert_same_snapshot(straight.snapshot(), resumed.snapshot())
    assert_same_output(straight.flush(), resumed.flush())
    assert straight.counters == resumed.counters


def test_session_snapshot_from_before_the_shown_column_restores() -> None:
    """A snapshot taken before sessions recorded `__shown` restores, and a late event that moves
    an emitted session still retracts its old bounds."""
    late_update = definition(
        SessionWindow(5), late_policy="update", retain_closed_ms=1_000, emit="on_update"
    )
    batches = [[Event("a", 1, "e1")], [Event("a", 100, "e2")], [Event("a", 4, "e3")]]
    straight = WindowOperator.build(late_update)
    outputs = [straight.process(frame(b)) for b in batches[:2]]
    header, frames = unpack_snapshot(straight.snapshot())
    frames["state"] = frames["state"].drop("__shown")
    resumed = WindowOperator.build(late_update, resume_state=pack_snapshot(header, frames))
    a, b = straight.process(frame(batches[2])), resumed.process(frame(batches[2]))
    assert_same_output(a, b)
    assert a.retracted.rows() == [("a", 1, 6)]  # [1, 6) became [1, 9)
    assert ("a", 1, 9) in sink_view([*outputs, a])


def assert_same_snapshot(a: bytes, b: bytes) -> None:
    """Same header and frames (the IPC bytes may differ in chunk layout, not in content)."""
    (head_a, frames_a), (head_b, frames_b) = unpack_snapshot(a), unpack_snapshot(b)
    assert head_a == head_b
    assert frames_a.keys() == frames_b.keys()
    for name, frame_a in frames_a.items():
        assert_frame_equal(frame_a, frames_b[name], check_exact=True)


def assert_same_output(a: WindowOutput, b: WindowOutput) -> None:
    assert_frame_equal(a.results, b.results, check_exact=True)
    assert_frame_equal(a.late, b.late, check_exact=True)
    assert_frame_equal(a.retracted, b.retracted, check_exact=True)
    assert a.counters == b.counters


# -- examples that pin the documented semantics down ---------------------------------------------

COUNT = (Aggregation("n", "count"),)


def events(*rows: tuple[str, int, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"key": k, "event_time_ms": t, "event_id": i} for k, t, i in rows],
        schema={"key": pl.String, "event_time_ms": pl.Int64, "event_id": pl.String},
    )


def test_duplicates_are_ignored_within_and_across_batches() -> None:
    op = WindowOperator.build(WindowDefinition(TumblingWindow(10), COUNT))
    assert op.process(events(("a", 1, "x"), ("a", 2, "x"))).counters.duplicates == 1
    assert op.process(events(("a", 3, "x"))).counters.duplicates == 1
    assert op.flush().results.get_column("n").to_list() == [1]


@pytest.mark.parametrize(
    ("policy", "late_rows", "counter", "final"),
    [
        ("drop", 0, "late_dropped", [(0, 1, 0)]),
        ("dead_letter", 1, "late_dead_lettered", [(0, 1, 0)]),
        ("update", 0, "late_updated", [(0, 2, 1)]),
    ],
)
def test_late_policies(policy: str, late_rows: int, counter: str, final: list[Any]) -> None:
    d = WindowDefinition(TumblingWindow(10), COUNT, late_policy=policy, retain_closed_ms=10)  # type: ignore[arg-type]
    op = WindowOperator.build(d)
    first = op.process(events(("a", 5, "e1"), ("a", 15, "e2")))  # closes [0, 10)
    assert first.results.select("window_start_ms", "n", "revision").rows() == [(0, 1, 0)]
    out = op.process(events(("a", 7, "late")))
    assert out.late.height == late_rows
    assert getattr(out.counters, counter) == 1
    view = sink_view([first, out])
    assert [(k[1], r["n"], r["revision"]) for k, r in view.items()] == final


def test_update_policy_forgets_windows_after_retention() -> None:
    d = WindowDefinition(TumblingWindow(10), COUNT, late_policy="update", retain_closed_ms=5)
    op = WindowOperator.build(d)
    op.process(events(("a", 5, "e1"), ("a", 30, "e2")))  # [0, 10) ended 20ms before watermark
    out = op.process(events(("a", 6, "late")))
    assert (out.counters.late_dropped, out.counters.late_updated, out.results.height) == (1, 0, 0)


def test_on_update_emits_open_windows_with_rising_revision() -> None:
    op = WindowOperator.build(WindowDefinition(TumblingWindow(10), COUNT, emit="on_update"))
    a = op.process(events(("a", 1, "e1")))
    b = op.process(events(("a", 2, "e2")))
    c = op.process(events(("a", 12, "e3")))
    assert a.results.select("n", "revision", "closed").rows() == [(1, 0, False)]
    assert b.results.select("n", "revision", "closed").rows() == [(2, 1, False)]
    assert c.results.select("window_start_ms", "n", "revision", "closed").rows() == [
        (0, 2, 2, True),
        (10, 1, 0, False),
    ]


def test_session_bridge_merges_and_retracts_emitted_parts() -> None:
    d = WindowDefinition(SessionWindow(10), COUNT, late_policy="update", retain_closed_ms=50)
    op = WindowOperator.build(d)
    first = op.process(events(("a", 0, "e1"), ("a", 15, "e2"), ("a", 40, "e3")))
    assert first.results.select("window_start_ms", "window_end_ms", "n").rows() == [
        (0, 10, 1),
        (15, 25, 1),
    ]
    bridged = op.process(events(("a", 8, "bridge")))  # 0..8..15: one session now
    assert bridged.retracted.rows() == [("a", 0, 10), ("a", 15, 25)]
    assert bridged.results.select("window_start_ms", "window_end_ms", "n", "revision").rows() == [
        (0, 25, 3, 1)
    ]
    assert bridged.counters.late_updated == 1


def test_flush_closes_everything_and_later_events_are_late() -> None:
    op = WindowOperator.build(WindowDefinition(SessionWindow(5), COUNT))
    op.process(events(("a", 1, "e1"), ("b", 2, "e2")))
    assert op.flush().results.height == 2
    assert op.open_windows == 0
    assert op.process(events(("a", 100, "e3"))).counters.late_dropped == 1


def test_snapshot_refuses_another_definition() -> None:
    op = WindowOperator.build(WindowDefinition(TumblingWindow(10), COUNT))
    with pytest.raises(SnapshotError, match="different window definition"):
        WindowOperator.build(WindowDefinition(TumblingWindow(20), COUNT), op.snapshot())
    with pytest.raises(SnapshotError, match="bad magic"):
        WindowOperator.build(WindowDefinition(TumblingWindow(10), COUNT), b"nope")


def test_missing_columns_are_reported() -> None:
    d = WindowDefinition(TumblingWindow(10), (Aggregation("t", "sum", "v"),), field_types=FIELDS)
    with pytest.raises(ValueError, match=r"missing columns \['v'\]"):
        WindowOperator.build(d).process(events(("a", 1, "e1")))


def test_integer_keys_and_negative_times() -> None:
    d = WindowDefinition(HoppingWindow(10, 4), COUNT, key_type="int")
    op = WindowOperator.build(d)
    batch = pl.DataFrame({"key": [7, 7], "event_time_ms": [-3, 1], "event_id": ["a", "b"]})
    closed = op.process(batch).results.select("key", "window_start_ms", "n").rows()
    assert closed == [(7, -12, 1)]  # [-12, -2) ends before the watermark (1)
    rows = op.flush().results.select("key", "window_start_ms", "n").rows()
    assert rows == [(7, -8, 2), (7, -4, 2), (7, 0, 1)]


def test_public_api_is_all() -> None:
    import types

    import pipelines.windows as package

    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(package.__all__)
