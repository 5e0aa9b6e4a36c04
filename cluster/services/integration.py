"""APGEventStreamingIntegration: event-driven communication between capabilities in a few
lines. A capability registers what it publishes (event types with schemas) and consumes,
publishes as itself (its `source_capability`; payloads checked against the schemas), and wires
a handler (in-process, a pull subscription) or a webhook to another capability's events.

    bus = APGEventStreamingIntegration(event_streaming_service=EventStreamingService(),
                                       publishing_service=EventPublishingService(),
                                       consumption_service=EventConsumptionService())
    await bus.register_capability("billing", tenant_id="acme", stream="shop-events",
                                  publishes={"invoice.issued": "invoices-value"})
    await bus.on_event("orders", "order.created", handle_order)   # handler(event) per event
    await bus.publish("invoice.issued", {"invoice_id": "i-1"}, aggregate_id="i-1",
                      aggregate_type="Invoice")

Handlers get each event as a CloudEvent dict, at least once (a handler that raises is logged,
and the subscription moves on); `close()` stops them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cluster.errors import InvalidInput
from cluster.models.capabilities import CapabilityConfig, CapabilityRecord
from cluster.models.subscriptions import SubscriptionConfig
from cluster.services.capabilities import CapabilityService
from cluster.services.consumption import EventConsumptionService
from cluster.services.publishing import EventPublishingService, PublishReceipt
from cluster.services.pull import pull_events
from cluster.services.streaming import EventStreamingService
from pipelines.envelope import EventConfig

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]
log = logging.getLogger(__name__)


class APGEventStreamingIntegration:
    def __init__(
        self,
        event_streaming_service: EventStreamingService,
        publishing_service: EventPublishingService,
        consumption_service: EventConsumptionService,
        capability_service: CapabilityService | None = None,
    ) -> None:
        self.streams = event_streaming_service
        self.publishing = publishing_service
        self.consumption = consumption_service
        self.capabilities = capability_service or CapabilityService(bus=publishing_service.bus)
        self._me: CapabilityRecord | None = None
        self._user_id = "sdk"
        self._handlers: list[asyncio.Task[None]] = []

    @property
    def capability(self) -> CapabilityRecord:
        if self._me is None:
            raise InvalidInput("register_capability first: it says who publishes and consumes")
        return self._me

    async def register_capability(
        self,
        name: str,
        *,
        tenant_id: str,
        stream: str,
        publishes: dict[str, int | str] | None = None,
        consumes: list[str] | None = None,
        description: str = "",
        user_id: str = "sdk",
    ) -> CapabilityRecord:
        """Register this capability (again: updates it); what it publishes goes to `stream`."""
        config = CapabilityConfig(
            name=name,
            stream=stream,
            description=description,
            publishes=publishes or {},
            consumes=consumes or [],
        )
        self._me = await self.capabilities.register(config, tenant_id)
        self._user_id = user_id
        return self._me

    async def publish(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        aggregate_id: str,
        aggregate_type: str,
        **extra: Any,
    ) -> PublishReceipt:
        """Publish as this capability; a payload that does not match the type's schema raises
        SchemaViolation. Only the event types the capability registered may be published."""
        me = self.capability
        if event_type not in me.publishes:
            raise InvalidInput(
                f"capability {me.name!r} did not register {event_type!r}; add it to publishes"
            )
        config = EventConfig(
            event_type=event_type,
            source_capability=me.name,
            aggregate_id=aggregate_id,
            aggregate_type=aggregate_type,
        )
        return await self.publishing.publish_event(
            config, payload, me.stream_id, me.tenant_id, self._user_id, **extra
        )

    async def _subscribe(
        self, capability: str, event_types: str | list[str], webhook_url: str | None, start: str
    ) -> str:
        me = self.capability
        other = await self.capabilities.get(me.tenant_id, capability)
        patterns = [event_types] if isinstance(event_types, str) else event_types
        kind = "hook" if webhook_url else "pull"
        config = SubscriptionConfig(
            subscription_name=f"{me.name} <- {other.name}",
            stream_id=other.stream_id,
            consumer_group_id=f"cap-{me.name}-{other.name}-{kind}"[:128],
            event_type_patterns=patterns,
            webhook_url=webhook_url,
            start_position=start,  # type: ignore[arg-type]
        )
        subscription_id = await self.consumption.create_subscription(config, me.tenant_id, me.name)
        self._me = await self.capabilities.add_consumed(me.tenant_id, me.name, patterns)
        return subscription_id

    async def on_event(
        self,
        capability: str,
        event_types: str | list[str],
        handler: Handler,
        *,
        start_position: str = "earliest",
    ) -> str:
        """Call `handler(event)` for each event of `capability` whose type matches (globs);
        answers the pull subscription's id. Runs until close()."""
        subscription_id = await self._subscribe(capability, event_types, None, start_position)
        task = asyncio.create_task(self._run(subscription_id, self.capability.tenant_id, handler))
        self._handlers.append(task)
        return subscription_id

    async def on_event_webhook(
        self,
        capability: str,
        event_types: str | list[str],
        webhook_url: str,
        *,
        start_position: str = "earliest",
    ) -> str:
        """POST each matching event of `capability` to `webhook_url` (signed, retried, dead-
        lettered: a push subscription); answers its id."""
        return await self._subscribe(capability, event_types, webhook_url, start_position)

    async def _run(self, subscription_id: str, tenant_id: str, handler: Handler) -> None:
        async for event in pull_events(self.publishing.bus, subscription_id, tenant_id):
            try:
                outcome = handler(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception(
                    "handler of subscription %s failed on %s", subscription_id, event.get("id")
                )

    async def close(self) -> None:
        """Stop the handlers (their subscriptions stay; cancel them to stop for good)."""
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        self._handlers.clear()
