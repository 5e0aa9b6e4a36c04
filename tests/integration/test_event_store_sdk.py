"""The event store through the Python SDK on the real stack: an aggregate folded with your own
function and from a snapshot, and a stream (JSON and Arrow-batched records) replayed into a
Polars DataFrame that agrees with what a stock consumer reads from the topic."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import polars as pl

from cluster.models.streams import StreamConfig
from cluster.services.bus import shared_bus
from cluster.settings import Settings
from event_streaming_bus import (
    AggregateService,
    AggregateSnapshot,
    AppendEvent,
    AppendRequest,
    EventIn,
    EventPublishingService,
    EventStoreService,
    EventStreamingService,
    StoredEvent,
    WrongExpectedVersion,
)
from tests.integration.conftest import read_topic

TENANT = "acme"


def test_fold_snapshot_and_replay_into_polars(stack: Settings, unique: str) -> None:
    asyncio.run(_scenario(stack, unique))


async def _scenario(stack: Settings, unique: str) -> None:
    streams = EventStreamingService(stack)
    config = StreamConfig(
        stream_name=f"es-sdk-{unique}", topic_name=f"es-sdk-{unique}", source_capability="sdk"
    )
    stream_id = await streams.create_stream(config, TENANT, "sdk")
    aggregates, store = AggregateService(stack), EventStoreService(stack)
    try:
        deposits = [AppendEvent(type="deposited", payload={"amount": n}) for n in (10, 20, 30)]
        done = await aggregates.append(
            "Account",
            f"acct-{unique}",
            AppendRequest(stream_id=stream_id, expected_version="no_stream", events=deposits),
            TENANT,
            "sdk",
        )
        assert done.version == 3
        try:
            await aggregates.append(
                "Account",
                f"acct-{unique}",
                AppendRequest(stream_id=stream_id, expected_version="no_stream", events=deposits),
                TENANT,
                "sdk",
            )
        except WrongExpectedVersion as exc:
            assert exc.current_version == 3
        else:
            raise AssertionError("a second no_stream append must conflict")

        def balance(total: int, event: StoredEvent) -> int:
            return total + int(event.event["data"]["amount"])

        version, total = await aggregates.fold("Account", f"acct-{unique}", TENANT, balance, 0)
        assert (version, total) == (3, 60)
        at_two = await aggregates.fold(
            "Account", f"acct-{unique}", TENANT, balance, 0, at_version=2
        )
        assert at_two == (2, 30)
        snapshot = AggregateSnapshot(version=2, state=30)
        await aggregates.save_snapshot("Account", f"acct-{unique}", TENANT, snapshot)
        loaded = await aggregates.load_snapshot("Account", f"acct-{unique}", TENANT)
        assert loaded == snapshot
        seen: list[int] = []

        def counting(total: int, event: StoredEvent) -> int:
            seen.append(event.version or 0)
            return balance(total, event)

        resumed = await aggregates.fold(
            "Account", f"acct-{unique}", TENANT, counting, 0, snapshot=loaded
        )
        assert resumed == (3, 60) and seen == [3]  # only what came after the snapshot

        publishing = EventPublishingService(stack)
        plain = [
            EventIn(
                event_type="ping",
                source_capability="sdk",
                aggregate_id=f"p{i}",
                aggregate_type="Probe",
                event_time=1_000 + i,
                payload={"i": i},
            )
            for i in range(4)
        ]
        await publishing.publish_events(plain, stream_id, TENANT, "sdk")
        frame = pl.DataFrame(
            {
                "event_type": ["bulk"] * 5,
                "source_capability": ["sdk"] * 5,
                "aggregate_id": [f"b{i}" for i in range(5)],
                "aggregate_type": ["Bulk"] * 5,
                "event_time": [2_000 + i for i in range(5)],
                "weight": [0.5 * i for i in range(5)],
            }
        )
        arrow = await publishing.publish_arrow(frame, stream_id, TENANT, "sdk")

        replay = await store.replay_frame(TENANT, stream_id=stream_id)
        assert replay.height == 3 + 4 + 5
        assert replay.get_column("time").is_sorted()
        assert replay.filter(pl.col("type") == "deposited").get_column("version").to_list() == [
            1,
            2,
            3,
        ]
        bulk = replay.filter(pl.col("type") == "bulk")
        assert bulk.get_column("data").struct.field("weight").to_list() == [0.0, 0.5, 1.0, 1.5, 2.0]
        records = read_topic(stack, f"esb.{TENANT}.es-sdk-{unique}", 3 + 4 + len(arrow.records))
        assert len(records) == 3 + 4 + len(arrow.records)  # a stock consumer: the same records
        ids = set(replay.get_column("event_id").to_list())
        assert {_id(r) for r in records if not _arrow(r)} <= ids

        only = await store.replay_frame(TENANT, stream_id=stream_id, event_types=["ping"])
        assert only.get_column("aggregate_id").to_list() == ["p0", "p1", "p2", "p3"]
    finally:
        await shared_bus(stack).close()  # the SDK services' shared clients


def _arrow(record: Any) -> bool:
    return ("esb-format", b"arrow-batch-v1") in (record.headers() or [])


def _id(record: Any) -> str:
    return str(orjson.loads(record.value())["id"])
