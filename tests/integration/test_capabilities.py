"""Two capabilities talking through the bus with APGEventStreamingIntegration: each registers
what it publishes (with schemas), billing wires a handler to orders' events and answers each
order with an invoice; what orders publishes is schema-checked; the catalog and
/api/v1/capabilities show who publishes and who subscribes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import event_streaming_bus as esb
from cluster.services.bus import Bus
from cluster.settings import Settings
from tests.integration.conftest import create_stream, read_topic
from tests.integration.schema_helpers import register_event_schema

pytestmark = pytest.mark.integration

ORDER = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["order_id", "amount"],
}
INVOICE = {
    "type": "object",
    "properties": {"invoice_id": {"type": "string"}, "order_id": {"type": "string"}},
    "required": ["invoice_id", "order_id"],
    "additionalProperties": False,
}


def test_two_capabilities_integrate_through_the_sdk(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    shop = create_stream(http, "acme", f"shop-{unique}")
    ledger = create_stream(http, "acme", f"ledger-{unique}")
    order_schema = register_event_schema(http, f"order-{unique}", "order.created", ORDER)
    invoice_schema = register_event_schema(http, f"invoice-{unique}", "invoice.issued", INVOICE)
    orders_name, billing_name = f"orders-{unique}", f"billing-{unique}"

    async def scenario() -> list[dict[str, Any]]:
        bus = Bus(stack)
        services = {
            "event_streaming_service": esb.EventStreamingService(bus=bus),
            "publishing_service": esb.EventPublishingService(bus=bus),
            "consumption_service": esb.EventConsumptionService(bus=bus),
        }
        orders = esb.APGEventStreamingIntegration(**services)
        billing = esb.APGEventStreamingIntegration(**services)
        try:
            await orders.register_capability(
                orders_name,
                tenant_id="acme",
                stream=f"shop-{unique}",
                publishes={"order.created": f"order-{unique}"},
            )
            await billing.register_capability(
                billing_name,
                tenant_id="acme",
                stream=f"ledger-{unique}",
                publishes={"invoice.issued": invoice_schema},
            )
            seen: list[dict[str, Any]] = []
            both = asyncio.Event()

            async def invoice(event: dict[str, Any]) -> None:
                order_id = event["data"]["order_id"]
                await billing.publish(
                    "invoice.issued",
                    {"invoice_id": f"inv-{order_id}", "order_id": order_id},
                    aggregate_id=f"inv-{order_id}",
                    aggregate_type="Invoice",
                )
                seen.append(event)
                if len(seen) == 2:
                    both.set()

            await billing.on_event(orders_name, "order.*", invoice)
            for n in (1, 2):
                await orders.publish(
                    "order.created",
                    {"order_id": f"o-{n}", "amount": 10.0 * n},
                    aggregate_id=f"o-{n}",
                    aggregate_type="Order",
                )
            with pytest.raises(esb.SchemaViolation, match="amount"):
                await orders.publish(
                    "order.created", {"order_id": "o-3"}, aggregate_id="o-3", aggregate_type="Order"
                )
            with pytest.raises(esb.InvalidInput, match="did not register"):
                await orders.publish(
                    "invoice.issued", {}, aggregate_id="x", aggregate_type="Invoice"
                )
            await asyncio.wait_for(both.wait(), timeout=120)
            return seen
        finally:
            await billing.close()
            await bus.close()

    seen = asyncio.run(scenario())
    assert sorted(e["data"]["order_id"] for e in seen) == ["o-1", "o-2"]
    assert {e["source"] for e in seen} == {f"/acme/{orders_name}"}  # published as orders
    assert len(read_topic(stack, ledger["kafka_topic"], expected=2)) == 2
    assert len(read_topic(stack, shop["kafka_topic"], expected=2)) == 2  # o-3 was refused

    listed = {c["name"]: c for c in http.get("/api/v1/capabilities").json()["capabilities"]}
    assert listed[orders_name]["publishes"] == {"order.created": order_schema}
    assert listed[billing_name]["consumes"] == ["order.*"]
    catalog = {e["event_type"]: e for e in http.get("/api/v1/catalog/events").json()["event_types"]}
    assert catalog["order.created"]["schema_id"] == order_schema
    assert catalog["order.created"]["publishers"] == [orders_name]
    assert billing_name in catalog["order.created"]["subscribers"]
    assert catalog["invoice.issued"]["publishers"] == [billing_name]
    assert catalog["invoice.issued"]["stream_ids"] == [ledger["stream_id"]]
    # the shop stream now validates order.created for every publisher, over HTTP too
    assert http.get(f"/api/v1/streams/{shop['stream_id']}").json()["schemas"] == {
        "order.created": order_schema
    }


def test_capability_registration_over_http(http: httpx.Client, unique: str) -> None:
    create_stream(http, "acme", f"cap-{unique}")
    schema_id = register_event_schema(http, f"ping-{unique}", "ping.sent", {"type": "object"})
    body = {
        "name": f"pinger-{unique}",
        "stream": f"cap-{unique}",
        "publishes": {"ping.sent": schema_id},
        "consumes": ["pong.*"],
    }
    answer = http.post("/api/v1/capabilities", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["publishes"] == {"ping.sent": schema_id}
    got = http.get(f"/api/v1/capabilities/pinger-{unique}")
    assert got.status_code == 200 and got.json()["consumes"] == ["pong.*"]
    missing = http.post("/api/v1/capabilities", json={**body, "stream": "no-such-stream"})
    assert missing.status_code == 404
    assert http.get("/api/v1/capabilities/nobody").status_code == 404
