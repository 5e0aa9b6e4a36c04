"""The pattern operator against a brute-force oracle, plus snapshot/restore and live changes.

Hypothesis generates patterns (1-3 steps, type globs, ``where`` on a payload field, ``times``
with and without a maximum, an absent last step, strict/relaxed, no_skip/past_last_event,
``within_ms``) and events (keys, drifting times with disorder and late events, exact-copy
duplicates, extra "filtered-out" event time, random batch cuts). The oracle enumerates every
match straight from the definition in :mod:`pipelines.patterns` over each key's full sequence,
applies the skip strategy in completion order, and says in which batch each result is due;
the operator must emit exactly that, batch by batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import SnapshotError
from pipelines.operator_state import unpack_snapshot
from pipelines.pattern_spec import PatternSpec
from pipelines.patterns import PatternDefinition, PatternOperator
from tests.unit.pattern_oracle import OPS, Ev, Result, brute_force, oracle_results

MIN, MAX = -(2**63), 2**63 - 1
HYPOTHESIS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass
class Scenario:
    definition: PatternDefinition
    batches: list[tuple[list[Ev], int | None]]


def frame(events: list[Ev]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "key": [e.key for e in events],
            "event_time_ms": [e.t for e in events],
            "event_id": [e.id for e in events],
            "event_type": [e.type for e in events],
            "v": [e.v for e in events],
        },
        schema={
            "key": pl.String,
            "event_time_ms": pl.Int64,
            "event_id": pl.String,
            "event_type": pl.String,
            "v": pl.Int64,
        },
    )


STEP = st.fixed_dictionaries(
    {
        "event_types": st.sampled_from([["a"], ["b"], ["c"], ["a", "b"], ["*"], ["?"]]),
        "where": st.lists(
            st.fixed_dictionaries(
                {
                    "field": st.just("v"),
                    "op": st.sampled_from(list(OPS)),
                    "value": st.integers(-2, 2),
                }
            ),
            max_size=1,
        ),
        "times": st.sampled_from(
            [None, {"min": 1}, {"min": 2}, {"min": 1, "max": 2}, {"min": 2, "max": 3}]
        ),
    }
)


@st.composite
def patterns(draw: st.DrawFn, name: str) -> PatternSpec:
    steps = []
    for j, raw in enumerate(draw(st.lists(STEP, min_size=1, max_size=3))):
        step = {"name": f"s{j}", **{k: v for k, v in raw.items() if v is not None}}
        steps.append(step)
    if len(steps) >= 2 and draw(st.booleans()):
        steps[-1].pop("times", None)
        steps[-1]["absent"] = True
    return PatternSpec.model_validate(
        {
            "name": name,
            "within_ms": draw(st.sampled_from([3, 10, 25, 1000])),
            "contiguity": draw(st.sampled_from(["strict", "relaxed"])),
            "skip": draw(st.sampled_from(["no_skip", "past_last_event"])),
            "steps": steps,
        }
    )


@st.composite
def events(draw: st.DrawFn, prefix: str = "e") -> list[Ev]:
    rows = st.tuples(
        st.sampled_from(["x", "y", None]),
        st.integers(0, 5),
        st.sampled_from([0, 0, 0, 1, 3, 8, 20]),
        st.sampled_from("abc"),
        st.none() | st.integers(-2, 2),
    )
    clock, found = 0, []
    for i, (key, step, lag, kind, v) in enumerate(draw(st.lists(rows, max_size=30))):
        clock += step
        found.append(Ev(key, clock - lag, f"{prefix}{i}", kind, v))
    if found:
        copies = draw(st.lists(st.tuples(st.sampled_from(found), st.integers(0, 40)), max_size=5))
        for event, position in copies:
            found.insert(min(position, len(found)), event)
    return found


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    specs = tuple(draw(patterns(f"p{i}")) for i in range(draw(st.integers(1, 2))))
    d = PatternDefinition(
        specs,
        field_types=(("v", "int"),),
        allowed_lateness_ms=draw(st.sampled_from([0, 0, 4])),
        late_policy=draw(st.sampled_from(["drop", "dead_letter"])),
    )
    found = draw(events())
    cuts = sorted(draw(st.lists(st.integers(0, len(found)), max_size=6)))
    batches = [
        (found[lo:hi], draw(st.none() | st.integers(0, 200)))
        for lo, hi in zip([0, *cuts], [*cuts, len(found)], strict=True)
    ]
    return Scenario(d, batches)


def oracle(s: Scenario) -> tuple[list[set[Result]], set[Result], list[set[str]]]:
    """Per batch: results due, then what flush emits; late ids per batch."""
    d, w, ids = s.definition, None, set()
    marks, accepted, late = [], [], []
    for batch, seen in s.batches:
        lo = MIN if w is None else w
        late_ids = {e.id for e in batch if e.t < lo}
        for e in batch:
            if e.t >= lo and e.id not in ids:
                ids.add(e.id)
                accepted.append(e)
        newest = [e.t for e in batch] + ([seen] if seen is not None else [])
        if newest:
            w = (
                max(newest) - d.allowed_lateness_ms
                if w is None
                else max(w, max(newest) - d.allowed_lateness_ms)
            )
        marks.append(MIN if w is None else w)
        late.append(late_ids if d.late_policy == "dead_letter" else set())
    per_batch: list[set[Result]] = [set() for _ in s.batches]
    flushed: set[Result] = set()
    for key in sorted({e.key for e in accepted if e.key is not None}):
        seq = sorted((e for e in accepted if e.key == key), key=lambda e: (e.t, e.id))
        for p in d.patterns:
            for due, result in oracle_results(p, seq):
                batch = next((k for k, m in enumerate(marks) if due <= m), None)
                (flushed if batch is None else per_batch[batch]).add(result)
    return per_batch, flushed, late


def as_set(results: list[dict[str, Any]]) -> set[Result]:
    return {
        (
            r["pattern"],
            r["key"],
            r["kind"],
            r["start_ms"],
            r["end_ms"],
            tuple((n, tuple(i)) for n, i in r["events"].items()),
        )
        for r in results
    }


def run(op: PatternOperator, batch: list[Ev], seen: int | None) -> tuple[set[Result], set[str]]:
    out = op.process(frame(batch), seen)
    return as_set(out.results), set(out.late.get_column("event_id").to_list())


@HYPOTHESIS
@given(scenarios())
def test_patterns_match_the_oracle_batch_by_batch(s: Scenario) -> None:
    per_batch, flushed, late = oracle(s)
    op = PatternOperator.build(s.definition)
    for i, (batch, seen) in enumerate(s.batches):
        assert run(op, batch, seen) == (per_batch[i], late[i])
    assert as_set(op.flush().results) == flushed


@HYPOTHESIS
@given(scenarios(), st.integers(0, 6))
def test_snapshot_restore_mid_stream_equals_an_uninterrupted_run(s: Scenario, at: int) -> None:
    straight, resumed = PatternOperator.build(s.definition), PatternOperator.build(s.definition)
    for i, (batch, seen) in enumerate(s.batches):
        if i == at:
            resumed = PatternOperator.build(s.definition, resume_state=resumed.snapshot())
        assert run(resumed, batch, seen) == run(straight, batch, seen)
    assert unpack_snapshot(resumed.snapshot())[0] == unpack_snapshot(straight.snapshot())[0]
    assert as_set(resumed.flush().results) == as_set(straight.flush().results)


@HYPOTHESIS
@given(scenarios(), st.data())
def test_a_live_change_keeps_unchanged_patterns_and_starts_new_ones_fresh(
    s: Scenario, data: st.DataObject
) -> None:
    """Replacing the patterns between batches: a kept pattern is unaffected, a removed one stops,
    a new one matches exactly as a fresh operator (at the same event time) fed only the records
    that arrive after the change (re-deliveries of events already buffered are not new)."""
    at = data.draw(st.integers(0, len(s.batches)))
    added = data.draw(patterns("new"))
    changed = PatternOperator.build(s.definition)
    straight = PatternOperator.build(s.definition)
    fresh = PatternOperator.build(
        PatternDefinition(
            (added,),
            field_types=s.definition.field_types,
            allowed_lateness_ms=s.definition.allowed_lateness_ms,
        )
    )
    buffered: set[str] = set()
    for i, (batch, seen) in enumerate(s.batches):
        if i == at:
            changed.replace_patterns([s.definition.patterns[0], added])
            buffered = set(changed._buffer.get_column("event_id").to_list())
            if straight.watermark_ms is not None:  # the same event time as the others
                fresh.process(frame([]), straight.watermark_ms + s.definition.allowed_lateness_ms)
        got, _ = run(changed, batch, seen)
        want, _ = run(straight, batch, seen)
        if i < at:
            assert got == want
            continue
        assert {r for r in got if r[0] == "p0"} == {r for r in want if r[0] == "p0"}
        assert {r[0] for r in got} <= {"p0", "new"}
        new_records = [e for e in batch if e.id not in buffered]
        newest = max([e.t for e in batch] + ([seen] if seen is not None else []), default=None)
        assert {r for r in got if r[0] == "new"} == run(fresh, new_records, newest)[0]
    assert changed.patterns == (
        (s.definition.patterns[0], added) if at < len(s.batches) else s.definition.patterns
    )


def test_brute_force_login_example() -> None:
    fails = PatternSpec.model_validate(brute_force("ip_risk"))
    op = PatternOperator.build(PatternDefinition((fails,), field_types=(("ip_risk", "float"),)))
    batch = pl.DataFrame(
        {
            "key": ["u1"] * 5,
            "event_time_ms": [0, 1000, 2000, 3000, 4000],
            "event_id": ["f1", "f2", "ok", "f3", "f4"],
            "event_type": ["login.failed"] * 5,
            "ip_risk": [0.9, 0.8, 0.1, 0.7, 0.9],
        }
    )
    out = op.process(batch, seen_ms=10_000)
    assert [(r["kind"], r["events"]["fails"]) for r in out.results] == [
        ("match", ["f1", "f2", "f3"])
    ]


def test_snapshot_of_another_definition_is_refused() -> None:
    p = PatternSpec.model_validate({"name": "p", "within_ms": 5, "steps": [{"name": "a"}]})
    state = PatternOperator.build(PatternDefinition((p,))).snapshot()
    with pytest.raises(SnapshotError, match="different pattern pipeline definition"):
        PatternOperator.build(PatternDefinition((p,), allowed_lateness_ms=1), resume_state=state)
