"""Per-tenant quotas on a real Redis and over HTTP: one tenant flooding gets 429 + Retry-After,
another tenant publishing at the same time is never refused; stream and subscription counts."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio

from cluster.security import QuotaLimiter, TenantQuota, TooManyRequests
from cluster.settings import Settings
from tests.conftest import Mint
from tests.integration.conftest import create_stream

pytestmark = pytest.mark.integration


async def flood_and_quiet(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    suffix = uuid.uuid4().hex[:8]
    flood, quiet = f"flood-{suffix}", f"quiet-{suffix}"
    quotas = QuotaLimiter(client, TenantQuota(events_per_s=50, bytes_per_s=None, burst_s=1))

    gate = asyncio.Semaphore(32)  # as many in flight as an API replica's connection pool

    async def publish(tenant: str) -> float | None:
        try:
            async with gate:
                await quotas.charge_publish(tenant, 1, 100)
            return None
        except TooManyRequests as exc:
            assert exc.headers["Retry-After"] == "1"
            return exc.retry_after_s

    try:
        # 500 concurrent requests from the flood, 40 from the quiet tenant, interleaved.
        results = await asyncio.gather(
            *(publish(flood) for _ in range(500)), *(publish(quiet) for _ in range(40))
        )
        flood_refused = [r for r in results[:500] if r is not None]
        quiet_refused = [r for r in results[500:] if r is not None]
        # Atomic buckets: at most the burst (50) plus what refilled during the test passes.
        assert 400 <= len(flood_refused) <= 450
        assert all(0 < wait <= 1.0 for wait in flood_refused)
        assert quiet_refused == []
        await asyncio.sleep(0.1)  # a tenant that waits is served again
        assert await publish(flood) is None
    finally:
        await client.delete(
            f"esb:tenant:{flood}:quota:publish", f"esb:tenant:{quiet}:quota:publish"
        )
        await client.aclose()


async def test_one_tenant_flooding_does_not_starve_another(stack: Settings) -> None:
    await flood_and_quiet(stack.redis)


def _client(stack: Settings, mint: Mint, tenant: str) -> httpx.Client:
    auth = {"Authorization": f"Bearer {mint(tenant)}"}
    return httpx.Client(base_url=stack.api_url, timeout=60, headers=auth)


def _batch(stream_id: str, n: int) -> dict[str, Any]:
    event = {
        "event_type": "load.tick",
        "source_capability": "quota-test",
        "aggregate_id": "a",
        "aggregate_type": "Load",
    }
    return {"stream_id": stream_id, "events": [event] * n}


def test_publish_quota_over_http(stack: Settings, mint: Mint, unique: str) -> None:
    """quota-flood may publish 50 events/s (tests/conftest.py); acme is unlimited."""
    with _client(stack, mint, "quota-flood") as flood, _client(stack, mint, "acme") as quiet:
        loud = create_stream(flood, "quota-flood", f"loud-{unique}")["stream_id"]
        calm = create_stream(quiet, "acme", f"calm-{unique}")["stream_id"]
        assert flood.post("/api/v1/events/batch", json=_batch(loud, 40)).status_code == 200
        refused = flood.post("/api/v1/events/batch", json=_batch(loud, 40))
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        for _ in range(3):  # the other tenant is served meanwhile
            assert quiet.post("/api/v1/events/batch", json=_batch(calm, 40)).status_code == 200
        too_big = flood.post("/api/v1/events/batch", json=_batch(loud, 60))
        assert too_big.status_code == 413, too_big.text  # can never fit: not a 429
        deadline = time.monotonic() + 30
        while (
            answer := flood.post("/api/v1/events/batch", json=_batch(loud, 40))
        ).status_code != 200:
            assert answer.status_code == 429 and time.monotonic() < deadline, answer.text
            time.sleep(float(answer.headers["retry-after"]))  # as a client obeying it would


def test_stream_and_subscription_counts_over_http(stack: Settings, mint: Mint, unique: str) -> None:
    """quota-count may have 2 streams and 1 subscription (tests/conftest.py)."""
    with _client(stack, mint, "quota-count") as http:
        first, _second = (create_stream(http, "quota-count", f"c{i}-{unique}") for i in range(2))
        third = {
            "stream_name": f"c3-{unique}",
            "topic_name": f"c3-{unique}",
            "source_capability": "t",
        }
        refused = http.post("/api/v1/streams", json=third)
        assert refused.status_code == 429 and "retry-after" not in refused.headers, refused.text
        assert http.delete(f"/api/v1/streams/{first['stream_id']}").status_code == 200
        assert http.post("/api/v1/streams", json=third).status_code == 201

        def subscribe(group: str) -> httpx.Response:
            body = {
                "subscription_name": group,
                "stream_id": _second["stream_id"],
                "consumer_group_id": group,
            }
            return http.post("/api/v1/subscriptions", json=body)

        made = subscribe(f"g1-{unique}")
        assert made.status_code == 201, made.text
        assert subscribe(f"g2-{unique}").status_code == 429
        cancelled = http.delete(f"/api/v1/subscriptions/{made.json()['subscription_id']}")
        assert cancelled.status_code == 200
        assert subscribe(f"g2-{unique}").status_code == 201
