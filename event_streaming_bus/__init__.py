"""The Event Streaming Bus Python SDK.

    import asyncio
    from event_streaming_bus import (
        EventConfig, EventPublishingService, EventStreamingService, StreamConfig,
    )

    async def main() -> None:
        stream_id = await EventStreamingService().create_stream(
            config=StreamConfig(stream_name="user_events", topic_name="apg-user-events",
                                source_capability="user_management", partitions=6,
                                replication_factor=3),
            tenant_id="your_tenant", created_by="your_user")
        await EventPublishingService().publish_event(
            event_config=EventConfig(event_type="user.created",
                                     source_capability="user_management",
                                     aggregate_id="user_123", aggregate_type="User"),
            payload={"email": "ada@example.com"},
            stream_id=stream_id, tenant_id="your_tenant", user_id="your_user")

    asyncio.run(main())

Every error the SDK raises is an EsbError (the tree is drawn in cluster.errors) and exported
here. Services read KAFKA_BOOTSTRAP_SERVERS and REDIS_URL (see cluster.settings) unless given
a Settings.
"""

from actors.indexer import IndexerLauncher as _IndexerLauncher
from actors.launcher import DispatcherLauncher as _Launcher
from cluster.errors import (
    BadRequest,
    Conflict,
    DecodeError,
    DecryptionFailed,
    EsbError,
    Forbidden,
    IncompatibleSchema,
    InvalidInput,
    KeyDeleted,
    NotFound,
    PayloadTooLarge,
    SchemaError,
    SchemaViolation,
    ServiceUnavailable,
    SpecError,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    WrongExpectedVersion,
)
from cluster.models.capabilities import CapabilityConfig, CapabilityRecord
from cluster.models.event_store import AppendEvent, AppendRequest, EventQuery, StoredEvent
from cluster.models.streams import StreamConfig, StreamRecord
from cluster.models.subscriptions import RetryPolicy, SubscriptionConfig, SubscriptionRecord
from cluster.security.webhooks import verify as verify_webhook
from cluster.services import consumption as _consumption
from cluster.services import event_store as _event_store
from cluster.services import subscriptions as _subscriptions
from cluster.services.aggregates import AggregateService, AggregateSnapshot
from cluster.services.bus import Bus as _Bus
from cluster.services.bus import shared_bus as _shared_bus
from cluster.services.capabilities import CapabilityService
from cluster.services.integration import APGEventStreamingIntegration
from cluster.services.processing import StreamProcessingService
from cluster.services.publishing import BatchReceipt, EventPublishingService, PublishReceipt
from cluster.services.schemas import SchemaRegistryService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings
from pipelines.envelope import EventConfig, EventIn
from pipelines.event_frames import concat_frames
from pipelines.spec import PipelineSpec


class SubscriptionService(_subscriptions.SubscriptionService):
    """The SDK's subscription service: push subscriptions' dispatchers run as Ray actors
    (actors.launcher), on the cluster at RAY_ADDRESS."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bus: _Bus | None = None,
        launcher: _subscriptions.Dispatchers | None = None,
    ) -> None:
        bus = bus or _shared_bus(settings)
        super().__init__(bus=bus, launcher=launcher or _Launcher(bus.settings))


class EventConsumptionService(_consumption.EventConsumptionService):
    """Reads streams back; its create_subscription starts push dispatchers on Ray."""

    def __init__(self, settings: Settings | None = None, *, bus: _Bus | None = None) -> None:
        bus = bus or _shared_bus(settings)
        super().__init__(bus=bus, subscriptions=SubscriptionService(bus=bus))


class EventStoreService(_event_store.EventStoreService):
    """Events by id, queries, replay into Polars; rebuild_indexes restarts the indexer actor
    (actors.indexer) on the cluster at RAY_ADDRESS."""

    def __init__(self, settings: Settings | None = None, *, bus: _Bus | None = None) -> None:
        bus = bus or _shared_bus(settings)
        super().__init__(bus=bus, indexers=_IndexerLauncher(bus.settings))


__all__ = [
    "APGEventStreamingIntegration",
    "AggregateService",
    "AggregateSnapshot",
    "AppendEvent",
    "AppendRequest",
    "BadRequest",
    "BatchReceipt",
    "CapabilityConfig",
    "CapabilityRecord",
    "CapabilityService",
    "Conflict",
    "DecodeError",
    "DecryptionFailed",
    "EsbError",
    "EventConfig",
    "EventConsumptionService",
    "EventIn",
    "EventPublishingService",
    "EventQuery",
    "EventStoreService",
    "EventStreamingService",
    "Forbidden",
    "IncompatibleSchema",
    "InvalidInput",
    "KeyDeleted",
    "NotFound",
    "PayloadTooLarge",
    "PipelineSpec",
    "PublishReceipt",
    "RetryPolicy",
    "SchemaError",
    "SchemaRegistryService",
    "SchemaViolation",
    "ServiceUnavailable",
    "Settings",
    "SpecError",
    "StoredEvent",
    "StreamConfig",
    "StreamProcessingService",
    "StreamRecord",
    "SubscriptionConfig",
    "SubscriptionRecord",
    "SubscriptionService",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "WrongExpectedVersion",
    "concat_frames",
    "verify_webhook",
]
