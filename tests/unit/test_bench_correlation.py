"""The correlation benchmark's workloads and oracles (benchmarks/correlation_data.py) against
the pure operators, so a benchmark run's "results = oracle" means what it says: the oracle and
the operators agree on the generated data, which has unmatched orders and few enough matches
to be a real test."""

from __future__ import annotations

import orjson
import polars as pl

from benchmarks.correlation_data import (
    JOIN_AFTER_MS,
    JOIN_LEFT,
    PATTERN,
    Events,
    encode,
    join_oracle,
    join_workload,
    pattern_oracle,
    pattern_workload,
    with_sentinels,
)
from benchmarks.datagen import sentinel_keys
from pipelines.decode import filter_event_types
from pipelines.joins import JoinDefinition, JoinOperator
from pipelines.pattern_spec import PatternSpec
from pipelines.patterns import PatternDefinition, PatternOperator


def _rows(events: Events, fields: dict[str, type[pl.DataType]]) -> pl.DataFrame:
    return events.frame.select(
        "key",
        pl.col("time_ms").alias("event_time_ms"),
        pl.col("id").alias("event_id"),
        pl.col("type").alias("event_type"),
        *(pl.col(n).cast(t) for n, t in fields.items()),
    )


def test_the_join_oracle_equals_the_join_operator() -> None:
    orders, payments = join_workload(6_000, 4)
    expected = join_oracle(orders, payments)
    op = JoinOperator.build(JoinDefinition(after_ms=JOIN_AFTER_MS))
    left = filter_event_types(_rows(orders, {"amount": pl.Int64}), [JOIN_LEFT])
    right = filter_event_types(_rows(payments, {"amount": pl.Int64}), ["payment.*"])
    out = op.process(left.drop("event_type"), right.drop("event_type"))
    found = set(out.results.select("key", "left_event_id", "right_event_id").rows())
    assert found == expected and out.results.height == len(expected)
    matched = {left_id for _, left_id, _ in expected}
    assert 0 < len(matched) < left.height  # some orders stay unmatched


def test_the_pattern_oracle_equals_the_pattern_operator() -> None:
    activity = with_sentinels(pattern_workload(5_000, 4), 4, sentinel_keys(4))
    expected = pattern_oracle(activity)
    spec = PatternSpec.model_validate(PATTERN)
    op = PatternOperator.build(PatternDefinition((spec,), field_types=(("ip_risk", "float"),)))
    results = op.process(_rows(activity, {"ip_risk": pl.Float64})).results
    found = [(r["key"], r["start_ms"], r["end_ms"], tuple(r["events"]["fails"])) for r in results]
    assert set(found) == expected and len(found) == len(expected)
    assert 10 < len(expected) < activity.count // 10


def test_encoded_events_are_cloudevents_with_the_payload() -> None:
    orders, _ = join_workload(100, 2)
    first = orjson.loads(encode(orders)[0])
    row = orders.frame.row(0, named=True)
    assert first["id"] == row["id"] and first["aggregateid"] == row["key"]
    assert first["data"] == {"amount": row["amount"]} and first["type"] == row["type"]
