"""TenantRecords: pydantic records in Redis, one JSON value per id plus a set of every id,
read per tenant. Streams, subscriptions and pipelines keep their records this way.

Another tenant's record reads exactly like a missing one (the same 404), so ids leak nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel
from redis.asyncio import Redis

from cluster.errors import NotFound


class _Owned(Protocol):
    tenant_id: str


R = TypeVar("R", bound=BaseModel)


class TenantRecords(Generic[R]):
    def __init__(
        self, redis: Redis, model: type[R], kind: str, key: Callable[[str], str], index: str
    ) -> None:
        self._redis, self._model, self._kind = redis, model, kind
        self.key, self.index = key, index

    @staticmethod
    def _visible(record: BaseModel, tenant_id: str | None) -> bool:
        owner: _Owned = record  # type: ignore[assignment]
        return tenant_id is None or owner.tenant_id == tenant_id

    async def get(self, record_id: str, tenant_id: str | None = None) -> R:
        """The record, or NotFound when it is missing or belongs to another tenant."""
        raw = await self._redis.get(self.key(record_id))
        record = self._model.model_validate_json(raw) if raw else None
        if record is None or not self._visible(record, tenant_id):
            raise NotFound(f"{self._kind} {record_id!r} not found")
        return record

    async def ids(self) -> list[str]:
        members = await self._redis.smembers(self.index)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def list(self, tenant_id: str | None = None) -> list[R]:
        """Every record (of the tenant, when given), in id order."""
        ids = await self.ids()
        raws = await self._redis.mget([self.key(i) for i in ids]) if ids else []
        records = [self._model.model_validate_json(raw) for raw in raws if raw]
        return [r for r in records if self._visible(r, tenant_id)]
