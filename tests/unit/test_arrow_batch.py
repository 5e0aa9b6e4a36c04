"""The Arrow-batched record form: partitioning, decoding and read-back agree with the JSON form."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import polars as pl
import pytest

from cluster.errors import InvalidInput
from pipelines.arrow_batch import decode_batch, to_batches, to_cloudevents
from pipelines.decode import decode_cloudevents
from pipelines.envelope import EventIn, encode, partition_for, to_cloudevent

FRAME = pl.DataFrame(
    {
        "event_type": ["order.placed", "order.paid", "order.placed", "order.placed"],
        "source_capability": ["shop"] * 4,
        "aggregate_id": ["k1", "k2", "k3", "k1"],
        "aggregate_type": ["Order"] * 4,
        "event_id": ["e1", "e2", "e3", "e4"],
        "event_time": [1_000, 2_500, 3_000, 4_250],
        "amount": [1.5, 2.0, None, 4.0],
        "customer": ["a", "b", "c", "a"],
    }
)


def batches(frame: pl.DataFrame = FRAME, partitions: int = 3) -> list[tuple[int, bytes]]:
    return to_batches(
        frame,
        tenant_id="t",
        stream_id="s",
        user_id="u",
        partitions=partitions,
        now_ms=99,
        batch_id="b",
    )


def test_each_event_lands_where_its_key_would_as_a_single_record() -> None:
    for partition, value in batches():
        keys = decode_batch(value).get_column("partition_key").to_list()
        assert {partition_for(k, 3) for k in keys} == {partition}
    assert sum(decode_batch(v).height for _, v in batches()) == 4


def test_decoded_batch_equals_the_json_decoder_on_the_same_events() -> None:
    fields = {"amount": "float", "customer": "str"}
    from_arrow = pl.concat([decode_batch(v, fields) for _, v in batches(partitions=1)])
    as_json = [
        encode(
            to_cloudevent(
                EventIn(
                    event_type=r["event_type"],
                    source_capability="shop",
                    aggregate_id=r["aggregate_id"],
                    aggregate_type="Order",
                    event_time=r["event_time"],
                    payload={"amount": r["amount"], "customer": r["customer"]},
                ),
                event_id=r["event_id"],
                tenant_id="t",
                stream_id="s",
                user_id="u",
            )
        )
        for r in FRAME.to_dicts()
    ]
    from_json = decode_cloudevents(as_json, fields)
    assert from_arrow.drop("partition_key").equals(from_json)


def test_read_back_gives_the_cloudevents_the_json_form_carries() -> None:
    [(_, value)] = batches(partitions=1)
    first = to_cloudevents(value)[0]
    expected = orjson.loads(
        encode(
            to_cloudevent(
                EventIn(
                    event_type="order.placed",
                    source_capability="shop",
                    aggregate_id="k1",
                    aggregate_type="Order",
                    event_time=1_000,
                    payload={"amount": 1.5, "customer": "a"},
                ),
                event_id="e1",
                tenant_id="t",
                stream_id="s",
                user_id="u",
            )
        )
    )
    assert first == expected


def test_ids_and_times_default_and_zoned_timestamps_are_accepted() -> None:
    frame = FRAME.drop("event_id", "event_time").with_columns(
        event_time=pl.lit(datetime(2026, 1, 1, tzinfo=UTC))
    )
    decoded = pl.concat([decode_batch(v) for _, v in batches(frame)])
    assert decoded.get_column("event_id").n_unique() == 4
    assert decoded.get_column("event_time_ms").unique().to_list() == [1_767_225_600_000]
    no_time = pl.concat([decode_batch(v) for _, v in batches(FRAME.drop("event_time"))])
    assert no_time.get_column("event_time_ms").unique().to_list() == [99]


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (FRAME.drop("aggregate_type"), "aggregate_type"),
        (FRAME.with_columns(aggregate_id=pl.lit(None, pl.String)), "nulls"),
        (FRAME.with_columns(tenant_id=pl.lit("x")), "clash"),
        (FRAME.with_columns(event_time=pl.lit(datetime(2026, 1, 1))), "time zone"),
        (FRAME.with_columns(event_time=pl.lit("soon")), "epoch milliseconds"),
    ],
)
def test_bad_frames_are_refused(frame: pl.DataFrame, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        batches(frame)
