"""The SDK publishing Arrow-batched records: EventPublishingService.publish_arrow with frames of
--frame events (about 10,000 per Kafka record once split by partition), awaited one after
another as a plain SDK user would, then one sentinel per partition to close every window.
Reports the wall-clock time publishing began, so the harness can time through to results.

    python -m benchmarks.runners.arrow_publish --bootstrap B --redis URL --stream-id S \
        --events N --partitions 4 --base-ms MS
"""

from __future__ import annotations

import argparse
import asyncio
import time

import polars as pl

from benchmarks.datagen import TENANT, make_workload, sentinel_events
from benchmarks.runners.common import Clock
from cluster.services.publishing import EventPublishingService
from cluster.settings import Settings


def sdk_frame(events: pl.DataFrame) -> pl.DataFrame:
    """The columns publish_arrow takes; `amount` is the payload field."""
    return events.select(
        pl.col("id").alias("event_id"),
        pl.lit("order.placed").alias("event_type"),
        pl.lit("shop").alias("source_capability"),
        pl.col("key").alias("aggregate_id"),
        pl.lit("Order").alias("aggregate_type"),
        pl.col("time_ms").alias("event_time"),
        pl.col("amount").cast(pl.Int64),
    )


async def publish(args: argparse.Namespace) -> None:
    settings = Settings(kafka_bootstrap_servers=args.bootstrap, redis_url=args.redis)
    workload = make_workload(args.events, args.partitions, base_ms=args.base_ms)
    frames = [
        sdk_frame(workload.events.slice(start, args.frame))
        for start in range(0, workload.count, args.frame)
    ]
    sentinels = sdk_frame(sentinel_events(args.partitions, args.base_ms))
    service = EventPublishingService(settings)
    clock = Clock()
    began_wall = time.time()
    records = 0
    for frame in [*frames, sentinels]:
        receipt = await service.publish_arrow(frame, args.stream_id, TENANT, "loader")
        records += len(receipt.records)
    clock.report(workload.count, began_wall=began_wall, records=records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--bootstrap", "--redis", "--stream-id"):
        parser.add_argument(name, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--base-ms", type=int, required=True)
    parser.add_argument("--frame", type=int, default=40_000)
    asyncio.run(publish(parser.parse_args()))


if __name__ == "__main__":
    main()
