"""Per-tenant publish quotas on a real Redis: one tenant flooding gets 429 + Retry-After,
another tenant publishing at the same time is never refused."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio

from cluster.security import QuotaLimiter, TenantQuota, TooManyRequests
from cluster.settings import Settings

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
