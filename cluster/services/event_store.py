"""EventStoreService: events by id, queries in event-time order, replay into Polars, and the
rebuild of the indexes (cluster.stores.event_index) from the topics.

Query pages follow one total order, (event time, stream id, partition, offset, index in
record), and the cursor is the last position answered: a page holds the matching events
strictly after it. So no event is answered twice, and none indexed before the query began is
skipped, whatever is published meanwhile (an event published later with an event time before
the cursor is not in later pages: it sorts before them). The first page waits (up to
INDEX_WAIT_S) until the indexer has caught up with the streams' end offsets as they were when
the query came in, so events acknowledged before a query are in it.

Two replays into Polars: replay_frame answers a query's events (from the indexes) as one
frame in event-time order; replay_frames reads a stream's topic itself (cluster.services.replay)
from a subscription's start position, as frames, for history and, with `follow`, live events.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

import orjson
import polars as pl

from cluster import naming
from cluster.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from cluster.models.event_store import EventQuery, QueryPage, StoredEvent
from cluster.models.streams import StreamRecord
from cluster.models.subscriptions import StartPosition
from cluster.services.bus import Bus, shared_bus
from cluster.services.replay import ReplayStart, checked_batch_size, replay
from cluster.settings import Settings
from cluster.stores.event_index import (
    IndexedEvent,
    aggregate_value,
    event_id_of,
    read_stored,
)
from pipelines.event_frames import VERSION_ATTRIBUTE, frame_of

INDEX_WAIT_S = 10.0
REBUILD_WAIT_S = 120.0
FETCH = 500  # zset members read per round trip while filling a page


class Indexers(Protocol):
    """What starts and stops the indexer (actors.indexer.IndexerLauncher, or a test's fake)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


Position = tuple[int, str, str]  # event time, stream id, member


def indexed(stream: StreamRecord) -> StreamRecord:
    """The stream, when the event store indexes it; a Conflict that says how to turn it on."""
    if not stream.event_store:
        raise Conflict(
            f"stream {stream.stream_name!r} is not in the event store (event_store: false). "
            "Fix: apply the stream with event_store: true, then `esb events rebuild-index`."
        )
    return stream


def encode_cursor(position: Position) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode()


def decode_cursor(cursor: str) -> Position:
    try:
        t, s, m = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(t), str(s), str(m)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("cursor is not one this API handed out: pass next_cursor back") from None


def _matches(event: dict[str, Any], q: EventQuery) -> bool:
    if q.event_types and not any(
        fnmatch.fnmatchcase(str(event.get("type")), glob) for glob in q.event_types
    ):
        return False
    checks = (
        ("aggregateid", q.aggregate_id),
        ("aggregatetype", q.aggregate_type),
        ("correlationid", q.correlation_id),
        ("userid", q.user_id),
    )
    return all(want is None or event.get(attr) == want for attr, want in checks)


def _index_key(stream_id: str, q: EventQuery) -> str:
    """The most selective index the query names; the rest is checked per event."""
    if q.aggregate_type and q.aggregate_id:
        return naming.event_index_key(
            stream_id, "agg", aggregate_value(q.aggregate_type, q.aggregate_id)
        )
    if q.correlation_id:
        return naming.event_index_key(stream_id, "corr", q.correlation_id)
    if q.user_id:
        return naming.event_index_key(stream_id, "user", q.user_id)
    types = q.event_types or []
    if len(types) == 1 and not any(c in types[0] for c in "*?["):
        return naming.event_index_key(stream_id, "type", types[0])
    return naming.event_index_key(stream_id, "time")


class EventStoreService:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bus: Bus | None = None,
        indexers: Indexers | None = None,
    ) -> None:
        self._bus = bus or shared_bus(settings)
        self._indexers = indexers

    async def get_event(
        self, event_id: str, tenant_id: str, stream_id: str | None = None
    ) -> StoredEvent:
        """The event with this id in the tenant (in `stream_id`, when given); NotFound else.
        An id in several streams answers the first stream id in order (give stream_id)."""
        key = naming.event_key(tenant_id, event_id)
        if stream_id is not None:
            record = indexed(await self._bus.streams.resolve(stream_id, tenant_id))
            raw: Any = await self._bus.redis.hget(key, record.stream_id)
            found: dict[str, bytes] = {record.stream_id: raw} if raw else {}
        else:
            every: Any = await self._bus.redis.hgetall(key)
            found = {k.decode(): v for k, v in every.items()}
        if not found:
            raise NotFound(f"event {event_id!r} not found (or not indexed yet)")
        first = sorted(found)[0]
        item = IndexedEvent.from_stored(tenant_id, first, found[first])
        stream = await self._bus.streams.get(first, tenant_id)
        return (await self.opened(stream, [item]))[0]

    async def opened(
        self, stream: StreamRecord, items: Sequence[IndexedEvent]
    ) -> list[StoredEvent]:
        """StoredEvents of `items` of `stream`, decrypted when the stream is encrypted."""
        cipher = self._bus.cipher(stream)
        events = [i.event for i in items]
        if cipher is not None:
            events = await asyncio.to_thread(lambda: [cipher.open(e) for e in events])
        return [
            StoredEvent(
                stream_id=i.stream_id,
                partition=i.partition,
                offset=i.offset,
                index=i.index,
                event=e,
                version=e.get(VERSION_ATTRIBUTE),
            )
            for i, e in zip(items, events, strict=True)
        ]

    async def _streams(self, q: EventQuery, tenant_id: str) -> list[StreamRecord]:
        if not q.streams:
            return [s for s in await self._bus.streams.list(tenant_id) if s.event_store]
        records = [indexed(await self._bus.streams.resolve(s, tenant_id)) for s in q.streams]
        return list({r.stream_id: r for r in records}.values())

    async def query(self, q: EventQuery, tenant_id: str) -> QueryPage:
        streams = await self._streams(q, tenant_id)
        after = decode_cursor(q.cursor) if q.cursor else None
        if after is None:
            await self.wait_indexed(streams)
        start, end = q.window_ms()
        found: list[tuple[Position, IndexedEvent, StreamRecord]] = []
        more = False
        for stream in streams:
            items, has_more = await self._scan(stream, q, tenant_id, after, start, end)
            found.extend(((i.time_ms, stream.stream_id, i.member), i, stream) for i in items)
            more = more or has_more
        found.sort(key=lambda f: f[0])
        more = more or len(found) > q.limit
        page = found[: q.limit]
        opened: dict[tuple[str, int, int, int], StoredEvent] = {}
        for stream in streams:  # decrypted per stream, answered in the page's order
            mine = [item for _, item, s in page if s.stream_id == stream.stream_id]
            for e in await self.opened(stream, mine) if mine else []:
                opened[(e.stream_id, e.partition, e.offset, e.index)] = e
        events = [opened[(i.stream_id, i.partition, i.offset, i.index)] for _, i, _ in page]
        cursor = encode_cursor(page[-1][0]) if page and more else None
        return QueryPage(events=events, next_cursor=cursor)

    async def _scan(
        self,
        stream: StreamRecord,
        q: EventQuery,
        tenant_id: str,
        after: Position | None,
        start: int | None,
        end: int | None,
    ) -> tuple[list[IndexedEvent], bool]:
        """Up to q.limit matching events of one stream after the cursor; and whether more may
        follow."""
        redis, key = self._bus.redis, _index_key(stream.stream_id, q)
        low = start if start is not None else 0
        if after is not None:
            low = max(low, after[0])
        high: str | int = f"({end}" if end is not None else "+inf"
        out: list[IndexedEvent] = []
        skip, last = 0, (-1, "")
        while True:
            rows: Any = await redis.zrange(
                key, low, high, byscore=True, offset=skip, num=FETCH, withscores=True
            )
            skip += len(rows)
            # An insert during the scan shifts offsets forward: rows up to `last` were seen.
            members = [(m.decode(), int(score)) for m, score in rows]
            members = [(m, t) for m, t in members if (t, m) > last]
            if members:
                last = (members[-1][1], members[-1][0])
            if after is not None:
                members = [(m, t) for m, t in members if (t, stream.stream_id, m) > after]
            if members:
                ids = [event_id_of(m) for m, _ in members]
                for raw in await read_stored(redis, tenant_id, stream.stream_id, ids):
                    if raw is None:
                        continue
                    item = IndexedEvent.from_stored(tenant_id, stream.stream_id, raw)
                    if _matches(item.event, q):
                        out.append(item)
                        if len(out) > q.limit:
                            return out, True
            if len(rows) < FETCH:
                return out, False

    async def wait_indexed(
        self, streams: Sequence[StreamRecord], deadline_s: float = INDEX_WAIT_S
    ) -> bool:
        """Until the indexer has written every record the streams held when called (True), or
        the deadline passed (False: the indexer is behind; the answer holds what is indexed)."""
        targets = {}
        for stream in (s for s in streams if s.event_store):  # the others are never indexed
            marks = await asyncio.to_thread(self._bus.topics.watermarks, stream.kafka_topic)
            targets[stream.stream_id] = {p: high for p, (low, high) in marks.items() if high > low}
        end = time.monotonic() + deadline_s
        delay = 0.01
        while True:
            behind = False
            for stream_id, wanted in targets.items():
                if not wanted:
                    continue
                done = await self._bus.redis.hgetall(naming.event_index_key(stream_id, "progress"))
                have = {int(p): int(o) for p, o in done.items()}
                behind = behind or any(have.get(p, 0) < o for p, o in wanted.items())
            if not behind:
                return True
            if time.monotonic() > end:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def rebuild_indexes(self, streams: Sequence[StreamRecord] = (), wait: bool = True) -> int:
        """Drop every index and re-read the topics from the start (a new indexer group
        generation). Run it while no aggregate appends are in flight: their reservations are
        dropped too. With `wait`, answers once the given streams (default: all) are indexed
        again, and raises ServiceUnavailable when the indexer has not caught up within
        REBUILD_WAIT_S (the re-read goes on in the background). Answers the new generation."""
        if self._indexers is None:
            raise ServiceUnavailable("this service was built without an indexer launcher")
        await asyncio.to_thread(self._indexers.stop)
        redis = self._bus.redis
        generation = int(await redis.incr(naming.INDEXER_GENERATION))
        for pattern in naming.event_store_patterns():
            batch: list[bytes] = []
            async for key in redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await redis.unlink(*batch)
                    batch = []
            if batch:
                await redis.unlink(*batch)
        await asyncio.to_thread(self._indexers.start)
        if wait and not await self.wait_indexed(
            streams or await self._bus.streams.list(), deadline_s=REBUILD_WAIT_S
        ):
            raise ServiceUnavailable(
                f"the indexes were dropped and the indexer restarted (generation {generation}), "
                f"but it has not caught up after {REBUILD_WAIT_S:.0f}s; it goes on re-reading in "
                "the background and queries answer what is indexed so far. Do not rebuild "
                "again: watch `esb events indexer-status`"
            )
        return generation

    async def replay_frame(
        self, tenant_id: str, query: EventQuery | None = None, **filters: Any
    ) -> pl.DataFrame:
        """Every event of a query (or of `filters`: stream_id=..., event_types=[...], ...) as
        one Polars DataFrame in event-time order: envelope columns plus `data` (a struct of the
        payload fields). Arrow-batched records' events are rows like any other."""
        q = query or EventQuery(**filters, limit=1000)
        rows: list[dict[str, Any]] = []
        while True:
            page = await self.query(q, tenant_id)
            rows.extend(_row(e) for e in page.events)
            if page.next_cursor is None:
                break
            q = q.model_copy(update={"cursor": page.next_cursor})
        return frame_of(rows)

    def replay_frames(
        self,
        tenant_id: str,
        stream_id: str,
        start_position: StartPosition = "earliest",
        start_offset: int | None = None,
        start_time_ms: int | None = None,
        *,
        follow: bool = False,
        batch_size: int = 5000,
        event_types: Sequence[str] | None = None,
    ) -> AsyncGenerator[pl.DataFrame, None]:
        """The stream's topic read from a subscription's start position, as DataFrames of at
        most `batch_size` records each (replay_frame's columns; rows in partition and offset
        order within a frame; `event_types` globs filter). Without `follow`, ends at the end
        offsets the topic had when iteration began; with it, goes on with live events until
        the caller stops iterating. Reads Kafka directly: no index is involved."""
        start = ReplayStart(start_position, start_offset, start_time_ms)
        checked_batch_size(batch_size)
        return replay(
            self._bus, tenant_id, stream_id, start, follow, batch_size, event_types or None
        )


def _row(e: StoredEvent) -> dict[str, Any]:
    ev = e.event
    return {
        "event_id": ev.get("id"),
        "type": ev.get("type"),
        "time": ev.get("time"),
        "aggregate_type": ev.get("aggregatetype"),
        "aggregate_id": ev.get("aggregateid"),
        "version": e.version,
        "correlation_id": ev.get("correlationid"),
        "user_id": ev.get("userid"),
        "stream_id": e.stream_id,
        "partition": e.partition,
        "offset": e.offset,
        "data": ev.get("data") if isinstance(ev.get("data"), dict) else {},
    }
