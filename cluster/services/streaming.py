"""EventStreamingService: create, apply, list, inspect and delete streams.

A stream's topic lives in its tenant's namespace, `esb.<tenant>.<topic_name>`; metadata lives in
Redis (cluster.stores.streams). HTTP routes and `esb streams apply` call these same methods.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from cluster import naming
from cluster.errors import InvalidInput
from cluster.models.streams import DEFAULT_REPLICAS, StreamConfig, StreamProvisioned, StreamRecord
from cluster.services.bus import Bus, shared_bus
from cluster.services.schemas import SchemaRegistryService
from cluster.settings import Settings
from pipelines.envelope import IDENTIFIER, USER_ID


def kafka_topic(tenant_id: str, topic_name: str) -> str:
    return naming.stream_topic(tenant_id, topic_name)


def check_identifier(value: str, what: str) -> str:
    if not IDENTIFIER.match(value):
        raise InvalidInput(
            f"{what} {value!r} must be 1-64 letters, digits, '_' or '-', starting with a letter "
            "or digit"
        )
    return value


def check_user_id(value: str) -> str:
    if not USER_ID.match(value):
        raise InvalidInput(
            f"user_id {value!r} must be 1-128 letters, digits or _.@:|+-, starting with a letter "
            "or digit"
        )
    return value


class EventStreamingService:
    def __init__(self, settings: Settings | None = None, *, bus: Bus | None = None) -> None:
        self._bus = bus or shared_bus(settings)
        self._schemas = SchemaRegistryService(bus=self._bus)

    async def _bound(self, config: StreamConfig, tenant_id: str) -> StreamConfig:
        """The config with its schema bindings resolved to schema ids of the tenant's registry."""
        if not config.schemas:
            return config
        ids = await self.schema_ids(tenant_id, config.schemas)
        return config.model_copy(update={"schemas": ids})

    async def schema_ids(self, tenant_id: str, schemas: dict[str, int | str]) -> dict[str, int]:
        """Event type -> schema id, from ids, subjects or `subject:version` (unknown: a 404)."""
        return {t: await self._schemas.resolve(tenant_id, ref) for t, ref in schemas.items()}

    async def bind_schemas(
        self, stream_id: str, tenant_id: str, schemas: dict[str, int | str]
    ) -> StreamRecord:
        """Replace the stream's event type -> schema bindings (validated on every publish)."""
        record = await self._bus.streams.resolve(stream_id, tenant_id)
        record = record.model_copy(update={"schemas": await self.schema_ids(tenant_id, schemas)})
        await self._bus.streams.save(record)
        return record

    async def create_stream(self, config: StreamConfig, tenant_id: str, created_by: str) -> str:
        """Create the stream and its topic; answers the new stream id."""
        return (await self.provision_stream(config, tenant_id, created_by)).stream_id

    async def provision_stream(
        self, config: StreamConfig, tenant_id: str, created_by: str
    ) -> StreamProvisioned:
        check_identifier(tenant_id, "tenant_id")
        config = await self._bound(config, tenant_id)
        if config.encrypted:
            # Without a master key this is a 422 here, not a 500 at the first publish; it also
            # makes the tenant's first data key.
            ring = self._bus.keyring
            await asyncio.to_thread(ring.current_version, tenant_id)
        registry = self._bus.streams
        stream_id = str(uuid.uuid4())
        topic = kafka_topic(tenant_id, config.topic_name)
        await registry.reserve_name(tenant_id, config.stream_name, stream_id)
        try:
            brokers = await asyncio.to_thread(self._bus.topics.broker_count)
            wanted = config.replication_factor or DEFAULT_REPLICAS
            replication = min(wanted, brokers)
            warnings = []
            if config.replication_factor is not None and replication < wanted:
                warnings.append(
                    f"replication_factor {config.replication_factor} capped to {replication}: "
                    f"the cluster has {brokers} broker(s)"
                )
            await asyncio.to_thread(
                self._bus.topics.create,
                topic,
                config.partitions,
                replication,
                config.topic_configs(),
            )
        except BaseException:
            await registry.release_name(tenant_id, config.stream_name)
            raise
        record = StreamRecord(
            **config.model_dump(exclude={"replication_factor"}),
            replication_factor=replication,
            requested_replication_factor=config.replication_factor,
            stream_id=stream_id,
            tenant_id=tenant_id,
            kafka_topic=topic,
            created_by=created_by,
            created_at=datetime.now(tz=UTC).isoformat(),
        )
        await registry.save(record)
        return StreamProvisioned(
            stream_id=stream_id, kafka_topic=topic, action="created", warnings=warnings
        )

    async def apply_stream(
        self, config: StreamConfig, tenant_id: str, created_by: str
    ) -> StreamProvisioned:
        """Create the stream, or bring an existing one to this config; twice changes nothing."""
        existing_id = await self._bus.streams.id_for_name(tenant_id, config.stream_name)
        if existing_id is None:  # provision_stream resolves the schema bindings itself
            return await self.provision_stream(config, tenant_id, created_by)
        config = await self._bound(config, tenant_id)
        record = await self._bus.streams.get(existing_id, tenant_id)
        if record.topic_name != config.topic_name:
            raise InvalidInput(
                f"stream {config.stream_name!r} already uses topic {record.topic_name!r}; "
                "a stream's topic cannot be renamed"
            )
        if record.encrypted != config.encrypted:
            # Its events were written one way; flipping the flag would make readers misread them.
            raise InvalidInput(
                f"stream {config.stream_name!r} has encrypted: {str(record.encrypted).lower()}; "
                "encryption is fixed when a stream is created (create a new stream instead)"
            )
        changes, warnings = await asyncio.to_thread(self._reconcile_topic, record, config)
        if record.schemas != config.schemas:
            changes.append(f"schemas: {record.schemas} -> {config.schemas}")
        if record.event_store != config.event_store:
            changes.append(f"event_store: {record.event_store} -> {config.event_store}".lower())
            if config.event_store:
                warnings.append(
                    "events published while event_store was off are indexed only after "
                    "`esb events rebuild-index`"
                )
        if changes:
            update = config.model_dump(exclude={"replication_factor"})
            record = record.model_copy(update=update)
            await self._bus.streams.save(record)
        return StreamProvisioned(
            stream_id=record.stream_id,
            kafka_topic=record.kafka_topic,
            action="updated" if changes else "unchanged",
            changes=changes,
            warnings=warnings,
        )

    def _reconcile_topic(
        self, record: StreamRecord, config: StreamConfig
    ) -> tuple[list[str], list[str]]:
        topics = self._bus.topics
        current = topics.configs(record.kafka_topic)
        wanted = config.topic_configs()
        altered = {k: v for k, v in wanted.items() if current.get(k) != v}
        changes = [f"{k}: {current.get(k)} -> {v}" for k, v in altered.items()]
        if altered:
            topics.alter(record.kafka_topic, altered)
        warnings = []
        have = topics.partition_count(record.kafka_topic)
        if config.partitions > have:
            topics.add_partitions(record.kafka_topic, config.partitions)
            changes.append(f"partitions: {have} -> {config.partitions}")
        elif config.partitions < have:
            warnings.append(f"partitions cannot shrink; the topic keeps {have}")
        replicas = config.replication_factor
        if replicas is not None and replicas not in (
            record.requested_replication_factor,
            record.replication_factor,
        ):
            warnings.append("replication_factor of an existing topic is not changed by apply")
        return changes, warnings

    async def get_stream(self, stream_id: str, tenant_id: str | None = None) -> StreamRecord:
        return await self._bus.streams.resolve(stream_id, tenant_id)

    async def list_streams(self, tenant_id: str | None = None) -> list[StreamRecord]:
        return await self._bus.streams.list(tenant_id)

    async def delete_stream(self, stream_id: str, tenant_id: str | None = None) -> StreamRecord:
        record = await self._bus.streams.resolve(stream_id, tenant_id)
        await asyncio.to_thread(self._bus.topics.delete, record.kafka_topic)
        await self._bus.streams.delete(record)
        return record

    async def get_metrics(self, stream_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        """End offsets per partition, events held, and publish rate since the stream was created."""
        record = await self._bus.streams.resolve(stream_id, tenant_id)
        marks = await asyncio.to_thread(self._bus.topics.watermarks, record.kafka_topic)
        published = await self._bus.streams.published(record.stream_id)
        created = datetime.fromisoformat(record.created_at).timestamp()
        age_s = max(time.time() - created, 1e-3)
        return {
            "stream_id": record.stream_id,
            "kafka_topic": record.kafka_topic,
            "partitions": [
                {"partition": p, "start_offset": low, "end_offset": high}
                for p, (low, high) in sorted(marks.items())
            ],
            "event_count": sum(high - low for low, high in marks.values()),
            "events_published": published,
            "publish_rate_per_s": published / age_s,
            "since": record.created_at,
        }
