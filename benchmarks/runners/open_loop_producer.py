"""An open-loop publisher through the SDK (EventPublishingService.publish_events): event i is due
at t0 + i/rate and carries that due time as its event time, so downstream latency is measured
from when the event should have been published and a stalled publisher cannot hide delays.
Every millisecond the events that are due go out as one publish_events call, without waiting
for earlier calls (open loop). Prints how far behind schedule the sending fell.

    python -m benchmarks.runners.open_loop_producer --bootstrap B --redis URL --stream-id S \
        --rate 5000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks.datagen import TENANT
from benchmarks.runners.common import Clock
from cluster.services.publishing import EventPublishingService
from cluster.settings import Settings
from pipelines.envelope import EventIn

TICK_S = 0.001


def event(i: int, keys: int, time_ms: int) -> EventIn:
    return EventIn(
        event_type="order.placed",
        source_capability="shop",
        aggregate_id=f"k{i % keys:04d}",
        aggregate_type="Order",
        event_time=time_ms,
        payload={"amount": i % 100},
    )


async def produce(args: argparse.Namespace) -> None:
    settings = Settings(kafka_bootstrap_servers=args.bootstrap, redis_url=args.redis)
    service = EventPublishingService(settings)
    await service.publish_events(
        [event(0, args.keys, int(time.time() * 1000))], args.stream_id, TENANT, "loader"
    )  # connections warm
    total = int(args.rate * args.seconds)
    clock = Clock()
    t0_wall = time.time() + 0.1
    t0 = time.perf_counter() + 0.1
    sent = 0
    behind_max = 0.0
    pending: set[asyncio.Task[object]] = set()
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - t0) * args.rate) + 1) if now >= t0 else 0
        if due > sent:
            behind_max = max(behind_max, now - (t0 + sent / args.rate))
            batch = [
                event(i, args.keys, int((t0_wall + i / args.rate) * 1000)) for i in range(sent, due)
            ]
            task = asyncio.create_task(
                service.publish_events(batch, args.stream_id, TENANT, "loader")
            )
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent = due
        await asyncio.sleep(TICK_S)
    await asyncio.gather(*pending)
    clock.report(sent, behind_max_s=behind_max, t0_wall=t0_wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--bootstrap", "--redis", "--stream-id"):
        parser.add_argument(name, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--keys", type=int, default=1_000)
    asyncio.run(produce(parser.parse_args()))


if __name__ == "__main__":
    main()
