"""A stream with event_store: false: the indexer reads past its records, the event store's reads
and appends on it answer 409 with the fix, and turning it on again warns about the rebuild."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition
from redis import Redis

from cluster import naming
from cluster.kafka.clients import committed_offsets, new_consumer
from cluster.models.streams import StreamConfig, StreamRecord
from cluster.services.event_store import EventStoreService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings
from tests.integration.conftest import create_stream
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration
TENANT = "acme"


def _publish(http: httpx.Client, stream_id: str, event_id: str) -> None:
    event = {
        "event_type": "metric.sampled",
        "source_capability": "tests",
        "aggregate_id": "host-1",
        "aggregate_type": "Host",
        "event_id": event_id,
    }
    answer = http.post(
        "/api/v1/events/batch",
        json={"stream_id": stream_id, "tenant_id": TENANT, "events": [event]},
    )
    assert answer.status_code == 200, answer.text


def _indexer_passed(stack: Settings, topic: str, partitions: int) -> bool:
    """The indexer's group has committed past every record of `topic`."""
    generation = int(Redis.from_url(stack.redis).get(naming.INDEXER_GENERATION) or 0)
    consumer = new_consumer(stack, naming.indexer_group(generation))
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        done = {tp.partition: tp.offset for tp in committed_offsets(consumer, parts)}
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in done}
    finally:
        consumer.close()
    return all(done[p] >= high for p, high in highs.items() if high > 0)


def _refused(answer: httpx.Response) -> Any:
    assert answer.status_code == 409, answer.text
    assert "event_store: false" in answer.json()["detail"], answer.text
    return True


async def test_a_stream_out_of_the_event_store_is_read_past_and_refused(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    plain = create_stream(http, TENANT, f"metrics-{unique}", partitions=2, event_store=False)
    _publish(http, plain["stream_id"], f"m-{unique}")
    wait_for(lambda: _indexer_passed(stack, plain["kafka_topic"], 2), "the indexer to read past it")
    assert http.get(f"/api/v1/events/m-{unique}").status_code == 404  # never indexed
    _refused(http.get(f"/api/v1/events/m-{unique}", params={"stream_id": plain["stream_id"]}))
    _refused(http.post("/api/v1/events/query", json={"stream_id": plain["stream_id"]}))
    append = {
        "stream_id": plain["stream_id"],
        "expected_version": "no_stream",
        "events": [{"type": "gauge.set", "payload": {"v": 1}}],
    }
    _refused(http.post(f"/api/v1/aggregates/Gauge/g-{unique}/events", json=append))

    record = http.get(f"/api/v1/streams/{plain['stream_id']}").json()
    # A rebuild waits for the indexed streams only: this one never has index progress.
    assert await EventStoreService(stack).wait_indexed([StreamRecord(**record)], deadline_s=5)
    config = StreamConfig(**{k: record[k] for k in StreamConfig.model_fields} | {"schemas": {}})
    turned_on = await EventStreamingService(stack).apply_stream(
        config.model_copy(update={"event_store": True}), TENANT, "tests"
    )
    assert turned_on.changes == ["event_store: false -> true"]
    assert any("rebuild-index" in w for w in turned_on.warnings)
