"""A partition's Arrow batch over the record limit is cut into several records, each within it,
holding every event once and in order; one event over the limit is refused."""

from __future__ import annotations

import secrets

import polars as pl
import pytest

from pipelines.arrow_batch import read_batch, to_batches
from pipelines.envelope import partition_for
from pipelines.errors import PayloadTooLarge


def frame(n: int, blob_bytes: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_type": ["order.placed"] * n,
            "source_capability": ["shop"] * n,
            "aggregate_id": [f"k{i % 7}" for i in range(n)],
            "aggregate_type": ["Order"] * n,
            "event_id": [f"e{i}" for i in range(n)],
            "event_time": list(range(n)),
            # random hex: lz4 cannot shrink it, so record sizes follow the event count
            "blob": [secrets.token_hex(blob_bytes // 2) for _ in range(n)],
        }
    )


def split(source: pl.DataFrame, max_bytes: int) -> list[tuple[int, bytes]]:
    return to_batches(
        source,
        tenant_id="t",
        stream_id="s",
        user_id="u",
        partitions=3,
        now_ms=0,
        batch_id="b",
        max_bytes=max_bytes,
    )


@pytest.mark.parametrize("blob_bytes", [100, 2_000])
def test_records_stay_within_the_limit_and_keep_every_event_in_order(blob_bytes: int) -> None:
    source = frame(3_000, blob_bytes)
    max_bytes = 40_000
    records = split(source, max_bytes)
    assert all(len(value) <= max_bytes for _, value in records)
    assert len(records) > 3  # the limit did cut partitions into several records
    for partition in {p for p, _ in records}:
        ids = [
            i
            for p, value in records
            if p == partition
            for i in read_batch(value).get_column("event_id").to_list()
        ]
        placed = [partition_for(k, 3) == partition for k in source["aggregate_id"]]
        assert ids == source.filter(pl.Series(placed))["event_id"].to_list()


def test_a_partition_within_the_limit_stays_one_record() -> None:
    assert len(split(frame(30, 100), 1_000_000)) <= 3


def test_one_event_over_the_limit_is_refused() -> None:
    with pytest.raises(PayloadTooLarge, match="MAX_EVENT_BYTES"):
        split(frame(5, 50_000), 40_000)
