"""The demo behind `make run`: one stream in tenant `demo` and a few order events."""

from __future__ import annotations

from cluster.models.streams import StreamConfig
from cluster.services.bus import shared_bus
from cluster.services.publishing import EventPublishingService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings
from pipelines.envelope import EventConfig

DEMO_TENANT = "demo"
# Fixed, early event times: the README's pipeline example publishes later ones, never "late".
DEMO_TIME_MS = 1_767_258_000_000  # 2026-01-01T09:00:00Z
DEMO_STREAM = StreamConfig(
    stream_name="orders", topic_name="orders", source_capability="shop", partitions=3
)


async def run_demo(settings: Settings) -> str:
    """Create (or reuse) the demo stream, publish five events, print how to read them back."""
    try:
        return await _demo(settings)
    finally:
        await shared_bus(settings).close()  # no client left retrying once the stack stops


async def _demo(settings: Settings) -> str:
    streams = EventStreamingService(settings)
    made = await streams.apply_stream(DEMO_STREAM, DEMO_TENANT, "demo")
    publisher = EventPublishingService(settings)
    for n in range(1, 6):
        receipt = await publisher.publish_event(
            event_config=EventConfig(
                event_type="order.placed",
                source_capability="shop",
                aggregate_id=f"order-{n}",
                aggregate_type="Order",
            ),
            payload={"order_no": n, "amount": 10.5 * n, "currency": "EUR"},
            event_time=DEMO_TIME_MS + n * 1000,
            stream_id=made.stream_id,
            tenant_id=DEMO_TENANT,
            user_id="demo",
        )
        print(
            f"[esb] demo event {receipt.event_id} -> partition {receipt.partition} "
            f"offset {receipt.offset}"
        )
    print(
        f"[esb] demo stream {made.stream_id} ({made.kafka_topic}); read it back with a token:\n"
        f"  TOKEN=$(.venv/bin/esb tokens create --tenant {DEMO_TENANT} --role consumer)\n"
        f'  curl -H "Authorization: Bearer $TOKEN" '
        f"{settings.api_url}/api/v1/streams/{made.stream_id}/events"
    )
    return made.stream_id
