"""PipelineSpec validation: a table of good and bad specs with the message a user would see."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from pipelines.spec import PipelineSpec, SessionWindowSpec, SpecError
from pipelines.windows import (
    Aggregation,
    HoppingWindow,
    SessionWindow,
    TumblingWindow,
    WindowDefinition,
    WindowOperator,
)

BASE: dict[str, Any] = {
    "pipeline_name": "order-totals",
    "source_stream": "orders",
    "fields": {"amount": "float", "qty": "int", "customer": "str", "paid": "bool"},
    "window": {"type": "tumbling", "size_ms": 60_000},
    "aggregations": [{"name": "orders", "op": "count"}],
}


def spec(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        if value is ...:
            target.pop(last, None)
        else:
            target[last] = value
    return data


def agg(name: str, op: str, field: str | None = None, q: float | None = None) -> dict[str, Any]:
    return {
        k: v for k, v in {"name": name, "op": op, "field": field, "q": q}.items() if v is not None
    }


GOOD = [
    pytest.param(spec(), id="minimal"),
    pytest.param(spec(window={"type": "hopping", "size_ms": 10, "slide_ms": 10}), id="hop=tumble"),
    pytest.param(spec(window={"type": "hopping", "size_ms": 10, "slide_ms": 3}), id="hop-uneven"),
    pytest.param(spec(window={"type": "session", "gap_ms": 500}), id="session"),
    pytest.param(spec(key="payload.customer"), id="payload-key"),
    pytest.param(spec(key="payload.qty"), id="int-key"),
    pytest.param(spec(event_types=["order.*", "refund.issued"]), id="globs"),
    pytest.param(
        spec(
            aggregations=[
                agg("n", "count"),
                agg("total", "sum", "amount"),
                agg("units", "sum", "qty"),
                agg("lo", "min", "customer"),
                agg("hi", "max", "paid"),
                agg("avg", "mean", "qty"),
                agg("buyers", "count_distinct", "customer"),
                agg("first_buyer", "first", "customer"),
                agg("last_paid", "last", "paid"),
                agg("p0", "percentile", "amount", 0.0),
                agg("p100", "percentile", "qty", 1.0),
            ]
        ),
        id="every-op",
    ),
    pytest.param(spec(late_policy="update", retain_closed_ms=0), id="update-no-retention"),
    pytest.param(
        spec(time="processing", emit="on_update", sinks={"redis": False, "kafka_topic": "out.t-1"}),
        id="processing-time",
    ),
]


@pytest.mark.parametrize("data", GOOD)
def test_good_specs_validate_and_round_trip(data: dict[str, Any]) -> None:
    parsed = PipelineSpec.from_data(data)
    assert PipelineSpec.from_yaml(parsed.to_yaml()) == parsed
    assert pickle.loads(pickle.dumps(parsed)) == parsed
    WindowOperator.build(WindowDefinition.from_spec(parsed))  # every valid spec runs


BAD = [
    ("not a mapping", ["a", "list"], "must be a mapping"),
    ("missing window", spec(window=...), "window: Field required"),
    ("unknown window", spec(window={"type": "sliding", "size_ms": 5}), "does not match any"),
    ("window without type", spec(window={"size_ms": 5}), "Unable to extract tag"),
    ("zero size", spec(window={"type": "tumbling", "size_ms": 0}), "greater than 0"),
    ("negative gap", spec(window={"type": "session", "gap_ms": -1}), "greater than 0"),
    (
        "slide over size",
        spec(window={"type": "hopping", "size_ms": 10, "slide_ms": 20}),
        "slide_ms (20) must be <= size_ms (10)",
    ),
    ("extra window key", spec(window={"type": "tumbling", "size_ms": 5, "size": 1}), "size"),
    ("bad name", spec(pipeline_name="has space"), "pipeline_name: String should match"),
    ("empty stream", spec(source_stream=""), "source_stream"),
    ("no event types", spec(event_types=[]), "event_types"),
    ("blank glob", spec(event_types=[" "]), "must not be blank"),
    ("bad key", spec(key="user"), "key must be 'aggregate_id' or 'payload.<field>'"),
    ("undeclared key", spec(key="payload.region"), "key: key 'payload.region' needs 'region'"),
    ("bad field type", spec(fields={"amount": "decimal"}), "fields.amount"),
    ("bad field name", spec(fields={"1x": "int"}), "must be an identifier"),
    ("reserved field", spec(fields={"event_id": "str"}), "clashes with a reserved column"),
    ("no aggregations", spec(aggregations=[]), "aggregations"),
    ("unknown op", spec(aggregations=[agg("x", "median", "amount")]), "aggregations.0.op"),
    ("count with field", spec(aggregations=[agg("n", "count", "qty")]), "count counts events"),
    (
        "sum without field",
        spec(aggregations=[agg("t", "sum")]),
        "aggregations.0: 't': sum needs a field",
    ),
    (
        "sum of text",
        spec(aggregations=[agg("t", "sum", "customer")]),
        "aggregations: 't': sum needs a numeric field (int or float), but 'customer' is str",
    ),
    ("mean of bool", spec(aggregations=[agg("m", "mean", "paid")]), "mean needs a numeric field"),
    (
        "undeclared field",
        spec(aggregations=[agg("t", "sum", "price")]),
        "field 'price' is not declared in fields",
    ),
    (
        "percentile without q",
        spec(aggregations=[agg("p", "percentile", "amount")]),
        "percentile needs q between 0 and 1",
    ),
    ("q out of range", spec(aggregations=[agg("p", "percentile", "amount", 1.5)]), "less than"),
    ("q on max", spec(aggregations=[agg("m", "max", "amount", 0.5)]), "q is only valid for"),
    (
        "duplicate names",
        spec(aggregations=[agg("n", "count"), agg("n", "max", "qty")]),
        "duplicate aggregation name 'n'",
    ),
    ("reserved agg name", spec(aggregations=[agg("revision", "count")]), "is reserved"),
    ("agg name not identifier", spec(aggregations=[agg("a-b", "count")]), "must be an identifier"),
    ("negative lateness", spec(allowed_lateness_ms=-1), "allowed_lateness_ms"),
    ("bad policy", spec(late_policy="ignore"), "late_policy"),
    ("retention without update", spec(retain_closed_ms=100), "retain_closed_ms: only applies"),
    ("bad emit", spec(emit="always"), "emit"),
    ("bad time", spec(time="ingest"), "time"),
    ("bad topic", spec(sinks={"kafka_topic": "no spaces"}), "sinks.kafka_topic"),
    ("unknown top-level key", spec(windw={"type": "tumbling"}), "windw: Extra inputs"),
]


@pytest.mark.parametrize(("data", "message"), [pytest.param(d, m, id=i) for i, d, m in BAD])
def test_bad_specs_are_rejected_with_a_clear_message(data: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_data(data)
    assert message in str(info.value)
    assert info.value.status == 422


def test_yaml_errors_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="not valid YAML"):
        PipelineSpec.from_yaml("window: [unclosed")
    with pytest.raises(SpecError, match="must be a mapping"):
        PipelineSpec.from_yaml("")


def test_errors_list_every_problem() -> None:
    data = spec(pipeline_name="", allowed_lateness_ms=-5)
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_data(data)
    assert {e["loc"] for e in info.value.errors} == {"pipeline_name", "allowed_lateness_ms"}


def test_defaults_and_derived_values() -> None:
    parsed = PipelineSpec.from_data(spec())
    assert parsed.event_types == ["*"]
    assert (parsed.key, parsed.key_field, parsed.key_type) == ("aggregate_id", None, "str")
    assert (parsed.time, parsed.late_policy, parsed.emit) == ("event", "drop", "on_close")
    assert parsed.sinks.redis and parsed.sinks.kafka_topic is None
    assert parsed.closed_retention_ms == 0
    assert PipelineSpec.from_data(spec(late_policy="update")).closed_retention_ms == 60_000
    session = PipelineSpec.from_data(
        spec(late_policy="update", window={"type": "session", "gap_ms": 900})
    )
    assert isinstance(session.window, SessionWindowSpec)
    assert session.closed_retention_ms == 900


def test_definition_from_spec() -> None:
    parsed = PipelineSpec.from_data(
        spec(
            key="payload.qty",
            window={"type": "hopping", "size_ms": 10, "slide_ms": 5},
            allowed_lateness_ms=3,
            late_policy="update",
            retain_closed_ms=7,
            emit="on_update",
            aggregations=[agg("n", "count"), agg("p", "percentile", "amount", 0.5)],
        )
    )
    assert WindowDefinition.from_spec(parsed) == WindowDefinition(
        window=HoppingWindow(10, 5),
        aggregations=(Aggregation("n", "count"), Aggregation("p", "percentile", "amount", 0.5)),
        key_type="int",
        field_types=(("amount", "float"), ("customer", "str"), ("paid", "bool"), ("qty", "int")),
        allowed_lateness_ms=3,
        late_policy="update",
        emit="on_update",
        retain_closed_ms=7,
    )
    tumbling = WindowDefinition.from_spec(PipelineSpec.from_data(spec()))
    assert tumbling.window == TumblingWindow(60_000)
    sessions = PipelineSpec.from_data(spec(window={"type": "session", "gap_ms": 5}))
    assert WindowDefinition.from_spec(sessions).window == SessionWindow(5)


def test_docstring_example_runs() -> None:
    import doctest

    import pipelines.spec

    assert doctest.testmod(pipelines.spec).failed == 0
