"""CapabilityService: capabilities register what they publish (event types with schemas, on
their stream) and what they consume; the event catalog says, per event type, which schema it
has, who publishes it and who subscribes. Registering binds the published types' schemas on
the capability's stream, so what it publishes is validated (cluster.services.validation)."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime

from cluster.errors import Conflict
from cluster.models.capabilities import CapabilityConfig, CapabilityRecord, CatalogEntry
from cluster.services.bus import Bus, shared_bus
from cluster.services.streaming import EventStreamingService, check_identifier
from cluster.settings import Settings
from cluster.stores.capabilities import CapabilityStore


class CapabilityService:
    def __init__(self, settings: Settings | None = None, *, bus: Bus | None = None) -> None:
        self._bus = bus or shared_bus(settings)
        self._streams = EventStreamingService(bus=self._bus)

    @property
    def _store(self) -> CapabilityStore:
        return CapabilityStore(self._bus.redis)

    async def register(self, config: CapabilityConfig, tenant_id: str) -> CapabilityRecord:
        """Register (or update) a capability; binds its published types' schemas on its stream."""
        check_identifier(tenant_id, "tenant_id")
        stream = await self._streams.get_stream(config.stream, tenant_id)
        ids = await self._streams.schema_ids(tenant_id, config.publishes)
        for other in await self._store.list(tenant_id):
            clash = [
                t
                for t, i in ids.items()
                if other.name != config.name and t in other.publishes and other.publishes[t] != i
            ]
            if clash:
                raise Conflict(
                    f"capability {other.name!r} publishes {clash[0]!r} with schema "
                    f"{other.publishes[clash[0]]}; one event type has one schema"
                )
        wanted = {**stream.schemas, **ids}
        if wanted != stream.schemas:
            await self._streams.bind_schemas(stream.stream_id, tenant_id, dict(wanted))
        record = CapabilityRecord(
            **config.model_dump(exclude={"publishes"}),
            publishes=ids,
            tenant_id=tenant_id,
            stream_id=stream.stream_id,
            registered_at=datetime.now(tz=UTC).isoformat(),
        )
        await self._store.save(record)
        return record

    async def add_consumed(
        self, tenant_id: str, name: str, patterns: list[str]
    ) -> CapabilityRecord:
        record = await self._store.get(tenant_id, name)
        consumes = list(dict.fromkeys([*record.consumes, *patterns]))
        if consumes != record.consumes:
            record = record.model_copy(update={"consumes": consumes})
            await self._store.save(record)
        return record

    async def get(self, tenant_id: str, name: str) -> CapabilityRecord:
        return await self._store.get(tenant_id, name)

    async def list_capabilities(self, tenant_id: str) -> list[CapabilityRecord]:
        return await self._store.list(tenant_id)

    async def delete(self, tenant_id: str, name: str) -> None:
        await self._store.delete(tenant_id, name)

    async def catalog(self, tenant_id: str) -> list[CatalogEntry]:
        """Every event type some capability publishes or consumes, with who does which."""
        capabilities = await self._store.list(tenant_id)
        entries: dict[str, CatalogEntry] = {}
        for cap in capabilities:
            for event_type, schema_id in cap.publishes.items():
                entry = _entry(entries, event_type, schema_id)
                entry.publishers.append(cap.name)
                if cap.stream_id not in entry.stream_ids:
                    entry.stream_ids.append(cap.stream_id)
        for cap in capabilities:
            for pattern in cap.consumes:
                matched = [e for t, e in entries.items() if fnmatch.fnmatchcase(t, pattern)]
                if not matched and not any(c in pattern for c in "*?["):
                    matched = [_entry(entries, pattern, None)]
                for entry in matched:
                    if cap.name not in entry.subscribers:
                        entry.subscribers.append(cap.name)
        return [entries[t] for t in sorted(entries)]


def _entry(
    entries: dict[str, CatalogEntry], event_type: str, schema_id: int | None
) -> CatalogEntry:
    """The catalog's entry for `event_type`, made (with `schema_id`) the first time it is named."""
    if event_type not in entries:
        entries[event_type] = CatalogEntry(
            event_type=event_type, schema_id=schema_id, stream_ids=[], publishers=[], subscribers=[]
        )
    return entries[event_type]
