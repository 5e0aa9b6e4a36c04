"""Per-tenant quotas: publish rate (events/s and bytes/s) and counts of streams/subscriptions.

The rates are token buckets in Redis, one hash per tenant (`esb:tenant:<t>:quota:publish`),
refilled and charged by one Lua script, so every API replica shares them atomically and
one tenant's flood only ever drains its own bucket. A replica charges a tenant's concurrent
publishes together (one script call) and falls back to one by one when the sum does not fit.
The clock is Redis's (TIME) unless a clock is injected (tests), so replicas with skewed clocks
agree.

Counts are Redis sets of resource ids (`esb:tenant:<t>:quota:streams`): adding the same id
twice (an idempotent re-apply) does not count twice, and releasing is exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from cluster import naming
from cluster.coalescing import Coalescer
from cluster.errors import Conflict, PayloadTooLarge, TooManyRequests

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["QuotaLimiter", "TenantQuota", "quota_from", "quota_overrides_from"]

Countable = Literal["streams", "subscriptions"]

# KEYS[1]: the tenant's bucket hash. ARGV: events rate, events capacity, bytes rate,
# bytes capacity, events cost, bytes cost, now in ms ('' = Redis TIME). A rate <= 0 means
# unlimited. Returns {1, 0} when charged, {0, wait_ms} when not (nothing is charged then).
_TOKEN_BUCKET = """
local now
if ARGV[7] ~= '' then
  now = tonumber(ARGV[7])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rates = {tonumber(ARGV[1]), tonumber(ARGV[3])}
local caps = {tonumber(ARGV[2]), tonumber(ARGV[4])}
local costs = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local state = redis.call('HMGET', KEYS[1], 'ev', 'by', 'ts')
local last = tonumber(state[3]) or now
local elapsed = math.max(0, now - last) / 1000.0
local tokens = {}
local wait = 0
for i = 1, 2 do
  if rates[i] > 0 then
    local stored = tonumber(state[i]) or caps[i]
    tokens[i] = math.min(caps[i], stored + elapsed * rates[i])
    if tokens[i] < costs[i] then
      wait = math.max(wait, (costs[i] - tokens[i]) / rates[i])
    end
  else
    tokens[i] = 0
  end
end
if wait > 0 then
  return {0, math.ceil(wait * 1000)}
end
local full = 0
for i = 1, 2 do
  if rates[i] > 0 then
    tokens[i] = tokens[i] - costs[i]
    full = math.max(full, (caps[i] - tokens[i]) / rates[i])
  end
end
redis.call('HSET', KEYS[1], 'ev', tostring(tokens[1]), 'by', tostring(tokens[2]),
  'ts', tostring(math.max(now, last)))
redis.call('PEXPIRE', KEYS[1], math.ceil(full * 1000) + 1000)
return {1, 0}
"""

# KEYS[1]: the tenant's set of resource ids. ARGV: id, limit (< 0: unlimited).
_ACQUIRE_SLOT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
local limit = tonumber(ARGV[2])
if limit >= 0 and redis.call('SCARD', KEYS[1]) >= limit then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class TenantQuota:
    """Limits for one tenant; None = unlimited. A bucket holds `burst_s` seconds of rate,
    which must fit the largest batch (defaults: 10,000 events and 32 MiB, the body limits).

    >>> TenantQuota().events_capacity, TenantQuota(events_per_s=None).events_capacity
    (2000000.0, None)
    """

    events_per_s: float | None = 1_000_000.0  # as cluster.settings: the promise per node
    bytes_per_s: float | None = 512 * 1024 * 1024
    burst_s: float = 2.0
    max_streams: int | None = 100
    max_subscriptions: int | None = 100

    @property
    def events_capacity(self) -> float | None:
        return None if self.events_per_s is None else self.events_per_s * self.burst_s

    @property
    def bytes_capacity(self) -> float | None:
        return None if self.bytes_per_s is None else self.bytes_per_s * self.burst_s

    def limit(self, kind: Countable) -> int | None:
        return self.max_streams if kind == "streams" else self.max_subscriptions


def quota_from(settings: Any) -> TenantQuota:
    """The default TenantQuota from Settings (fields it lacks keep their defaults)."""
    names = {
        "events_per_s": "esb_quota_events_per_s",
        "bytes_per_s": "esb_quota_bytes_per_s",
        "burst_s": "esb_quota_burst_s",
        "max_streams": "esb_quota_max_streams",
        "max_subscriptions": "esb_quota_max_subscriptions",
    }
    defaults = TenantQuota()
    values = {f: getattr(settings, a, getattr(defaults, f)) for f, a in names.items()}
    return TenantQuota(**values)


def quota_overrides_from(settings: Any) -> dict[str, TenantQuota]:
    """Per-tenant quotas from `esb_quota_overrides`: each tenant's fields over the default.

    >>> class S: esb_quota_overrides = {"big": {"events_per_s": 50_000}}
    >>> quota_overrides_from(S())["big"].events_per_s
    50000
    """
    base = quota_from(settings)
    overrides = getattr(settings, "esb_quota_overrides", None) or {}
    return {tenant: replace(base, **fields) for tenant, fields in overrides.items()}


def _rate(value: float | None) -> float:
    return -1.0 if value is None else value


class QuotaLimiter:
    """Charges and checks tenant quotas; raises TooManyRequests (429) when over.

    `overrides` gives some tenants other limits. `clock` (seconds) replaces Redis TIME for
    tests with a fake clock.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        default: TenantQuota | None = None,
        overrides: Mapping[str, TenantQuota] | None = None,
        *,
        prefix: str = naming.REDIS_PREFIX,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._redis = client
        self.default = default or TenantQuota()
        self.overrides = dict(overrides or {})
        self._prefix = prefix
        self._clock = clock
        self._bucket = client.register_script(_TOKEN_BUCKET)
        self._acquire = client.register_script(_ACQUIRE_SLOT)
        # A tenant's concurrent publishes are charged in one round trip (cluster.coalescing).
        self._charges: Coalescer[tuple[int, int], TooManyRequests | None] = Coalescer(
            self._charge_together, max_batch=256
        )

    def quota_for(self, tenant: str) -> TenantQuota:
        return self.overrides.get(tenant, self.default)

    def _key(self, tenant: str, what: str) -> str:
        return naming.tenant_key(tenant, "quota", what, prefix=self._prefix)

    async def charge_publish(self, tenant: str, events: int, size_bytes: int) -> None:
        """Take `events` and `size_bytes` from the tenant's buckets, all or nothing.

        A request larger than a full bucket can never pass: PayloadTooLarge (413), not 429.
        """
        quota = self.quota_for(tenant)
        ev_cap, by_cap = quota.events_capacity, quota.bytes_capacity
        if ev_cap is None and by_cap is None:
            return
        if ev_cap is not None and events > ev_cap:
            raise PayloadTooLarge(
                f"{events} events in one request exceed the tenant's burst of {ev_cap:.0f}"
                " events: split the batch"
            )
        if by_cap is not None and size_bytes > by_cap:
            raise PayloadTooLarge(
                f"{size_bytes} bytes in one request exceed the tenant's burst of {by_cap:.0f}"
                " bytes: split the batch"
            )
        refusal = await self._charges.submit((tenant,), (events, size_bytes))
        if refusal is not None:
            raise refusal

    async def _charge_together(
        self, costs: list[tuple[int, int]], tenant: str
    ) -> list[TooManyRequests | None]:
        """Concurrent charges of one tenant in one script call; when the sum does not fit,
        each is charged alone, so a full bucket refuses exactly what it would have refused."""
        if len(costs) > 1:
            together = (sum(e for e, _ in costs), sum(b for _, b in costs))
            if await self._charge(tenant, *together) is None:
                return [None] * len(costs)
        return [await self._charge(tenant, events, size) for events, size in costs]

    async def _charge(self, tenant: str, events: int, size_bytes: int) -> TooManyRequests | None:
        quota = self.quota_for(tenant)
        now = "" if self._clock is None else str(int(self._clock() * 1000))
        args: list[float | int | str] = [
            _rate(quota.events_per_s),
            quota.events_capacity or 0,
            _rate(quota.bytes_per_s),
            quota.bytes_capacity or 0,
            events,
            size_bytes,
            now,
        ]
        allowed, wait_ms = await self._bucket(keys=[self._key(tenant, "publish")], args=args)
        if int(allowed):
            return None
        wait_s = int(wait_ms) / 1000
        return TooManyRequests(
            f"tenant {tenant!r} is over its publish quota ({_describe(quota)}); "
            f"retry in {wait_s:.2f} s",
            retry_after_s=wait_s,
        )

    async def acquire_slot(self, tenant: str, kind: Countable, resource_id: str) -> None:
        """Count `resource_id` against the tenant's `kind` limit before creating it; already
        counted ids pass (re-apply). Release it if the creation then fails."""
        limit = self.quota_for(tenant).limit(kind)
        args: list[str | int] = [resource_id, -1 if limit is None else limit]
        if not int(await self._acquire(keys=[self._key(tenant, kind)], args=args)):
            raise TooManyRequests(
                f"tenant {tenant!r} already has its maximum of {limit} {kind}: "
                f"delete one before creating another",
                retry_after_s=None,
            )

    @asynccontextmanager
    async def creating(self, tenant: str, kind: Countable, resource_id: str) -> AsyncIterator[None]:
        """Count `resource_id` while the block creates it; a failure releases the slot, except a
        Conflict (the id is an existing resource's, whose slot stays)."""
        await self.acquire_slot(tenant, kind, resource_id)
        try:
            yield
        except Conflict:
            raise
        except BaseException:
            await self.release_slot(tenant, kind, resource_id)
            raise

    async def release_slot(self, tenant: str, kind: Countable, resource_id: str) -> None:
        """Stop counting a deleted resource (or one whose creation failed)."""
        await self._redis.srem(self._key(tenant, kind), resource_id)

    async def reset_slots(self, tenant: str, kind: Countable, resource_ids: Iterable[str]) -> None:
        """Make the count match the registry (e.g. at start-up or after a restore)."""
        key = self._key(tenant, kind)
        ids = list(resource_ids)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if ids:
                pipe.sadd(key, *ids)
            await pipe.execute()

    async def slots_used(self, tenant: str, kind: Countable) -> int:
        return int(await self._redis.scard(self._key(tenant, kind)))


def _describe(quota: TenantQuota) -> str:
    parts = []
    if quota.events_per_s is not None:
        parts.append(f"{quota.events_per_s:g} events/s")
    if quota.bytes_per_s is not None:
        parts.append(f"{quota.bytes_per_s:g} bytes/s")
    return ", ".join(parts)
