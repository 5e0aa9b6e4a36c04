"""Replay of a stream's topic into Polars DataFrames, from a subscription's start positions.

A plain consumer assigned to every partition (a throwaway group id that never joins a group
or commits) reads from the start position: `earliest`, `latest`, `offset` (per partition,
clamped to what the partition holds) or `timestamp` (the first record whose Kafka timestamp
is at or after it), resolved as cluster.services.subscriptions resolves them. Without
`follow` the replay ends at the end offsets the partitions had when it began; with `follow`
it goes on with live events until the caller stops iterating. Records are read committed
(aborted transactions never show), decrypted on an encrypted stream (a record that does not
decrypt fails the replay: it never hides an event), and decoded in bulk
(pipelines.event_frames). Partitions added to the topic after the replay began are not read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import get_args

import polars as pl
from confluent_kafka import TopicPartition

from cluster import naming
from cluster.errors import InvalidInput
from cluster.kafka.clients import new_consumer, offsets_for_time
from cluster.kafka.topics import TopicAdmin
from cluster.models.streams import StreamRecord
from cluster.models.subscriptions import StartPosition
from cluster.security.event_crypto import EventCipher
from cluster.services.bus import Bus
from cluster.settings import Settings
from pipelines.arrow_batch import is_arrow_batch
from pipelines.decode import filter_event_types
from pipelines.envelope import MAX_OFFSET, MAX_TIME_MS
from pipelines.event_frames import RawRecord, records_frame

POLL_S = 0.5  # one consume call; also how long a cancelled replay may wait for it to return
MAX_BATCH = 10_000


@dataclass(frozen=True)
class ReplayStart:
    """Where a replay begins: SubscriptionConfig's start_position, start_offset, start_time_ms."""

    position: StartPosition = "earliest"
    offset: int | None = None
    time_ms: int | None = None

    def __post_init__(self) -> None:
        if self.position not in get_args(StartPosition):
            raise InvalidInput(
                f"start_position must be one of {', '.join(get_args(StartPosition))}"
            )
        if (self.position == "offset") != (self.offset is not None):
            raise InvalidInput("start_offset goes with start_position 'offset' (and only with it)")
        if (self.position == "timestamp") != (self.time_ms is not None):
            raise InvalidInput(
                "start_time_ms goes with start_position 'timestamp' (and only with it)"
            )
        if self.offset is not None and not 0 <= self.offset <= MAX_OFFSET:
            raise InvalidInput(f"start_offset must be between 0 and {MAX_OFFSET}")
        if self.time_ms is not None and not 0 <= self.time_ms < MAX_TIME_MS:
            raise InvalidInput(f"start_time_ms must be between 0 and {MAX_TIME_MS - 1}")


def start_offsets(
    marks: dict[int, tuple[int, int]], start: ReplayStart, at_time: Callable[[int], dict[int, int]]
) -> dict[int, int]:
    """The first offset to read per partition of `marks` ((low, high) watermarks), for a replay
    or a new subscription's group; `at_time(ms)` looks a timestamp up (offsets_for_time)."""
    if start.position == "earliest":
        return {p: low for p, (low, _) in marks.items()}
    if start.position == "latest":
        return {p: high for p, (_, high) in marks.items()}
    if start.position == "offset":
        wanted = start.offset or 0
        return {p: max(low, min(wanted, high)) for p, (low, high) in marks.items()}
    return at_time(start.time_ms or 0)


class TopicReader:
    """The blocking half of a replay (run in a worker thread): one consumer, one stream."""

    def __init__(
        self,
        settings: Settings,
        topics: TopicAdmin,
        stream: StreamRecord,
        start: ReplayStart,
        follow: bool,
        cipher: EventCipher | None,
    ) -> None:
        self.stream, self.cipher = stream, cipher
        self.topic = stream.kafka_topic
        marks = topics.watermarks(self.topic)
        self.consumer = new_consumer(
            settings, naming.reader_group("replay"), **{"enable.partition.eof": False}
        )
        try:
            self.positions = start_offsets(
                marks, start, lambda ms: offsets_for_time(self.consumer, self.topic, marks, ms)
            )
            # Without follow, each partition ends at its high watermark as seen now.
            self.ends = None if follow else {p: high for p, (_, high) in marks.items()}
            self.open = {p for p in self.positions if self.ends is None or self._left(p)}
            if self.open:
                self.consumer.assign(
                    [TopicPartition(self.topic, p, self.positions[p]) for p in sorted(self.open)]
                )
        except BaseException:
            self.consumer.close()
            raise

    @property
    def done(self) -> bool:
        return not self.open

    def _left(self, partition: int) -> bool:
        return self.ends is None or self.positions[partition] < self.ends[partition]

    def next_frame(self, batch_size: int, event_types: Sequence[str] | None) -> pl.DataFrame:
        """The events of up to `batch_size` records (an empty frame when none came)."""
        batch = self.consumer.consume(num_messages=batch_size, timeout=POLL_S)
        if not batch and self.ends is not None:
            self._close_finished()
        records: list[RawRecord] = []
        for msg in batch:
            if msg.error() is not None:
                continue
            p, offset = msg.partition() or 0, msg.offset() or 0
            if p not in self.open or offset < self.positions[p]:
                continue
            if self.ends is not None and offset >= self.ends[p]:
                continue  # past the end of history: the replay stops before it
            value, arrow = msg.value() or b"", is_arrow_batch(msg.headers())
            if self.cipher is not None and not arrow:
                value = self.cipher.open_value(value)  # raises: a replay must not hide an event
            records.append(RawRecord(p, offset, msg.timestamp()[1], value, arrow))
            self.positions[p] = offset + 1
            if not self._left(p):
                self.open.discard(p)
        frame = records_frame(records, self.stream.stream_id)
        return filter_event_types(frame, event_types, column="type") if event_types else frame

    def _close_finished(self) -> None:
        """Idle: a partition whose rest is control records or compacted away is finished."""
        assert self.ends is not None
        found = self.consumer.position([TopicPartition(self.topic, p) for p in sorted(self.open)])
        for tp in found:
            if tp.offset >= self.ends[tp.partition]:
                self.positions[tp.partition] = self.ends[tp.partition]
                self.open.discard(tp.partition)

    def close(self) -> None:
        self.consumer.close()


async def replay(
    bus: Bus,
    tenant_id: str,
    stream_id: str,
    start: ReplayStart,
    follow: bool,
    batch_size: int,
    event_types: Sequence[str] | None,
) -> AsyncGenerator[pl.DataFrame, None]:
    """Frames of at most `batch_size` records each (empty frames are not yielded)."""
    stream = await bus.streams.resolve(stream_id, tenant_id)
    cipher = bus.cipher(stream)
    opening = asyncio.ensure_future(
        asyncio.to_thread(TopicReader, bus.settings, bus.topics, stream, start, follow, cipher)
    )
    try:
        reader = await asyncio.shield(opening)
    except asyncio.CancelledError:  # the consumer is still being made: close it once it is
        opening.add_done_callback(_close_opened)
        raise
    polling: asyncio.Future[pl.DataFrame] | None = None
    try:
        while not reader.done:
            polling = asyncio.ensure_future(
                asyncio.to_thread(reader.next_frame, batch_size, event_types)
            )
            frame = await asyncio.shield(polling)  # cancelled: the poll still ends (below)
            polling = None
            if frame.height:
                yield frame
    finally:
        if polling is not None:  # the thread still uses the consumer: closing it now crashes
            await asyncio.wait([polling])
        await asyncio.to_thread(reader.close)


def _close_opened(opening: asyncio.Future[TopicReader]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def checked_batch_size(batch_size: int) -> int:
    if not 1 <= batch_size <= MAX_BATCH:
        raise InvalidInput(f"batch_size must be between 1 and {MAX_BATCH} records")
    return batch_size
