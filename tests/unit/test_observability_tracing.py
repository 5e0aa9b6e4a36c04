"""One trace from publish to webhook delivery, recorded by an in-memory exporter: the publish
span's `traceparent` goes out with every record of the publish (a Kafka header), and the
dispatcher's delivery span continues it. The broker and the receiver are fakes (unit level)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors.delivery import Delivery, Pending
from actors.dispatch_cycle import Cycle
from cluster.kafka.clients import Delivery as Acked
from cluster.models.streams import StreamRecord
from cluster.models.subscriptions import SubscriptionConfig, SubscriptionRecord
from cluster.observability import tracing
from cluster.security.webhooks import Outcome
from cluster.services.publishing import EventPublishingService
from cluster.settings import Settings
from pipelines.envelope import EventIn

STREAM = StreamRecord(
    stream_name="orders",
    topic_name="orders",
    source_capability="tests",
    stream_id="st1",
    tenant_id="acme",
    kafka_topic="esb.acme.orders",
    created_by="t",
    created_at="2026-01-01T00:00:00Z",
    replication_factor=1,
    requested_replication_factor=1,
)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes, list[Any]]] = []

    async def send_many(self, topic: str, records: Any, headers: Any = None, **_: Any) -> Any:
        self.sent += [(key, value, list(headers or [])) for key, value in records]
        return [Acked(partition=0, offset=i) for i in range(len(records))]


class FakeStreams:
    async def resolve(self, stream_id: str, tenant_id: str) -> StreamRecord:
        return STREAM

    async def count_published(self, stream_id: str, n: int) -> None:
        return None


class FakeBus:
    def __init__(self) -> None:
        self.settings = Settings()
        self.streams = FakeStreams()
        self.producer = FakeProducer()

    def cipher(self, stream: StreamRecord) -> None:
        return None


class FakeMessage:
    def __init__(self, value: bytes, headers: list[Any]) -> None:
        self._value, self._headers = value, headers

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[Any]:
        return self._headers

    def key(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def topic(self) -> str:
        return STREAM.kafka_topic


class FakeSender:
    async def send(self, url: str, secret: str, webhook_id: str, body: bytes) -> Outcome:
        return Outcome(ok=True, status=200)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter)
    yield exporter
    tracing.use_exporter(None)


def _event(i: int) -> EventIn:
    return EventIn(
        event_type="order.created",
        source_capability="tests",
        aggregate_id=f"o{i}",
        aggregate_type="Order",
        payload={"n": i},
    )


async def test_one_trace_runs_from_publish_to_webhook_delivery(
    spans: InMemorySpanExporter,
) -> None:
    bus = FakeBus()
    publishing = EventPublishingService(bus=bus)  # type: ignore[arg-type]
    receipt = await publishing.publish_events([_event(0), _event(1)], "st1", "acme", "u1")
    assert receipt.published == 2
    headers = [h for _, _, hs in bus.producer.sent for h in hs if h[0] == "traceparent"]
    assert len(headers) == 2 and headers[0] == headers[1]  # one span per publish, every record

    record = SubscriptionRecord(
        subscription_id="s1",
        tenant_id="acme",
        config=SubscriptionConfig(
            subscription_name="notify",
            stream_id="st1",
            consumer_group_id="g",
            consumer_name="n",
            webhook_url="https://hooks.example.com/esb",
        ),
        stream_id="st1",
        kafka_topic=STREAM.kafka_topic,
        partitions=1,
        group_id="esb.acme.g",
        dead_letter_topic="esb.acme.sub.s1.dlq",
        retry_topic="esb.acme.sub.s1.retry",
        secret="whsec_x",
        created_by="t",
        created_at="2026-01-01T00:00:00Z",
    )
    delivery = Delivery(Settings(), record, fakeredis.FakeRedis(), disable=lambda why: None)
    delivery.sender = FakeSender()  # type: ignore[assignment]
    _key, value, record_headers = bus.producer.sent[0]
    message = FakeMessage(value, record_headers)
    pending = Pending(msg=message, event={"id": "e"}, webhook_id="w1")  # type: ignore[arg-type]
    assert await delivery.attempt(pending, Cycle())

    finished = {s.name: s for s in spans.get_finished_spans()}
    assert set(finished) == {"publish", "webhook.deliver"}
    publish, deliver = finished["publish"], finished["webhook.deliver"]
    assert publish.context.trace_id == deliver.context.trace_id
    assert deliver.parent is not None and deliver.parent.span_id == publish.context.span_id
    assert publish.attributes["esb.stream_id"] == "st1"


async def test_no_tracing_no_header() -> None:
    bus = FakeBus()
    publishing = EventPublishingService(bus=bus)  # type: ignore[arg-type]
    await publishing.publish_events([_event(0)], "st1", "acme", "u1")
    assert all(h[0] != "traceparent" for _, _, hs in bus.producer.sent for h in hs)
