"""EventStoreService.replay_frames on the real stack: a stream's history (JSON and Arrow-batched
records) as Polars frames that equal what was published and what the index-backed replay_frame
answers, each start position's slice against a stock consumer's reading of the topic, live
events with follow=True, and an encrypted stream decrypted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import polars as pl

from cluster.models.streams import StreamConfig
from cluster.services.bus import shared_bus
from cluster.settings import Settings
from event_streaming_bus import (
    EventIn,
    EventPublishingService,
    EventStoreService,
    EventStreamingService,
    concat_frames,
)
from tests.integration.conftest import read_topic
from tests.integration.encryption_helpers import canary, encrypted_stream

TENANT = "acme"
DEADLINE_S = 60.0


def test_history_start_positions_and_follow(stack: Settings, unique: str) -> None:
    asyncio.run(_history_and_follow(stack, unique))


def test_an_encrypted_stream_replays_decrypted(stack: Settings, unique: str) -> None:
    asyncio.run(_encrypted(stack, unique))


def _events(prefix: str, count: int, first: int = 0) -> list[EventIn]:
    return [
        EventIn(
            event_type="order.placed" if i % 2 else "order.paid",
            source_capability="sdk",
            aggregate_id=f"{prefix}-o{i % 5}",
            aggregate_type="Order",
            event_id=f"{prefix}-{i}",
            event_time=1_000 + i,
            payload={"amount": i, "note": f"n{i}"} if i % 3 else {"amount": i},
        )
        for i in range(first, first + count)
    ]


def _bulk(prefix: str, count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [f"{prefix}-b{i}" for i in range(count)],
            "event_type": ["bulk"] * count,
            "source_capability": ["sdk"] * count,
            "aggregate_id": [f"{prefix}-b{i % 4}" for i in range(count)],
            "aggregate_type": ["Bulk"] * count,
            "event_time": [5_000 + i for i in range(count)],
            "weight": [0.25 * i for i in range(count)],
        }
    )


async def _collect(frames: AsyncIterator[pl.DataFrame]) -> pl.DataFrame:
    return concat_frames([f async for f in frames])


def _payloads(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """event id -> payload fields that are set."""
    return {
        row["event_id"]: {k: v for k, v in (row["data"] or {}).items() if v is not None}
        for row in frame.select("event_id", "data").to_dicts()
    }


def _record_id(record: Any) -> str:
    """A JSON record's event id ("" for an Arrow-batched record)."""
    if ("esb-format", b"arrow-batch-v1") in (record.headers() or []):
        return ""
    return str(orjson.loads(record.value())["id"])


def _positions(frame: pl.DataFrame) -> list[tuple[int, int, str]]:
    return sorted(frame.select("partition", "offset", "event_id").rows())


async def _history_and_follow(stack: Settings, unique: str) -> None:
    streams = EventStreamingService(stack)
    config = StreamConfig(
        stream_name=f"es-replay-{unique}",
        topic_name=f"es-replay-{unique}",
        source_capability="sdk",
        partitions=2,
    )
    stream_id = await streams.create_stream(config, TENANT, "sdk")
    topic = f"esb.{TENANT}.es-replay-{unique}"
    publishing, store = EventPublishingService(stack), EventStoreService(stack)
    try:
        plain = _events("j", 12)
        await publishing.publish_events(plain, stream_id, TENANT, "sdk")
        arrow = await publishing.publish_arrow(_bulk("a", 9), stream_id, TENANT, "sdk")
        later = _events("k", 6)
        await publishing.publish_events(later, stream_id, TENANT, "sdk")
        records = read_topic(stack, topic, 12 + len(arrow.records) + 6)
        assert len(records) == 12 + len(arrow.records) + 6

        # History: every event published, payloads and envelope as sent, in bulk frames.
        history = await _collect(store.replay_frames(TENANT, stream_id, batch_size=4))
        expected = {e.event_id: e.payload for e in [*plain, *later]}
        expected |= {f"a-b{i}": {"weight": 0.25 * i} for i in range(9)}
        assert _payloads(history) == expected
        assert history.height == history.get_column("event_id").n_unique() == 27
        bulk = history.filter(pl.col("type") == "bulk").sort("event_id")
        assert bulk.get_column("aggregate_type").unique().to_list() == ["Bulk"]
        assert bulk.get_column("time").dt.epoch("ms").sort().to_list() == [
            5_000 + i for i in range(9)
        ]
        by_id = {e.event_id: e for e in [*plain, *later]}
        json_rows = history.filter(pl.col("type") != "bulk")
        for row in json_rows.with_columns(pl.col("time").dt.epoch("ms")).to_dicts():
            sent = by_id[row["event_id"]]
            assert (row["type"], row["aggregate_id"]) == (sent.event_type, sent.aggregate_id)
            assert row["time"] == sent.event_time
            assert row["user_id"] == "sdk" and row["stream_id"] == stream_id
        stock = sorted((r.partition(), r.offset()) for r in records)
        assert sorted(set(history.select("partition", "offset").rows())) == stock

        # The index-backed replay_frame answers the same events, columns and values.
        indexed = await _eventually(lambda: _indexed(store, stream_id, 27), "the index")
        assert _positions(indexed) == _positions(history)
        assert _payloads(indexed) == _payloads(history)
        columns = [c for c in history.columns if c != "data"]
        assert (
            indexed.select(columns)
            .sort("event_id")
            .equals(history.select(columns).sort("event_id"))
        )

        # Start positions, each against the stock consumer's records.
        latest = await _collect(store.replay_frames(TENANT, stream_id, "latest"))
        assert latest.height == 0
        from_offset = await _collect(store.replay_frames(TENANT, stream_id, "offset", 3))
        assert _positions(from_offset) == [x for x in _positions(history) if x[1] >= 3]
        cut = min(r.timestamp()[1] for r in records if _record_id(r).startswith("k-"))
        first_at: dict[int, int] = {}  # per partition, the first offset stamped at/after `cut`
        for r in sorted(records, key=lambda r: (r.partition(), r.offset())):
            if r.timestamp()[1] >= cut:
                first_at.setdefault(r.partition(), r.offset())
        since = await _collect(store.replay_frames(TENANT, stream_id, "timestamp", None, cut))
        assert _positions(since) == [
            x for x in _positions(history) if x[0] in first_at and x[1] >= first_at[x[0]]
        ]
        assert {e.event_id for e in later} <= set(since.get_column("event_id").to_list())
        only_bulk = await _collect(store.replay_frames(TENANT, stream_id, event_types=["bulk"]))
        assert sorted(only_bulk.get_column("event_id").to_list()) == sorted(
            f"a-b{i}" for i in range(9)
        )

        await _follow_from_earliest(store, publishing, stream_id, history.height)
        await _follow_from_latest(store, publishing, stream_id)
    finally:
        await shared_bus(stack).close()


async def _follow_from_earliest(
    store: EventStoreService, publishing: EventPublishingService, stream_id: str, old: int
) -> None:
    """History first, then events published after the replay had read it, in one iteration."""
    frames = store.replay_frames(TENANT, stream_id, "earliest", follow=True, batch_size=5)
    seen: list[str] = []
    live = _events("live", 7)
    try:
        async with asyncio.timeout(DEADLINE_S):
            async for frame in frames:
                seen.extend(frame.get_column("event_id").to_list())
                if len(seen) == old:  # the history is read: now publish while following
                    await publishing.publish_events(live, stream_id, TENANT, "sdk")
                if len(seen) >= old + len(live):
                    break
    finally:
        await frames.aclose()  # closes its consumer now, not when garbage-collected
    assert len(seen) == len(set(seen)) == old + len(live)
    assert set(seen[old:]) == {e.event_id for e in live}


async def _follow_from_latest(
    store: EventStoreService, publishing: EventPublishingService, stream_id: str
) -> None:
    """Nothing from before the replay started; what is published while it runs arrives. The
    replay gives no signal when it has taken its start offsets, so events are published until
    one arrives."""
    frames = store.replay_frames(TENANT, stream_id, "latest", follow=True)
    first = asyncio.ensure_future(anext(frames))
    sent: list[str] = []
    end = time.monotonic() + DEADLINE_S
    try:
        while not first.done() and time.monotonic() < end:
            (event,) = _events(f"tail{len(sent)}", 1)
            await publishing.publish_events([event], stream_id, TENANT, "sdk")
            sent.append(str(event.event_id))
            await asyncio.wait([first], timeout=1.0)
        frame = await asyncio.wait_for(first, timeout=max(1.0, end - time.monotonic()))
    finally:
        first.cancel()  # a no-op once it answered; else the replay stops mid-poll
        await asyncio.wait([first])
        await frames.aclose()
    got = frame.get_column("event_id").to_list()
    assert got and set(got) <= set(sent)  # only events published while following


async def _indexed(store: EventStoreService, stream_id: str, count: int) -> pl.DataFrame | None:
    frame = await store.replay_frame(TENANT, stream_id=stream_id)
    return frame if frame.height == count else None


async def _eventually(condition: Any, what: str) -> Any:
    end = time.monotonic() + DEADLINE_S * 2
    delay = 0.1
    while time.monotonic() < end:
        if (found := await condition()) is not None:
            return found
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    raise AssertionError(f"timed out waiting for {what}")


async def _encrypted(stack: Settings, unique: str) -> None:
    stream = await encrypted_stream(stack, TENANT, f"es-replay-enc-{unique}", partitions=2)
    publishing, store = EventPublishingService(stack), EventStoreService(stack)
    secret = canary()
    try:
        events = [
            EventIn(
                event_type="card.added",
                source_capability="tests",
                aggregate_id=f"card-{i % 3}",
                aggregate_type="Card",
                event_id=f"enc-{i}",
                payload={"note": secret, "seq": i},
            )
            for i in range(5)
        ]
        await publishing.publish_events(events, stream.stream_id, TENANT, "sdk")
        bulk = _bulk("eb", 3).with_columns(pl.lit(secret).alias("note"))
        await publishing.publish_arrow(bulk, stream.stream_id, TENANT, "sdk")
        records = read_topic(stack, stream.kafka_topic, 8)
        assert len(records) == 8 and not any(secret.encode() in (r.value() or b"") for r in records)
        frame = await _collect(store.replay_frames(TENANT, stream.stream_id))
        payloads = _payloads(frame)
        assert {k: v for k, v in payloads.items() if k.startswith("enc-")} == {
            f"enc-{i}": {"note": secret, "seq": i} for i in range(5)
        }
        assert {k: v["note"] for k, v in payloads.items() if k.startswith("eb-")} == {
            f"eb-b{i}": secret for i in range(3)
        }
    finally:
        await shared_bus(stack).close()
