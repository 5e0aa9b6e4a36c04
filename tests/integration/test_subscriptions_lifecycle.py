"""Subscriptions on the real broker, Redis and Ray: 410 disables, then resume, pause, cancel,
duplicate consumer groups and the SSRF guard; a pull subscription's async iterator."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cluster.errors import InvalidInput
from cluster.models.subscriptions import SubscriptionConfig
from cluster.services.bus import Bus
from cluster.settings import Settings
from event_streaming_bus import SubscriptionService
from tests.integration.conftest import create_stream
from tests.integration.subscription_helpers import (
    TENANT,
    Receiver,
    cancel,
    events,
    publish,
    status,
    subscribe,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def test_410_disables_then_resume_pause_cancel_and_the_ssrf_guard(
    stack: Settings, http: httpx.Client, receiver: Receiver, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"gone-{unique}")
    receiver.respond = lambda _wid, _n: 410
    sub = subscribe(http, stream, webhook_url=receiver.url)
    publish(http, stream["stream_id"], events(1, f"gone{unique}"))
    found = wait_for(
        lambda: (s := status(http, sub))["state"] == "disabled" and s, "410 to disable"
    )
    assert "410" in found["last_error"] and found["counts"]["delivered"] == 0
    receiver.respond = lambda _wid, _n: 200
    base = f"/api/v1/subscriptions/{sub['subscription_id']}"
    assert http.post(f"{base}/resume").json()["state"] == "active"
    wait_for(lambda: status(http, sub)["counts"]["delivered"] == 1, "delivery after resume")
    assert http.post(f"{base}/pause").json()["state"] == "paused"
    publish(http, stream["stream_id"], events(3, f"paused{unique}"))
    assert http.post(f"{base}/resume").json()["state"] == "active"
    wait_for(lambda: status(http, sub)["counts"]["delivered"] == 4, "delivery after pause")
    listed = http.get("/api/v1/subscriptions", params={"tenant_id": TENANT}).json()
    assert sub["subscription_id"] in {s["subscription_id"] for s in listed["subscriptions"]}
    duplicate = http.post(
        "/api/v1/subscriptions",
        json={
            "tenant_id": TENANT,
            "subscription_name": "again",
            "stream_id": stream["stream_id"],
            "consumer_group_id": sub["config"]["consumer_group_id"],
            "webhook_url": receiver.url,
        },
    )
    assert duplicate.status_code == 409
    cancel(http, sub)
    assert status(http, sub)["state"] == "cancelled"
    assert http.post(f"{base}/resume").status_code == 409
    assert http.get("/api/v1/subscriptions/nope/status").status_code == 404

    strict = SubscriptionService(
        bus=Bus(stack.model_copy(update={"allow_private_webhooks": False}))
    )
    config = SubscriptionConfig(
        subscription_name="s",
        stream_id=stream["stream_id"],
        consumer_group_id=f"ssrf-{unique}",
        webhook_url=receiver.url,
    )
    with pytest.raises(InvalidInput, match="loopback"):
        asyncio.run(strict.create_subscription(config, TENANT))


def test_pull_subscription_async_iterator(stack: Settings, http: httpx.Client, unique: str) -> None:
    stream = create_stream(http, TENANT, f"pull-{unique}", partitions=2)
    sent = events(40, f"p{unique}", types=["a.one", "b.two"])
    publish(http, stream["stream_id"], sent)
    config = SubscriptionConfig(
        subscription_name="pull",
        stream_id=f"pull-{unique}",
        consumer_group_id=f"pull-{unique}",
        event_type_patterns=["a.*"],
        start_position="earliest",
    )

    async def consume() -> list[dict]:
        service = SubscriptionService(bus=Bus(stack))
        record, _ = await service.create_subscription(config, TENANT)
        got: list[dict] = []
        async for event in service.events(record.subscription_id):
            got.append(event)
            if len(got) == 20:
                break
        return got

    got = asyncio.run(asyncio.wait_for(consume(), 120))
    assert {e["id"] for e in got} == {e["event_id"] for e in sent if e["event_type"] == "a.one"}
