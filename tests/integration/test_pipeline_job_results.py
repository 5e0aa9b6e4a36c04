"""Pipelines on the real broker, Redis and Ray: results equal a brute-force oracle over the events
read back from Kafka, with duplicates, a payload key, and Arrow-batched records among JSON ones."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import httpx
import orjson
import polars as pl
import pytest
from confluent_kafka import Producer
from redis import Redis

from actors.partition_owner import PartitionOwner
from cluster.services.bus import shared_bus
from cluster.services.publishing import ArrowReceipt, EventPublishingService
from cluster.settings import Settings
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from tests.integration.conftest import create_stream, read_topic
from tests.integration.pipeline_helpers import (
    TENANT,
    WINDOW_MS,
    caught_up,
    close_all_windows,
    make_events,
    oracle,
    owned_without_job,
    publish,
    results_of,
    spec_for,
    submit,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def replay_duplicates(settings: Settings, topic: str, count: int) -> int:
    """Re-produce records already on the topic, as an at-least-once producer would; answers how
    many of them the pipeline's event-type filter lets through."""
    records = read_topic(settings, topic, expected=count)[:count]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for r in records:
        producer.produce(topic, r.value(), r.key(), partition=r.partition())
    assert producer.flush(30) == 0
    return sum(orjson.loads(r.value())["type"].startswith("order.") for r in records)


def test_pipeline_job_results_equal_the_oracle(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"orders-{unique}", partitions=4)
    publish(http, stream["stream_id"], make_events(3_000, seed=1))
    replayed = replay_duplicates(stack, stream["kafka_topic"], 300)
    pipeline_id = submit(http, stream["stream_id"], owners=2)
    publish(http, stream["stream_id"], make_events(2_000, seed=2))
    close_all_windows(stack, stream["kafka_topic"], 4)

    expected = oracle(stack, stream["kafka_topic"])
    wait_for(lambda: caught_up(http, pipeline_id), "the pipeline to catch up")
    assert wait_for(lambda: results_of(http, pipeline_id) == expected or None, "results") is True

    status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    # Replayed records count as duplicates, or as late once their window was closed and purged.
    assert status["progress"]["duplicates"] + status["progress"]["late_dropped"] == replayed
    assert status["progress"]["windows_emitted"] >= len(expected)
    assert {p["lag"] for p in status["partitions_progress"]} == {0}

    by_key = http.get(f"/api/v1/pipelines/{pipeline_id}/results", params={"key": "k3"}).json()
    assert {r["key"] for r in by_key["results"]} == {"k3"}
    latest = http.get(f"/api/v1/pipelines/{pipeline_id}/results", params={"latest": 5}).json()
    ends = [r["window_end_ms"] for r in latest["results"]]
    assert len(ends) == 5 and ends == sorted(ends, reverse=True)

    assert http.delete(f"/api/v1/pipelines/{pipeline_id}").status_code == 200
    assert http.get(f"/api/v1/pipelines/{pipeline_id}").json()["state"] == "STOPPED"


def test_payload_key_needs_events_partitioned_by_it(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"bykey-{unique}", partitions=3)
    events = make_events(600, seed=9)
    for n, e in enumerate(events):
        e["payload"]["customer"] = f"c{n % 7}"
        if n % 50 != 1:  # every 50th event keeps the default partition key: misrouted
            e["partition_key"] = e["payload"]["customer"]
    publish(http, stream["stream_id"], events)
    close_all_windows(stack, stream["kafka_topic"], 3)
    spec = spec_for(
        stream["stream_id"], key="payload.customer", fields={"amount": "int", "customer": "str"}
    )
    record = owned_without_job(stream, f"bykey{unique}", spec, 3)
    owner = PartitionOwner(stack, record, [0, 1, 2])
    redis = Redis.from_url(stack.redis)
    base = f"esb:pl:{record.pipeline_id}"
    wait_for(
        lambda: (
            owner.step(timeout_s=1.0) == 0
            and sum(int(redis.hget(f"{base}:progress:{p}", "records_in") or 0) for p in range(3))
            == 603
        ),
        "the owner to read everything",
    )
    owner.close()

    routed = [e for n, e in enumerate(events) if n % 50 != 1 and e["event_type"] != "user.seen"]
    expected: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for e in routed:
        window = (e["payload"]["customer"], e["event_time"] - e["event_time"] % WINDOW_MS)
        expected[window][0] += 1
        expected[window][1] += e["payload"]["amount"]
    stored = {}
    for raw in redis.hvals(f"{base}:res"):
        r = orjson.loads(raw)
        if r["key"] != "sentinel":
            stored[(r["key"], r["window_start_ms"])] = [r["orders"], r["revenue"]]
    assert stored == dict(expected)
    dead = [orjson.loads(d) for d in redis.lrange(f"{base}:dead", 0, -1)]
    misrouted = [e for n, e in enumerate(events) if n % 50 == 1 and e["event_type"] != "user.seen"]
    assert misrouted  # the generator must produce some
    assert len(dead) == len(misrouted) and all(d["reason"].startswith("misrouted") for d in dead)


def test_arrow_batched_and_json_events_window_together(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"arrow-{unique}", partitions=3)
    publish(http, stream["stream_id"], make_events(1_000, seed=10))
    rows = make_events(3_000, seed=11)
    frame = pl.DataFrame(
        [{**{k: v for k, v in e.items() if k != "payload"}, **e["payload"]} for e in rows]
    )

    async def publish_arrow() -> ArrowReceipt:
        try:
            return await EventPublishingService(stack).publish_arrow(
                frame, stream["stream_id"], TENANT, "t"
            )
        finally:
            await shared_bus(stack).close()

    receipt = asyncio.run(publish_arrow())
    assert receipt.events == 3_000 and len(receipt.records) <= 3
    close_all_windows(stack, stream["kafka_topic"], 3)

    placed: dict[str, set[int]] = defaultdict(set)  # key -> partitions, over both forms
    for record in read_topic(stack, stream["kafka_topic"], expected=1_000 + len(receipt.records)):
        if is_arrow_batch(record.headers()):
            keys = [e["aggregateid"] for e in to_cloudevents(record.value())]
        else:
            keys = [orjson.loads(record.value())["aggregateid"]]
        for key in keys:
            placed[key].add(record.partition())
    assert all(len(parts) == 1 for key, parts in placed.items() if key != "sentinel")

    expected = oracle(stack, stream["kafka_topic"])
    record = owned_without_job(stream, f"arrow{unique}", spec_for(stream["stream_id"]), 3)
    owner = PartitionOwner(stack, record, [0, 1, 2])
    redis = Redis.from_url(stack.redis)
    base = f"esb:pl:{record.pipeline_id}"

    def stored() -> dict[tuple[str, int], tuple[int, int]]:
        docs = [orjson.loads(raw) for raw in redis.hvals(f"{base}:res")]
        return {
            (r["key"], r["window_start_ms"]): (r["orders"], r["revenue"])
            for r in docs
            if r["key"] != "sentinel"
        }

    wait_for(lambda: owner.step(timeout_s=1.0) == 0 and stored() == expected, "the results")
    owner.close()

    batched, cursor = [], None
    while True:  # read back: an Arrow-batched record is one entry carrying all its events
        params = {"limit": 400, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"/api/v1/streams/{stream['stream_id']}/events", params=params).json()
        batched += [e for e in page["events"] if e.get("format") == "arrow-batch-v1"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert sum(len(e["events"]) for e in batched) == 3_000
