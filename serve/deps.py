"""What route handlers depend on: the process's services, built once on first use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from actors.indexer import IndexerLauncher
from actors.launcher import DispatcherLauncher
from cluster.security.quotas import QuotaLimiter, quota_from, quota_overrides_from
from cluster.services.aggregates import AggregateService
from cluster.services.bus import Bus
from cluster.services.capabilities import CapabilityService
from cluster.services.consumption import EventConsumptionService
from cluster.services.event_store import EventStoreService
from cluster.services.live import LiveTail
from cluster.services.processing import StreamProcessingService
from cluster.services.publishing import EventPublishingService
from cluster.services.schemas import SchemaRegistryService
from cluster.services.streaming import EventStreamingService
from cluster.services.subscriptions import SubscriptionService
from cluster.settings import Settings


@dataclass
class Services:
    """What the handlers call: the same services the Python SDK exposes, on one shared Bus."""

    bus: Bus
    streams: EventStreamingService
    publishing: EventPublishingService
    consumption: EventConsumptionService
    live: LiveTail
    processing: StreamProcessingService
    subscriptions: SubscriptionService
    quotas: QuotaLimiter
    schemas: SchemaRegistryService
    capabilities: CapabilityService
    event_store: EventStoreService
    aggregates: AggregateService

    @classmethod
    def create(cls, settings: Settings) -> Services:
        bus = Bus(settings)
        subscriptions = SubscriptionService(bus=bus, launcher=DispatcherLauncher(settings))
        event_store = EventStoreService(bus=bus, indexers=IndexerLauncher(settings))
        return cls(
            bus=bus,
            streams=EventStreamingService(bus=bus),
            publishing=EventPublishingService(bus=bus),
            consumption=EventConsumptionService(bus=bus, subscriptions=subscriptions),
            live=LiveTail(bus),
            processing=StreamProcessingService(bus=bus),
            subscriptions=subscriptions,
            quotas=QuotaLimiter(bus.redis, quota_from(settings), quota_overrides_from(settings)),
            schemas=SchemaRegistryService(bus=bus),
            capabilities=CapabilityService(bus=bus),
            event_store=event_store,
            aggregates=AggregateService(bus=bus, store=event_store),
        )


def services(request: HTTPConnection) -> Services:
    """The process's services, built on first use (so the app pickles cleanly into Ray Serve)."""
    state = request.app.state
    if getattr(state, "services", None) is None:
        state.services = Services.create(state.settings)
    found: Services = state.services
    return found


async def _services(request: HTTPConnection) -> Services:
    return services(request)  # async: FastAPI runs a plain dependency in a worker thread


Svc = Annotated[Services, Depends(_services)]  # what route handlers take
