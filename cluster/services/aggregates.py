"""AggregateService: event-sourced aggregates on Kafka, with expected versions: append
(cluster.services.aggregate_appends has the protocol), history in version order, state folded
as JSON merge patches, a fold with your own function, and snapshots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from cluster.errors import (
    InvalidInput,
    NotFound,
    ServiceUnavailable,
)
from cluster.models.event_store import (
    AggregateHistory,
    AggregateState,
    StoredEvent,
    merge_patch,
)
from cluster.services.aggregate_appends import Appender
from cluster.services.bus import Bus, shared_bus
from cluster.services.event_store import EventStoreService
from cluster.settings import Settings
from cluster.stores import aggregates
from cluster.stores.event_index import IndexedEvent, read_stored

S = TypeVar("S")


class AggregateSnapshot(BaseModel):
    """A folded state at a version, so a long history need not be replayed from version 1."""

    version: int
    state: Any


class AggregateService(Appender):
    """Reads and folds here; `append` (and the bus, store and AggregateStore it works on) comes
    from Appender."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bus: Bus | None = None,
        store: EventStoreService | None = None,
    ) -> None:
        bus = bus or shared_bus(settings)
        super().__init__(bus, store or EventStoreService(bus=bus))

    async def history(
        self,
        aggregate_type: str,
        aggregate_id: str,
        tenant_id: str,
        from_version: int = 1,
        limit: int = 100,
    ) -> AggregateHistory:
        """Events from_version.. (at most `limit`), in version order, each with its version."""
        if from_version < 1 or not 1 <= limit <= self._bus.settings.max_read_limit:
            raise_invalid(self._bus.settings.max_read_limit)
        agg = aggregates.keys(tenant_id, aggregate_type, aggregate_id)
        version, stream_id = await self._aggregates().head(agg)
        if stream_id is None:
            raise NotFound(f"aggregate {aggregate_type} {aggregate_id!r} not found")
        stream = await self._bus.streams.get(stream_id, tenant_id)
        versions = list(range(from_version, min(version, from_version + limit - 1) + 1))
        ids = await self._aggregates().event_ids(agg, versions)
        raws = await read_stored(self._bus.redis, tenant_id, stream_id, [i or "" for i in ids])
        items = [IndexedEvent.from_stored(tenant_id, stream_id, r) for r in raws if r is not None]
        if len(items) < len(raws):
            raise ServiceUnavailable("the aggregate index is incomplete; rebuild the indexes")
        events = await self._store.opened(stream, items)
        return AggregateHistory(
            aggregate_type=aggregate_type, aggregate_id=aggregate_id, version=version, events=events
        )

    async def events(
        self,
        aggregate_type: str,
        aggregate_id: str,
        tenant_id: str,
        from_version: int = 1,
        to_version: int | None = None,
    ) -> list[StoredEvent]:
        """Every event from_version..to_version (default: the current one), page by page."""
        out: list[StoredEvent] = []
        page_size = self._bus.settings.max_read_limit
        while True:
            page = await self.history(
                aggregate_type, aggregate_id, tenant_id, from_version, page_size
            )
            top = page.version if to_version is None else min(to_version, page.version)
            out.extend(e for e in page.events if (e.version or 0) <= top)
            from_version += len(page.events)
            if not page.events or from_version > top:
                return out

    async def fold(
        self,
        aggregate_type: str,
        aggregate_id: str,
        tenant_id: str,
        apply: Callable[[S, StoredEvent], S],
        initial: S,
        *,
        snapshot: AggregateSnapshot | None = None,
        at_version: int | None = None,
    ) -> tuple[int, S]:
        """(version, state): `apply` folded over the events after `snapshot` (or from 1)."""
        state: S = snapshot.state if snapshot is not None else initial
        start = snapshot.version + 1 if snapshot is not None else 1
        version = snapshot.version if snapshot is not None else 0
        if at_version is None or at_version > version:
            for event in await self.events(
                aggregate_type, aggregate_id, tenant_id, start, at_version
            ):
                state, version = apply(state, event), event.version or version
        return version, state

    async def state(
        self, aggregate_type: str, aggregate_id: str, tenant_id: str, at_version: int | None = None
    ) -> AggregateState:
        """The payloads folded as JSON merge patches (RFC 7396), at the current version or
        `at_version`."""
        if at_version is not None and at_version < 0:
            raise_invalid(self._bus.settings.max_read_limit)
        state: Any
        version, state = await self.fold(
            aggregate_type,
            aggregate_id,
            tenant_id,
            lambda s, e: merge_patch(s, e.event.get("data")),
            {},
            at_version=at_version,
        )
        return AggregateState(
            aggregate_type=aggregate_type, aggregate_id=aggregate_id, version=version, state=state
        )

    async def save_snapshot(
        self, aggregate_type: str, aggregate_id: str, tenant_id: str, snapshot: AggregateSnapshot
    ) -> None:
        key = aggregates.snapshot_key(tenant_id, aggregate_type, aggregate_id)
        await self._bus.redis.set(key, snapshot.model_dump_json())

    async def load_snapshot(
        self, aggregate_type: str, aggregate_id: str, tenant_id: str
    ) -> AggregateSnapshot | None:
        key = aggregates.snapshot_key(tenant_id, aggregate_type, aggregate_id)
        raw = await self._bus.redis.get(key)
        return AggregateSnapshot.model_validate_json(raw) if raw else None


def raise_invalid(max_limit: int) -> None:
    raise InvalidInput(
        f"from_version must be >= 1, at_version >= 0 and limit between 1 and {max_limit}"
    )
