"""LiveTail: a stream's events as they arrive, for the `/ws/events/{stream_name}` WebSocket.

A tail reads with its own consumer (no group, nothing committed) from positions fixed when it
opens, so `latest` means "published after open()": open before telling the client it is
listening. Each frame is one event as JSON bytes, `{"partition", "offset", "key", "event"}`, in
partition order (so in order per key). Arrow-batched records' events come one by one, like the
others. An encrypted stream's events come decrypted; one that does not decrypt comes as
`{"partition", "offset", "key", "error"}` instead of being skipped.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import polars as pl
from confluent_kafka import Consumer, TopicPartition

from cluster import naming
from cluster.errors import DecryptionFailed, InvalidInput
from cluster.kafka.clients import new_consumer, offsets_for_time
from cluster.models.streams import StreamRecord
from cluster.models.subscriptions import compile_globs
from cluster.security.event_crypto import EventCipher
from cluster.services.bus import Bus
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents

BATCH = 500


class Tail:
    """An open tail: iterate `frames()`, then `close()` (after the iteration has stopped)."""

    def __init__(
        self, consumer: Consumer, accept: re.Pattern[str] | None, cipher: EventCipher | None
    ) -> None:
        self._consumer, self._accept, self._cipher = consumer, accept, cipher

    async def frames(self) -> AsyncIterator[bytes]:
        """Each consume call runs in a thread and ends within half a second, so closing the
        consumer after the iteration stops is safe."""
        consumer = self._consumer
        while True:
            first = await asyncio.to_thread(consumer.consume, 1, 0.5)  # wait for one, not BATCH
            fetched = first + (consumer.consume(BATCH - 1, 0) if first else [])
            messages = [m for m in fetched if m.error() is None]
            if self._cipher is None:
                for m in messages:
                    for frame in _frames(m, self._accept):
                        yield frame
            else:  # decrypting may ask the key store: a thread, once per batch
                for frame in await asyncio.to_thread(self._decrypted_frames, messages):
                    yield frame

    def _decrypted_frames(self, messages: list[Any]) -> list[bytes]:
        return [frame for m in messages for frame in _frames(m, self._accept, self._cipher)]

    async def close(self) -> None:
        await asyncio.to_thread(self._consumer.close)


class LiveTail:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def open(
        self,
        record: StreamRecord,
        *,
        start: str = "latest",
        from_time_ms: int | None = None,
        event_types: Sequence[str] = ("*",),
    ) -> Tail:
        """A tail of `record`'s topic from `start` (or from Kafka record time `from_time_ms`),
        with only the events whose type matches one of `event_types` (globs)."""
        if start not in ("latest", "earliest"):
            raise InvalidInput("start must be 'latest' or 'earliest'")
        accept = compile_globs(list(event_types))
        cipher = self._bus.cipher(record)
        consumer = new_consumer(
            self._bus.settings, naming.reader_group("live"), **{"enable.partition.eof": False}
        )
        try:
            positions = await asyncio.to_thread(
                self._positions, consumer, record.kafka_topic, start, from_time_ms
            )
        except BaseException:
            await asyncio.to_thread(consumer.close)
            raise
        consumer.assign(positions)
        return Tail(consumer, accept, cipher)

    def _positions(
        self, consumer: Consumer, topic: str, start: str, from_time_ms: int | None
    ) -> list[TopicPartition]:
        marks = self._bus.topics.watermarks(topic)
        if from_time_ms is not None:
            found = offsets_for_time(consumer, topic, marks, from_time_ms)
            return [TopicPartition(topic, p, o) for p, o in sorted(found.items())]
        pick = 0 if start == "earliest" else 1
        return [TopicPartition(topic, p, m[pick]) for p, m in sorted(marks.items())]


def _frames(
    msg: Any, accept: re.Pattern[str] | None, cipher: EventCipher | None = None
) -> list[bytes]:
    """The frames of a record's events that pass the filter: one, or all of an Arrow-batched
    record's. A JSON record is parsed only to check it; its bytes go out as they are (an
    encrypted one's with its data decrypted)."""
    key = msg.key()
    where = {
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": key.decode("utf-8", "replace") if key else None,
    }
    head = orjson.dumps(where)[:-1] + b',"event":'
    value = msg.value() or b""
    try:
        if is_arrow_batch(msg.headers()):
            events = to_cloudevents(value)
            return [head + orjson.dumps(e) + b"}" for e in events if _wanted(e, accept)]
        event = orjson.loads(value)
    except (orjson.JSONDecodeError, pl.exceptions.PolarsError, OSError):
        return []  # not an event this bus wrote
    if not isinstance(event, dict) or not _wanted(event, accept):
        return []
    if cipher is not None:
        try:
            value = cipher.open_value(value)
        except DecryptionFailed as exc:
            return [orjson.dumps({**where, "error": f"{type(exc).__name__}: {exc.detail}"})]
    return [head + value + b"}"]


def _wanted(event: dict[str, Any], accept: re.Pattern[str] | None) -> bool:
    kind = event.get("type")
    return accept is None or (isinstance(kind, str) and accept.match(kind) is not None)
