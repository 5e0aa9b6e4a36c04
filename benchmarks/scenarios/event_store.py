"""Scenario event-store: what the indexes buy and cost. N events (config.event_store_events:
1,000 aggregates, 10 event types, 100 correlation ids) go in as Arrow-batched records; then

- indexing: seconds from the last broker ack until the indexer has written every event, and
  Redis memory per million events (used_memory before and after);
- by id: GET /api/v1/events/{id} latency (p50/p95 over random ids), against a stock
  confluent-kafka consumer that reads the topic from the start, decodes each record (JSON or
  Arrow IPC) and stops at the id (a few lookups: each one reads on average half the topic);
- a filtered query (one aggregate, ~N/1000 events, paged with limit 1000) against the same
  consumer reading the whole topic and filtering.
"""

from __future__ import annotations

import io
import random
import time
import uuid
from typing import Any

import httpx
import orjson
import polars as pl
import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition
from redis import Redis

from benchmarks.measure import Runs, Sample, Target, percentile, ratio
from benchmarks.pipeline_run import create_stream
from benchmarks.scenario import Context, ScenarioResult
from cluster import naming
from cluster.kafka.topics import TopicAdmin

FRAME = 50_000
LOOKUPS = 300
STOCK_LOOKUPS = 3
AGGREGATES, TYPES, CORRELATIONS = 1_000, 10, 100


def run(ctx: Context) -> ScenarioResult:
    n = ctx.config.event_store_events
    result = ScenarioResult("event-store", f"Event store over {n:,} events: by id and a query")
    query_runs = Runs("event store query (HTTP)", "POST /api/v1/events/query, one aggregate")
    stock_runs = Runs("stock consumer, read and filter", "confluent-kafka from offset 0")
    result.systems = [query_runs, stock_runs]
    try:
        _measure(ctx, n, result, query_runs, stock_runs)
    except Exception as exc:
        result.status = "failed"
        result.notes.append(f"failed: {exc}")
        ctx.progress(f"event-store FAILED: {exc}")
    return result


def _frame(start: int, count: int, base_ms: int) -> pl.DataFrame:
    i = pl.int_range(start, start + count, eager=True)
    return pl.DataFrame(
        {
            "event_id": "ev-" + i.cast(pl.String),
            "event_type": "type." + (i % TYPES).cast(pl.String),
            "source_capability": pl.repeat("bench", count, eager=True),
            "aggregate_id": "agg-" + (i % AGGREGATES).cast(pl.String),
            "aggregate_type": pl.repeat("Account", count, eager=True),
            "correlation_id": "corr-" + (i % CORRELATIONS).cast(pl.String),
            "event_time": base_ms + i,
            "amount": (i % 97).cast(pl.Float64),
        }
    )


def _ipc(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    table = frame.to_arrow()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _measure(
    ctx: Context, n: int, result: ScenarioResult, query_runs: Runs, stock_runs: Runs
) -> None:
    settings = ctx.bench.settings
    redis = Redis.from_url(settings.redis)
    stream_id, topic = create_stream(ctx.http, f"es-{uuid.uuid4().hex[:8]}", ctx.config.partitions)
    memory_before = int(redis.info("memory")["used_memory"])
    base_ms = int(time.time() * 1000) - n
    ctx.progress(f"event-store: publishing {n:,} events ...")
    for start in range(0, n, FRAME):
        answer = ctx.http.post(
            "/api/v1/events/arrow",
            params={"stream_id": stream_id},
            content=_ipc(_frame(start, min(FRAME, n - start), base_ms)),
            headers={"content-type": "application/vnd.apache.arrow.stream"},
            timeout=300,
        )
        answer.raise_for_status()
    acked = time.monotonic()
    marks = TopicAdmin(settings).watermarks(topic)
    progress_key = naming.event_index_key(stream_id, "progress")
    deadline = acked + 1800
    while time.monotonic() < deadline:
        done = {int(p): int(o) for p, o in redis.hgetall(progress_key).items()}
        if all(done.get(p, 0) >= high for p, (_, high) in marks.items() if high):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("the indexer did not catch up within 30 minutes")
    index_s = time.monotonic() - acked
    per_million_mb = (int(redis.info("memory")["used_memory"]) - memory_before) / n * 1e6 / 2**20
    ctx.progress(f"event-store: indexed in {index_s:.1f}s after the last ack")

    rng = random.Random(7)
    by_id_ms = []
    for _ in range(LOOKUPS):
        began = time.perf_counter()
        answer = ctx.http.get(f"/api/v1/events/ev-{rng.randrange(n)}")
        answer.raise_for_status()
        by_id_ms.append((time.perf_counter() - began) * 1000)
    stock_ms = [
        _stock(settings.kafka_bootstrap, topic, "event_id", f"ev-{rng.randrange(n)}")[0] * 1000
        for _ in range(STOCK_LOOKUPS)
    ]

    wanted = "agg-7"
    for trial in range(1, ctx.config.trials + 1):
        began = time.perf_counter()
        matched = _query_all(ctx.http, stream_id, wanted)
        query_runs.add(Sample(matched, time.perf_counter() - began, 0.0, 0))
        seconds, found = _stock(settings.kafka_bootstrap, topic, "aggregate_id", wanted, stop=False)
        stock_runs.add(Sample(found, seconds, 0.0, 0))
        if found != matched:
            query_runs.failures.append(f"trial {trial}: {matched} events, the topic has {found}")
        ctx.progress(
            f"event-store, trial {trial}: query {matched} in {query_runs.samples[-1].seconds:.2f}s"
        )
    result.latencies_ms["by id (HTTP GET)"] = _summary(by_id_ms)
    result.latencies_ms["by id (stock consumer scan)"] = _summary(stock_ms)
    result.ratios = {
        "stock scan / event store, by id p50": ratio(
            percentile(stock_ms, 0.5), percentile(by_id_ms, 0.5)
        ),
        "stock scan / event store, one aggregate": ratio(
            stock_runs.median_seconds(), query_runs.median_seconds()
        ),
    }
    result.extra = {
        "events": n,
        "index_catch_up_s": index_s,
        "redis_mb_per_million_events": per_million_mb,
    }
    each = per_million_mb * 2**20 / 1e6
    result.notes.append(
        f"index cost: {per_million_mb:,.0f} MB of Redis per million events (~{each:,.0f} bytes "
        f"each, the stored CloudEvent included); caught up {index_s:.1f}s after the last ack"
    )
    result.targets = [
        Target(
            "by-id lookup p95",
            "<= 10 ms",
            percentile(by_id_ms, 0.95),
            10.0 + 1e-9,
            higher_is_better=False,
            unit="ms",
        )
    ]


def _summary(ms: list[float]) -> dict[str, float | int | None]:
    return {
        "samples": len(ms),
        "p50": percentile(ms, 0.5),
        "p95": percentile(ms, 0.95),
        "max": max(ms) if ms else None,
    }


def _query_all(http: httpx.Client, stream_id: str, aggregate_id: str) -> int:
    body: dict[str, Any] = {
        "stream_id": stream_id,
        "aggregate_type": "Account",
        "aggregate_id": aggregate_id,
        "limit": 1000,
    }
    count = 0
    while True:
        answer = http.post("/api/v1/events/query", json=body, timeout=300)
        answer.raise_for_status()
        page = answer.json()
        count += len(page["events"])
        if page["next_cursor"] is None:
            return count
        body["cursor"] = page["next_cursor"]


JSON_NAMES = {"event_id": "id", "aggregate_id": "aggregateid"}


def _stock(
    bootstrap: str, topic: str, column: str, value: str, stop: bool = True
) -> tuple[float, int]:
    """A stock consumer from offset 0 that decodes every record (an Arrow-batched one into
    Polars, filtered vectorised: the reference's best case) and counts `column == value`."""
    began = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        open_parts, found = set(meta.partitions), 0
        while open_parts:
            for msg in consumer.consume(num_messages=500, timeout=0.1):
                if msg.error() is not None:
                    open_parts.discard(msg.partition())
                    continue
                if ("esb-format", b"arrow-batch-v1") in (msg.headers() or []):
                    frame = pl.read_ipc_stream(io.BytesIO(msg.value() or b""), columns=[column])
                    found += frame.filter(pl.col(column) == value).height
                else:
                    found += orjson.loads(msg.value() or b"{}").get(JSON_NAMES[column]) == value
                if stop and found:
                    return time.perf_counter() - began, found
        return time.perf_counter() - began, found
    finally:
        consumer.close()
