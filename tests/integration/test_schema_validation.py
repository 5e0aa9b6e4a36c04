"""Validation on publish: a stream binds event types to schemas, and every publish path (one
event, a JSON batch, NDJSON, an Arrow IPC batch, the /arrow route, the SDK) refuses an invalid
payload with a 422 that names the event, the field and why; a batch with one invalid event
publishes none. Also the seed's /api/v1/schemas face over the same registry."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest

from cluster.errors import SchemaViolation
from cluster.services.bus import Bus
from cluster.services.publishing import EventPublishingService
from cluster.settings import Settings
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from pipelines.envelope import EventConfig
from tests.integration.conftest import create_stream, ipc_stream, read_topic
from tests.integration.schema_helpers import register_event_schema

pytestmark = pytest.mark.integration

ORDER = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["order_id", "amount"],
}
ARROW = {"content-type": "application/vnd.apache.arrow.stream"}


def event(amount: Any, n: int = 0, event_type: str = "order.created") -> dict[str, Any]:
    return {
        "event_type": event_type,
        "source_capability": "shop",
        "aggregate_id": f"order-{n}",
        "aggregate_type": "Order",
        "payload": {"order_id": f"o-{n}", "amount": amount},
    }


def events_on(settings: Settings, topic: str, records: int) -> int:
    """Events on the topic, Arrow-batched records unpacked, once `records` records are there."""
    found = read_topic(settings, topic, expected=records)
    return sum(len(to_cloudevents(r.value())) if is_arrow_batch(r.headers()) else 1 for r in found)


@pytest.fixture
def bound(http: httpx.Client, unique: str) -> dict[str, Any]:
    """A stream whose order.created events must match ORDER (bound by subject name)."""
    schema_id = register_event_schema(http, f"orders-{unique}", "order.created", ORDER)
    created = create_stream(
        http, "acme", f"valid-{unique}", schemas={"order.created": f"orders-{unique}"}
    )
    return {**created, "schema_id": schema_id}


def test_seed_schema_api_is_a_face_of_the_registry(http: httpx.Client, unique: str) -> None:
    body = {"schema_name": f"users-{unique}", "event_type": "user.created", "schema": ORDER}
    first = http.post("/api/v1/schemas", json={**body, "schema_type": "json"})
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1
    again = http.post("/api/v1/schemas", json={**body, "schema_type": "json"})
    assert again.json()["schema_id"] == first.json()["schema_id"]  # identical: same id
    schema_id = first.json()["schema_id"]
    listed = http.get("/api/v1/schemas").json()["schemas"]
    assert {
        "schema_id": schema_id,
        "version": 1,
        "schema_name": f"users-{unique}",
        "event_type": "user.created",
        "schema_type": "json",
    } in listed
    one = http.get(f"/api/v1/schemas/{schema_id}").json()
    assert one["schema"] == ORDER and one["event_type"] == "user.created"
    # the same schema through the Confluent face
    confluent = http.get(f"/schema-registry/subjects/users-{unique}/versions/latest").json()
    assert confluent["id"] == schema_id
    bad = http.post("/api/v1/schemas", json={**body, "schema_type": "json", "schema": {"type": 5}})
    assert bad.status_code == 422 and "invalid JSON Schema" in bad.json()["detail"]


def test_every_publish_path_refuses_invalid_payloads(
    stack: Settings, http: httpx.Client, bound: dict[str, Any]
) -> None:
    sid, schema_id = bound["stream_id"], bound["schema_id"]
    assert http.get(f"/api/v1/streams/{sid}").json()["schemas"] == {"order.created": schema_id}
    who = {"stream_id": sid, "user_id": "u"}

    single = http.post("/api/v1/events", json={**event("ten"), "stream_id": sid})
    assert single.status_code == 422, single.text
    assert single.json()["errors"] == [
        {
            "index": 0,
            "event_type": "order.created",
            "schema_id": schema_id,
            "field": "/amount",
            "message": '"ten" is not of type "number"',
        }
    ]
    assert http.post("/api/v1/events", json={**event(10), "stream_id": sid}).status_code == 201

    batch = [event(1, 0), event(-5, 1), event(3, 2)]
    answer = http.post("/api/v1/events/batch", json={**who, "events": batch})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("1 of 3 event(s) do not match their schema")
    assert "event 1 (order.created" in answer.json()["detail"]
    assert answer.json()["errors"][0]["field"] == "/amount"

    ndjson = b"\n".join(orjson.dumps(e) for e in [event(1), {**event(2), "payload": {}}])
    answer = http.post(
        "/api/v1/events/batch",
        params=who,
        content=ndjson,
        headers={"content-type": "application/x-ndjson"},
    )
    assert answer.status_code == 422
    assert {e["message"] for e in answer.json()["errors"]} == {
        '"order_id" is a required property',
        '"amount" is a required property',
    }

    rows = [event(1, 0), event("x", 1)]
    table = pa.table(
        {
            **{
                k: [r[k] for r in rows] for k in ("event_type", "source_capability", "aggregate_id")
            },
            "aggregate_type": ["Order"] * 2,
            "payload": [orjson.dumps(r["payload"]).decode() for r in rows],
        }
    )
    answer = http.post("/api/v1/events/batch", params=who, content=ipc_stream(table), headers=ARROW)
    assert answer.status_code == 422 and answer.json()["errors"][0]["index"] == 1

    frame = pa.table(
        {
            "event_type": ["order.created"] * 3,
            "source_capability": ["shop"] * 3,
            "aggregate_id": ["a", "b", "c"],
            "aggregate_type": ["Order"] * 3,
            "order_id": ["o-1", "o-2", None],
            "amount": [1.0, 2.0, 3.0],
        }
    )
    answer = http.post(
        "/api/v1/events/arrow", params={"stream_id": sid}, content=ipc_stream(frame), headers=ARROW
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0] | {"schema_id": 0} == {
        "index": 2,
        "event_type": "order.created",
        "schema_id": 0,
        "field": "/",
        "message": '"order_id" is a required property',
    }
    valid_frame = frame.set_column(4, "order_id", pa.array(["o-1", "o-2", "o-3"]))
    answer = http.post(
        "/api/v1/events/arrow",
        params={"stream_id": sid},
        content=ipc_stream(valid_frame),
        headers=ARROW,
    )
    assert answer.status_code == 200, answer.text
    arrow_records = len(answer.json()["records"])

    # unbound event types are not checked; valid ones of a bound type go out
    other = event("anything", 9, event_type="order.noted")
    answer = http.post("/api/v1/events/batch", json={**who, "events": [event(4), other]})
    assert answer.status_code == 200 and answer.json()["published"] == 2
    # 1 single + 3 in the frame + 2: nothing of the refused batches reached Kafka
    assert events_on(stack, bound["kafka_topic"], records=3 + arrow_records) == 6


def test_sdk_publish_is_checked_and_bindings_can_change(
    stack: Settings, http: httpx.Client, bound: dict[str, Any], unique: str
) -> None:
    avro = {
        "type": "record",
        "name": "Payment",
        "namespace": "shop",
        "fields": [{"name": "cents", "type": "long"}],
    }
    payments = register_event_schema(http, f"payments-{unique}", "payment.taken", avro, "avro")
    sid = bound["stream_id"]
    rebound = http.put(
        f"/api/v1/streams/{sid}/schemas", json={"schemas": {"payment.taken": payments}}
    )
    assert rebound.status_code == 200, rebound.text
    assert rebound.json()["schemas"] == {"payment.taken": payments}
    unknown = http.put(f"/api/v1/streams/{sid}/schemas", json={"schemas": {"x": "no-such"}})
    assert unknown.status_code == 404

    async def publish() -> tuple[str, str]:
        bus = Bus(stack)
        try:
            sdk = EventPublishingService(bus=bus)
            config = EventConfig(
                event_type="payment.taken",
                source_capability="billing",
                aggregate_id="p-1",
                aggregate_type="Payment",
            )
            with pytest.raises(SchemaViolation) as refused:
                await sdk.publish_event(config, {"cents": "12"}, sid, "acme", "u")
            receipt = await sdk.publish_event(config, {"cents": 1200}, sid, "acme", "u")
            return refused.value.detail, receipt.status
        finally:
            await bus.close()

    detail, status = asyncio.run(publish())
    assert "shop.Payment.cents: '12' is not a valid long" in detail
    assert status == "published"
