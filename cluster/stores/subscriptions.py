"""Subscriptions' records in Redis (cluster.services.subscriptions manages them):

    esb:subs                          set of subscription ids
    esb:sub:<id>                      the SubscriptionRecord (with its secret)
    esb:sub:<id>:state                active | paused | disabled | cancelled
    esb:sub:<id>:stats                counters (delivered, retried, dead_lettered, ...), last error
    esb:sub:<id>:live                 pub/sub channel: deliveries and state changes
    esb:sub:<id>:replay               next dead-letter offset that a replay sends again
    esb:sub:<id>:done:<webhook-id>    exactly_once webhooks: delivered ids (TTL IDEMPOTENCY_TTL_S)
    esb:tenant:<t>:sub-groups         consumer_group_id -> subscription id (one each)

The dispatchers (actors.dispatcher) write the stats, the live updates, the `disabled` state and
the delivered ids themselves.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from cluster import naming
from cluster.errors import Conflict
from cluster.models.subscriptions import SubscriptionRecord
from cluster.stores.records import TenantRecords

ALL = naming.ALL_SUBSCRIPTIONS


def _groups_key(tenant_id: str) -> str:
    return naming.tenant_key(tenant_id, "sub-groups")


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class SubscriptionStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._records = TenantRecords(
            redis, SubscriptionRecord, "subscription", naming.sub_key, ALL
        )

    async def claim_group(self, tenant_id: str, consumer_group_id: str, sub_id: str) -> None:
        """One subscription per consumer group id and tenant: Conflict when it is taken."""
        if not await self._redis.hsetnx(_groups_key(tenant_id), consumer_group_id, sub_id):
            raise Conflict(
                f"consumer group {consumer_group_id!r} already has a subscription in "
                f"tenant {tenant_id!r}"
            )

    async def release_group(self, tenant_id: str, consumer_group_id: str) -> None:
        await self._redis.hdel(_groups_key(tenant_id), consumer_group_id)

    async def save(self, record: SubscriptionRecord) -> None:
        """The record, its state `active` and its id, in one transaction."""
        subscription_id = record.subscription_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(naming.sub_key(subscription_id), record.model_dump_json())
            pipe.set(naming.sub_key(subscription_id, "state"), "active")
            pipe.sadd(ALL, subscription_id)
            await pipe.execute()

    async def discard(self, subscription_id: str) -> None:
        """Undo `save` (a creation that failed half-way)."""
        await self._redis.delete(
            naming.sub_key(subscription_id), naming.sub_key(subscription_id, "state")
        )
        await self._redis.srem(ALL, subscription_id)

    async def get(self, subscription_id: str, tenant_id: str | None = None) -> SubscriptionRecord:
        """The record; NotFound when it is missing or another tenant's (the same answer)."""
        return await self._records.get(subscription_id, tenant_id)

    async def list(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """Every subscription (of the tenant, when given) in id order: public fields and state."""
        records = await self._records.list(tenant_id)
        keys = [naming.sub_key(r.subscription_id, "state") for r in records]
        states = await self._redis.mget(keys) if keys else []
        return [
            {**record.public(), "state": _text(state)}
            for record, state in zip(records, states, strict=True)
        ]

    async def state(self, subscription_id: str) -> str:
        return _text(await self._redis.get(naming.sub_key(subscription_id, "state"))) or "unknown"

    async def set_state(self, subscription_id: str, state: str) -> None:
        """Set the state and tell the live channel (the dispatchers poll the state)."""
        await self._redis.set(naming.sub_key(subscription_id, "state"), state)
        await self._redis.publish(
            naming.sub_key(subscription_id, "live"),
            orjson.dumps({"type": "state", "state": state}),
        )

    async def stats(self, subscription_id: str) -> dict[str, str | None]:
        raw = await self._redis.hgetall(naming.sub_key(subscription_id, "stats"))
        return {_text(k) or "": _text(v) for k, v in raw.items()}

    async def replay_cursor(self, subscription_id: str) -> int:
        """The first dead-letter offset not replayed yet."""
        return int(await self._redis.get(naming.sub_key(subscription_id, "replay")) or 0)

    async def replayed(self, subscription_id: str, next_offset: int, count: int) -> None:
        """Move the replay cursor past what was replayed, and count it."""
        await self._redis.set(naming.sub_key(subscription_id, "replay"), next_offset)
        await self._redis.hincrby(naming.sub_key(subscription_id, "stats"), "replayed", count)
