"""Encryption at rest on the real broker, Redis and Ray: a pipeline over an encrypted stream
computes the plaintext windows, and dead-letters a tampered record and a late event without
putting plaintext in Redis."""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl
import pytest
from confluent_kafka import Producer

from cluster.services.processing import StreamProcessingService
from cluster.services.publishing import EventPublishingService
from cluster.settings import Settings
from pipelines.envelope import EventIn, partition_for
from pipelines.spec import PipelineSpec
from tests.integration.conftest import read_topic
from tests.integration.encryption_helpers import (
    USER,
    assert_not_in_redis,
    canary,
    encrypted_stream,
    eventually,
)

pytestmark = pytest.mark.integration

WINDOW_MS = 1_000
BASE_MS = 1_800_000_000_000


def pipeline_events(secret: str, n: int) -> list[EventIn]:
    return [
        EventIn(
            event_type="order.placed" if i % 5 else "user.seen",
            source_capability="shop",
            aggregate_id=f"k{i % 7}",
            aggregate_type="Order",
            event_id=f"o-{i}",
            event_time=BASE_MS + i * 97,
            payload={"amount": i % 50 + 1, "note": secret},
        )
        for i in range(n)
    ]


def expected_windows(events: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[int, int]]:
    totals: dict[tuple[str, int], tuple[int, int]] = {}
    for e in events:
        if e["event_type"].startswith("order."):
            window = (e["aggregate_id"], e["event_time"] - e["event_time"] % WINDOW_MS)
            count, total = totals.get(window, (0, 0))
            totals[window] = (count + 1, total + e["amount"])
    return totals


async def window_results(
    service: StreamProcessingService, pipeline_id: str, tenant: str
) -> dict[tuple[str, int], tuple[int, int]]:
    found: dict[tuple[str, int], tuple[int, int]] = {}
    offset: int | None = 0
    while offset is not None:
        page = await service.results(pipeline_id, tenant, limit=1000, offset=offset)
        for r in page["results"]:
            if not r["key"].startswith("sentinel"):
                found[(r["key"], r["window_start_ms"])] = (r["orders"], r["revenue"])
        offset = page["next_offset"]
    return found


async def test_pipeline_over_an_encrypted_stream_computes_the_plaintext_windows(
    stack: Settings, unique: str
) -> None:
    tenant, secret = f"crypt-{unique}", canary()
    stream = await encrypted_stream(stack, tenant, f"orders-{unique}", partitions=2)
    publisher = EventPublishingService(stack)
    published = pipeline_events(secret, 300)
    await publisher.publish_events(published, stream.stream_id, tenant, USER)
    arrow = [
        {"event_type": "order.placed", "aggregate_id": f"k{i % 7}", "event_time": t, "amount": i}
        for i, t in enumerate(range(BASE_MS + 50, BASE_MS + 30_000, 1_500))
    ]
    frame = pl.DataFrame(arrow).with_columns(
        pl.lit("shop").alias("source_capability"),
        pl.lit("Order").alias("aggregate_type"),
        pl.lit(secret).alias("note"),
    )
    await publisher.publish_arrow(frame, stream.stream_id, tenant, USER)
    [first, *_] = read_topic(stack, stream.kafka_topic, expected=len(published) + len(arrow))
    tampered = orjson.loads(first.value())
    tampered["data_base64"] = tampered["data_base64"][:-4] + "AAA="
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    landed: list[int] = []
    producer.produce(
        stream.kafka_topic,
        orjson.dumps(tampered),
        first.key(),
        first.partition(),
        on_delivery=lambda _err, msg: landed.append(msg.offset() or 0),
    )
    assert producer.flush(30) == 0 and len(landed) == 1

    spec = PipelineSpec.model_validate(
        {
            "pipeline_name": "totals",
            "source_stream": stream.stream_id,
            "event_types": ["order.*"],
            "fields": {"amount": "int", "note": "str"},
            "window": {"type": "tumbling", "size_ms": WINDOW_MS},
            "allowed_lateness_ms": 60_000,
            "late_policy": "dead_letter",
            "aggregations": [
                {"name": "orders", "op": "count"},
                {"name": "revenue", "op": "sum", "field": "amount"},
            ],
        }
    )
    processing = StreamProcessingService(stack)
    pipeline = await processing.submit_pipeline(spec, tenant, USER, owners=1)
    try:
        # One far-future event per partition closes every window.
        sentinels = [
            next(f"sentinel-{i}" for i in range(100) if partition_for(f"sentinel-{i}", 2) == p)
            for p in range(2)
        ]
        closing = [
            EventIn(
                event_type="order.tick",
                source_capability="shop",
                aggregate_id=key,
                aggregate_type="Order",
                event_time=BASE_MS + 10_000_000,
                payload={"amount": 0},
            )
            for key in sentinels
        ]
        await publisher.publish_events(closing, stream.stream_id, tenant, USER)
        inputs = [{**e.model_dump(), **e.payload} for e in published] + arrow
        expected = expected_windows(inputs)
        await eventually(
            lambda: _equal(window_results(processing, pipeline.pipeline_id, tenant), expected),
            "the encrypted pipeline's windows",
            deadline_s=300,
        )

        # A late event is dead-lettered without its payload: no plaintext lands in Redis.
        late = pipeline_events(secret, 2)[1].model_copy(
            update={"aggregate_id": sentinels[0], "event_id": f"late-{unique}"}
        )
        await publisher.publish_events([late], stream.stream_id, tenant, USER)
        dead = await eventually(
            lambda: _reasons(processing, pipeline.pipeline_id, tenant, {"late", "undecryptable"}),
            "the late and the tampered record dead-lettered",
        )
        assert dead["undecryptable"]["offset"] == landed[0]
        assert dead["undecryptable"]["error"].startswith("DecryptionFailed")
        assert "note" not in dead["late"] and "amount" not in dead["late"]
        status = await processing.status(pipeline.pipeline_id, tenant)
        assert status["progress"]["undecryptable"] == 1
        assert await window_results(processing, pipeline.pipeline_id, tenant) == expected
        assert_not_in_redis(stack, secret)
    finally:
        await processing.stop_pipeline(pipeline.pipeline_id, tenant)


async def _equal(found: Any, expected: Any) -> bool:
    return bool(await found == expected)


async def _reasons(
    service: StreamProcessingService, pipeline_id: str, tenant: str, wanted: set[str]
) -> dict[str, dict[str, Any]] | None:
    found = {d["reason"]: d for d in await service.dead_letters(pipeline_id, tenant)}
    return found if wanted <= found.keys() else None
