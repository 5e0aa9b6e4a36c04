"""PipelineSpec validation of `join` and `patterns`: good specs round-trip and build their
stage; bad ones fail with the message a user would see."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from pipelines.spec import PipelineSpec, SpecError
from pipelines.stages import JoinStage, PatternStage, WindowStage, build_stage

BASE: dict[str, Any] = {
    "pipeline_name": "fraud",
    "source_stream": "orders",
    "fields": {"amount": "float", "ip_risk": "float", "country": "str", "vip": "bool"},
}
JOIN = {
    "left": {"event_types": ["order.created"]},
    "right": {"event_types": ["payment.*"], "source_stream": "payments"},
    "after_ms": 60_000,
}
UNPAID = {
    "name": "unpaid",
    "within_ms": 900_000,
    "contiguity": "relaxed",
    "skip": "past_last_event",
    "steps": [
        {"name": "created", "event_types": ["order.created"]},
        {"name": "paid", "event_types": ["order.paid"], "absent": True},
    ],
}
BRUTE = {
    "name": "brute-force",
    "within_ms": 60_000,
    "steps": [
        {
            "name": "fails",
            "event_types": ["login.failed"],
            "times": {"min": 3},
            "where": [{"field": "ip_risk", "op": ">", "value": 0.5}],
        }
    ],
}


def spec(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(changes))
    return data


def pattern(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BRUTE), **changes}


def step(**changes: Any) -> dict[str, Any]:
    return {"name": "s", "event_types": ["a"], **changes}


GOOD = [
    pytest.param(spec(join=JOIN), JoinStage, id="join-two-streams"),
    pytest.param(spec(join={**JOIN, "right": {"event_types": ["p.*"]}}), JoinStage, id="join-one"),
    pytest.param(spec(join={**JOIN, "how": "left", "before_ms": 5}), JoinStage, id="left-join"),
    pytest.param(spec(patterns=[UNPAID, BRUTE]), PatternStage, id="issue-example"),
    pytest.param(
        spec(patterns=[pattern(steps=[step(times={"min": 2, "max": 4}), step(name="t")])]),
        PatternStage,
        id="times-range",
    ),
    pytest.param(
        spec(
            patterns=[
                pattern(
                    contiguity="strict",
                    steps=[step(where=[{"field": "country", "op": "==", "value": "NL"}])],
                )
            ]
        ),
        PatternStage,
        id="strict-str-where",
    ),
    pytest.param(
        spec(patterns=[pattern(steps=[step(where=[{"field": "vip", "op": "!=", "value": True}])])]),
        PatternStage,
        id="bool-where",
    ),
    pytest.param(
        spec(
            window={"type": "tumbling", "size_ms": 10},
            aggregations=[{"name": "n", "op": "count"}],
            idle_timeout_ms=500,
        ),
        WindowStage,
        id="windows-with-idle-timeout",
    ),
]


@pytest.mark.parametrize(("data", "stage"), GOOD)
def test_good_specs_validate_round_trip_and_build(data: dict[str, Any], stage: type) -> None:
    parsed = PipelineSpec.from_data(data)
    assert PipelineSpec.from_yaml(parsed.to_yaml()) == parsed
    assert pickle.loads(pickle.dumps(parsed)) == parsed
    built = build_stage(parsed)
    assert isinstance(built, stage)
    assert isinstance(build_stage(parsed, built.snapshot()), stage)  # resumes from itself


BAD = [
    ("nothing to compute", spec(), "exactly one of aggregations, join or patterns (none of them"),
    (
        "two computations",
        spec(join=JOIN, patterns=[BRUTE]),
        "exactly one of aggregations, join or patterns (join and patterns given)",
    ),
    (
        "window with a join",
        spec(join=JOIN, window={"type": "tumbling", "size_ms": 5}),
        "window only applies to aggregations; remove it for join",
    ),
    ("update policy on patterns", spec(patterns=[BRUTE], late_policy="update"), "only applies to"),
    ("negative after", spec(join={**JOIN, "after_ms": -1}), "join.after_ms"),
    ("bad how", spec(join={**JOIN, "how": "outer"}), "join.how"),
    (
        "left on another stream",
        spec(join={**JOIN, "left": {"event_types": ["o"], "source_stream": "x"}}),
        "left.source_stream is not allowed",
    ),
    ("no right types", spec(join={**JOIN, "right": {"event_types": []}}), "join.right.event_types"),
    ("zero idle timeout", spec(patterns=[BRUTE], idle_timeout_ms=0), "idle_timeout_ms"),
    ("no steps", spec(patterns=[pattern(steps=[])]), "patterns.0.steps"),
    ("no within", spec(patterns=[{"name": "p", "steps": [step()]}]), "within_ms: Field required"),
    ("empty patterns", spec(patterns=[]), "patterns"),
    (
        "duplicate patterns",
        spec(patterns=[BRUTE, BRUTE]),
        "duplicate pattern names ['brute-force']",
    ),
    (
        "duplicate steps",
        spec(patterns=[pattern(steps=[step(), step()])]),
        "duplicate step names ['s']",
    ),
    (
        "absent in the middle",
        spec(patterns=[pattern(steps=[step(name="a"), step(name="b", absent=True), step()])]),
        "only the last step may be absent",
    ),
    (
        "absent first",
        spec(patterns=[pattern(steps=[step(absent=True)])]),
        "needs a step before it",
    ),
    (
        "absent with times",
        spec(patterns=[pattern(steps=[step(name="a"), step(absent=True, times={"min": 2})])]),
        "takes no times",
    ),
    (
        "max below min",
        spec(patterns=[pattern(steps=[step(times={"min": 3, "max": 2})])]),
        "times.max (2) must be >= times.min (3)",
    ),
    ("zero min", spec(patterns=[pattern(steps=[step(times={"min": 0})])]), "times.min"),
    (
        "bad op",
        spec(patterns=[pattern(steps=[step(where=[{"field": "amount", "op": "~", "value": 1}])])]),
        "where.0.op",
    ),
    (
        "undeclared where field",
        spec(patterns=[pattern(steps=[step(where=[{"field": "price", "op": ">", "value": 1}])])]),
        "where on 'price': the field is not declared in fields",
    ),
    (
        "text against a number",
        spec(
            patterns=[pattern(steps=[step(where=[{"field": "amount", "op": ">", "value": "x"}])])]
        ),
        "> 'x' does not fit a float field",
    ),
    (
        "ordering a bool",
        spec(patterns=[pattern(steps=[step(where=[{"field": "vip", "op": "<", "value": True}])])]),
        "bool fields take == or != true/false",
    ),
    ("bad step name", spec(patterns=[pattern(steps=[step(name="a-b")])]), "must be an identifier"),
    ("unknown step key", spec(patterns=[pattern(steps=[step(until=1)])]), "until: Extra inputs"),
]


@pytest.mark.parametrize(("data", "message"), [pytest.param(d, m, id=i) for i, d, m in BAD])
def test_bad_specs_are_rejected_with_a_clear_message(data: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_data(data)
    assert message in str(info.value)
    assert info.value.status == 422
