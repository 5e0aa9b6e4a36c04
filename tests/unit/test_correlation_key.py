"""Pipelines keyed by correlation_id: the spec accepts it, both record forms decode it into the
`key` the operators group by, and a join pairs events of different aggregates by it."""

from __future__ import annotations

import orjson
import polars as pl

from pipelines.arrow_batch import decode_batch, to_batches
from pipelines.decode import decode_cloudevents_lenient, with_window_key
from pipelines.spec import PipelineSpec
from pipelines.stages import build_stage


def cloudevent(i: str, kind: str, aggregate: str, t: str, correlation: str | None) -> bytes:
    event = {"specversion": "1.0", "id": i, "type": kind, "source": "/t", "time": t}
    event |= {"aggregateid": aggregate, "data": {"amount": 1.0}}
    if correlation is not None:
        event["correlationid"] = correlation
    return orjson.dumps(event)


def test_json_and_arrow_records_decode_the_correlation_id() -> None:
    values = [
        cloudevent("1", "order.created", "o1", "2026-11-29T16:00:00Z", "c1"),
        cloudevent("2", "payment.captured", "p9", "2026-11-29T16:00:01Z", None),
    ]
    frame, rejected = decode_cloudevents_lenient(values, {"amount": "float"}, correlation=True)
    assert rejected == []
    assert with_window_key(frame, "correlation_id").get_column("key").to_list() == ["c1", None]
    plain, _ = decode_cloudevents_lenient(values, {"amount": "float"})
    assert "correlation_id" not in plain.columns  # only decoded when a pipeline keys by it
    empty, _ = decode_cloudevents_lenient([], {}, correlation=True)
    assert "correlation_id" in empty.columns
    batch = pl.DataFrame(
        {
            "event_type": ["order.created"],
            "source_capability": ["s"],
            "aggregate_id": ["o1"],
            "aggregate_type": ["Order"],
            "event_time": [1000],
            "correlation_id": ["c7"],
        }
    )
    [(_, value)] = to_batches(
        batch, tenant_id="t", stream_id="s", user_id="u", partitions=1, now_ms=0, batch_id="b"
    )
    arrow = decode_batch(value, {}, correlation=True)
    assert arrow.get_column("correlation_id").to_list() == ["c7"]


def test_a_join_on_correlation_id_pairs_different_aggregates() -> None:
    spec = PipelineSpec.from_data(
        {
            "pipeline_name": "checkout",
            "source_stream": "checkout",
            "key": "correlation_id",
            "fields": {"amount": "float"},
            "join": {
                "left": {"event_types": ["order.created"]},
                "right": {"event_types": ["payment.*"]},
                "after_ms": 5_000,
            },
        }
    )
    assert (spec.key_field, spec.key_type) == (None, "str")
    values = [
        cloudevent("1", "order.created", "o1", "2026-11-29T16:00:00Z", "c1"),
        cloudevent("2", "payment.captured", "p9", "2026-11-29T16:00:01Z", "c1"),
        cloudevent("3", "payment.captured", "p8", "2026-11-29T16:00:01Z", "c2"),
    ]
    frame, _ = decode_cloudevents_lenient(values, spec.fields, correlation=True)
    keyed = with_window_key(frame, spec.key)
    out = build_stage(spec).process([keyed], [None])
    assert [(r["key"], r["left_event_id"], r["right_event_id"]) for r in out.results] == [
        ("c1", "1", "2")
    ]
