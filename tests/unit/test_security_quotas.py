"""Per-tenant quotas on the real Lua script (fakeredis runs it) with a fake clock."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from cluster.errors import PayloadTooLarge
from cluster.security import QuotaLimiter, TenantQuota, TooManyRequests, quota_from


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **quota: float | int | None) -> QuotaLimiter:
    defaults = {"events_per_s": 10.0, "bytes_per_s": 1000.0, "burst_s": 1.0}
    return QuotaLimiter(
        fakeredis.FakeAsyncRedis(),
        TenantQuota(**{**defaults, **quota}),  # type: ignore[arg-type]
        clock=clock,
    )


async def test_event_bucket_refills_at_the_rate() -> None:
    clock = Clock()
    quotas = limiter(clock)
    for _ in range(10):
        await quotas.charge_publish("acme", 1, 10)
    with pytest.raises(TooManyRequests) as caught:
        await quotas.charge_publish("acme", 1, 10)
    assert caught.value.status == 429
    assert caught.value.retry_after_s == pytest.approx(0.1)
    assert caught.value.headers == {"Retry-After": "1"}
    clock.now += 0.1
    await quotas.charge_publish("acme", 1, 10)
    with pytest.raises(TooManyRequests):
        await quotas.charge_publish("acme", 1, 10)


async def test_byte_bucket_and_all_or_nothing() -> None:
    clock = Clock()
    quotas = limiter(clock)
    await quotas.charge_publish("acme", 1, 900)
    with pytest.raises(TooManyRequests) as caught:
        await quotas.charge_publish("acme", 1, 200)  # events fine, bytes not
    assert caught.value.retry_after_s == pytest.approx(0.1)
    for _ in range(9):  # the refused request charged nothing: 9 events are still there
        await quotas.charge_publish("acme", 1, 0)


async def test_one_tenant_flooding_leaves_others_alone() -> None:
    clock = Clock()
    quotas = limiter(clock)
    refused = 0
    for _ in range(100):
        try:
            await quotas.charge_publish("flood", 1, 1)
        except TooManyRequests:
            refused += 1
    assert refused == 90
    for _ in range(10):
        await quotas.charge_publish("quiet", 1, 1)


async def test_requests_larger_than_the_burst_are_413() -> None:
    quotas = limiter(Clock())
    with pytest.raises(PayloadTooLarge, match="split the batch"):
        await quotas.charge_publish("acme", 11, 1)
    with pytest.raises(PayloadTooLarge):
        await quotas.charge_publish("acme", 1, 1001)


async def test_unlimited_and_overrides() -> None:
    clock = Clock()
    client = fakeredis.FakeAsyncRedis()
    quotas = QuotaLimiter(
        client,
        TenantQuota(events_per_s=None, bytes_per_s=None),
        {"small": TenantQuota(events_per_s=1, bytes_per_s=None, burst_s=1)},
        clock=clock,
    )
    for _ in range(1000):
        await quotas.charge_publish("big", 1, 10**6)
    assert await client.exists("esb:tenant:big:quota:publish") == 0  # no Redis trip at all
    await quotas.charge_publish("small", 1, 10**9)
    with pytest.raises(TooManyRequests):
        await quotas.charge_publish("small", 1, 1)


async def test_bucket_key_expires_when_full_again() -> None:
    clock = Clock()
    client = fakeredis.FakeAsyncRedis()
    quotas = QuotaLimiter(client, TenantQuota(events_per_s=10, bytes_per_s=None), clock=clock)
    await quotas.charge_publish("acme", 20, 1)
    ttl_ms = await client.pttl("esb:tenant:acme:quota:publish")
    assert 2_000 < ttl_ms <= 3_000  # two seconds to refill, plus a second of margin


async def test_clock_going_backwards_does_not_mint_tokens() -> None:
    clock = Clock()
    quotas = limiter(clock)
    for _ in range(10):
        await quotas.charge_publish("acme", 1, 1)
    clock.now -= 5
    with pytest.raises(TooManyRequests):
        await quotas.charge_publish("acme", 1, 1)
    clock.now += 5.1
    await quotas.charge_publish("acme", 1, 1)


async def test_redis_time_is_used_without_a_clock() -> None:
    quotas = QuotaLimiter(
        fakeredis.FakeAsyncRedis(), TenantQuota(events_per_s=5, bytes_per_s=None, burst_s=1)
    )
    for _ in range(5):
        await quotas.charge_publish("acme", 1, 1)
    with pytest.raises(TooManyRequests):
        await quotas.charge_publish("acme", 1, 1)


async def test_stream_and_subscription_counts() -> None:
    quotas = limiter(Clock(), max_streams=2, max_subscriptions=1)
    await quotas.acquire_slot("acme", "streams", "s-1")
    await quotas.acquire_slot("acme", "streams", "s-1")  # re-applying counts once
    await quotas.acquire_slot("acme", "streams", "s-2")
    with pytest.raises(TooManyRequests) as caught:
        await quotas.acquire_slot("acme", "streams", "s-3")
    assert caught.value.retry_after_s is None and caught.value.headers == {}
    assert "maximum of 2 streams" in caught.value.detail
    await quotas.acquire_slot("globex", "streams", "s-9")  # another tenant's count
    await quotas.release_slot("acme", "streams", "s-1")
    await quotas.acquire_slot("acme", "streams", "s-3")
    assert await quotas.slots_used("acme", "streams") == 2
    await quotas.acquire_slot("acme", "subscriptions", "sub-1")
    with pytest.raises(TooManyRequests):
        await quotas.acquire_slot("acme", "subscriptions", "sub-2")
    await quotas.reset_slots("acme", "subscriptions", [])
    await quotas.acquire_slot("acme", "subscriptions", "sub-2")


def test_quota_from_settings_like_object() -> None:
    class FakeSettings:
        esb_quota_events_per_s = 100.0
        esb_quota_max_streams = 3

    quota = quota_from(FakeSettings())
    assert (quota.events_per_s, quota.max_streams) == (100.0, 3)
    assert quota.bytes_per_s == TenantQuota().bytes_per_s


async def test_concurrent_charges_refuse_exactly_what_one_by_one_would() -> None:
    quotas = limiter(Clock())  # a bucket of 10 events
    answers = await asyncio.gather(
        *(quotas.charge_publish("acme", 3, 10) for _ in range(5)), return_exceptions=True
    )
    refused = [a for a in answers if isinstance(a, TooManyRequests)]
    assert len(refused) == 2 and answers.count(None) == 3  # 3 x 3 fit in 10, not a 4th
