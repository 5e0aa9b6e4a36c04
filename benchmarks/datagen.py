"""The benchmark workload: JSON CloudEvents (~250 bytes, 1,000 keys) pre-loaded straight into a
topic with a raw confluent-kafka producer (not over HTTP: loading is not what is measured), plus
the expected window results, computed from the generated columns, that every system must match.

Event times advance steadily (EVENTS_PER_WINDOW per 1 s window) from an hour ago, keys are random,
and each key lives on the partition the bus itself would pick (pipelines.envelope.partition_for),
so every partition is in time order and no event is late. The
Kafka record timestamp equals the event time, so Quix Streams can window by it without parsing JSON
(the cheapest path it offers); times are in the past because Kafka 4 rejects record timestamps more
than an hour ahead. One later sentinel per partition then closes every window.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from confluent_kafka import KafkaError, Producer

from cluster.kafka.clients import client_config
from cluster.settings import Settings
from pipelines.arrow_batch import partition_of
from pipelines.envelope import partition_for

WINDOW_MS = 1_000
EVENTS_PER_WINDOW = 50_000
SENTINEL_KEY = "sentinel"
SENTINEL_AFTER_MS = 1_800_000  # past every event of the largest workload, still in the past
TENANT = "bench"

_PIECES = (
    '{"specversion":"1.0","id":"',
    '","source":"/bench/shop","type":"order.placed","time":"',
    '","subject":"',
    '","datacontenttype":"application/json","data":{"amount":',
    '},"tenantid":"bench","aggregateid":"',
    '","aggregatetype":"Order"}',
)


@dataclass(frozen=True)
class Workload:
    events: pl.DataFrame  # id, key, time_ms, amount, partition
    partitions: int
    base_ms: int

    @property
    def count(self) -> int:
        return self.events.height

    def expected(self) -> pl.DataFrame:
        """The oracle: tumbling 1 s count and sum per key (sentinels excluded)."""
        return normalise(
            self.events.group_by(
                pl.col("key"), (pl.col("time_ms") // WINDOW_MS * WINDOW_MS).alias("window_start_ms")
            ).agg(pl.len().alias("orders"), pl.col("amount").sum().alias("revenue"))
        )


def normalise(results: pl.DataFrame) -> pl.DataFrame:
    """Results in one canonical shape and order, so systems compare with frame equality."""
    return (
        results.select(
            pl.col("key").cast(pl.String),
            pl.col("window_start_ms").cast(pl.Int64),
            pl.col("orders").cast(pl.Int64),
            pl.col("revenue").cast(pl.Int64),
        )
        .filter(~pl.col("key").str.starts_with(SENTINEL_KEY))
        .sort("key", "window_start_ms")
    )


def make_workload(
    count: int, partitions: int, keys: int = 1_000, seed: int = 7, base_ms: int | None = None
) -> Workload:
    """Deterministic for a given base_ms (default: an hour ago, on a window boundary)."""
    if base_ms is None:
        base_ms = (int(time.time() * 1000) - 3_600_000) // WINDOW_MS * WINDOW_MS
    rng = np.random.default_rng(seed)
    key_index = rng.integers(0, keys, count)
    events = pl.DataFrame(
        {
            "id": pl.int_range(0, count, eager=True).cast(pl.String).str.zfill(10),
            "key_index": key_index,
            "time_ms": base_ms + np.arange(count, dtype=np.int64) * WINDOW_MS // EVENTS_PER_WINDOW,
            "amount": rng.integers(1, 100, count),
        }
    ).with_columns(("k" + pl.col("key_index").cast(pl.String).str.zfill(4)).alias("key"))
    events = events.with_columns(
        partition_of(events.get_column("key"), partitions).cast(pl.Int32).alias("partition")
    )
    return Workload(events.drop("key_index"), partitions, base_ms)


def encode_values(events: pl.DataFrame) -> list[bytes]:
    """CloudEvents 1.0 structured JSON, one per row, built column-wise (no per-event json.dumps)."""
    time_text = pl.from_epoch(pl.col("time_ms"), time_unit="ms").dt.strftime(
        "%Y-%m-%dT%H:%M:%S%.3fZ"
    )
    parts = [
        pl.col("id"),
        time_text,
        pl.col("key"),
        pl.col("amount").cast(pl.String),
        pl.col("key"),
    ]
    pieces: list[pl.Expr] = []
    for literal, column in zip(_PIECES, [*parts, None], strict=True):
        pieces.append(pl.lit(literal))
        if column is not None:
            pieces.append(column)
    text = events.select(pl.concat_str(pieces).cast(pl.Binary).alias("v")).get_column("v")
    return text.to_list()


def sentinel_keys(partitions: int) -> dict[int, str]:
    """One key per partition (as partition_for places it), all starting with SENTINEL_KEY."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        key = f"{SENTINEL_KEY}-{n}"
        found.setdefault(partition_for(key, partitions), key)
        n += 1
    return dict(sorted(found.items()))


def sentinel_events(partitions: int, base_ms: int) -> pl.DataFrame:
    """One event per partition, later than every event: it closes all windows there."""
    keys = sentinel_keys(partitions)
    return pl.DataFrame(
        {
            "id": [f"sentinel-{p}" for p in keys],
            "time_ms": [base_ms + SENTINEL_AFTER_MS] * partitions,
            "amount": [0] * partitions,
            "key": list(keys.values()),
            "partition": list(keys),
        },
        schema={
            "id": pl.String,
            "time_ms": pl.Int64,
            "amount": pl.Int64,
            "key": pl.String,
            "partition": pl.Int32,
        },
    )


def preload(settings: Settings, topic: str, workload: Workload, chunk: int = 200_000) -> float:
    """Produce every event, then the sentinels; answers the seconds it took (flush included)."""
    frames = [workload.events, sentinel_events(workload.partitions, workload.base_ms)]
    parts = (
        frame.slice(start, chunk) for frame in frames for start in range(0, frame.height, chunk)
    )
    return produce_chunks(settings, topic, ((part, encode_values(part)) for part in parts))


def produce_chunks(
    settings: Settings, topic: str, chunks: Iterable[tuple[pl.DataFrame, list[bytes]]]
) -> float:
    """Produce each chunk's values (encoded lazily by the caller's iterator) to the chunk's
    `partition` with `time_ms` as the record timestamp and `key` as the key; answers the seconds
    it took, flush included. Raises if any record was not delivered."""
    producer = Producer(
        client_config(
            settings,
            **{
                "linger.ms": 50,
                "batch.size": 4_000_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "acks": "1",
            },
        )
    )
    errors: list[str] = []

    def report(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err.str())

    began = time.perf_counter()
    for part, values in chunks:
        _produce(producer, topic, part, values, report)
    if producer.flush(120) or errors:
        raise RuntimeError(f"pre-loading {topic} failed: {len(errors)} errors, e.g. {errors[:1]}")
    return time.perf_counter() - began


def _produce(
    producer: Producer, topic: str, part: pl.DataFrame, values: list[bytes], report: Any
) -> None:
    keys = part.get_column("key").to_list()
    parts = part.get_column("partition").to_list()
    times = part.get_column("time_ms").to_list()
    for value, key, partition, ts in zip(values, keys, parts, times, strict=True):
        while True:
            try:
                producer.produce(
                    topic,
                    value,
                    key.encode(),
                    partition=partition,
                    timestamp=ts,
                    on_delivery=report,
                )
                break
            except BufferError:
                producer.poll(0.05)
    producer.poll(0)
