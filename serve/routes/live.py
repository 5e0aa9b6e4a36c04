"""/ws/events/{stream_name}: a live tail of a stream's events.

Query: `access_token` (or an Authorization header; the token needs event.read on the
stream), `event_types` (comma-separated globs, default all), `start` (`latest`, the default:
events published after the socket opened; or `earliest`) or `from_time_ms`. Each message is
one event as JSON: `{"partition", "offset", "key", "event": <the CloudEvent>}`, in partition
order (so in order per key). The tail reads with its own consumer (no group, nothing
committed); a client that falls more than 1,000 events behind is closed with 1008, so it
never slows publishing. Events of Arrow-batched records are sent one by one, like the others.
Events of an encrypted stream are sent decrypted (the token's event.read is what authorises
that); one that does not decrypt is sent as `{"partition", "offset", "key", "error"}`
instead of being skipped.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import polars as pl
from confluent_kafka import Consumer, TopicPartition
from fastapi import APIRouter, WebSocket

from cluster.errors import DecryptionFailed, EsbError, InvalidInput
from cluster.kafka.clients import new_consumer
from cluster.kafka.topics import TopicAdmin
from cluster.models.streams import StreamRecord
from cluster.models.subscriptions import compile_globs
from cluster.security import Action, authorize
from cluster.security.event_crypto import EventCipher
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from serve.auth import authenticate, scope
from serve.deps import services
from serve.websocket import relay

router = APIRouter(tags=["events"])
BATCH = 500


def _start_positions(
    topics: TopicAdmin,
    consumer: Consumer,
    record: StreamRecord,
    start: str,
    from_time_ms: int | None,
) -> list[TopicPartition]:
    marks = topics.watermarks(record.kafka_topic)
    if from_time_ms is not None:
        found = consumer.offsets_for_times(
            [TopicPartition(record.kafka_topic, p, from_time_ms) for p in marks], timeout=10
        )
        return [
            TopicPartition(
                tp.topic, tp.partition, tp.offset if tp.offset >= 0 else marks[tp.partition][1]
            )
            for tp in found
        ]
    pick = 0 if start == "earliest" else 1
    return [TopicPartition(record.kafka_topic, p, m[pick]) for p, m in sorted(marks.items())]


@router.websocket("/ws/events/{stream_name}")
async def live_events(websocket: WebSocket, stream_name: str) -> None:
    svc = services(websocket)
    params = websocket.query_params
    try:
        caller = await authenticate(websocket)
        authorize(caller, Action.EVENT_READ)
        record = await svc.bus.streams.resolve(stream_name, scope(caller, params.get("tenant_id")))
        authorize(caller, Action.EVENT_READ, stream=(record.stream_id, record.stream_name))
        start = params.get("start", "latest")
        if start not in ("latest", "earliest"):
            raise InvalidInput("start must be 'latest' or 'earliest'")
        raw_time = params.get("from_time_ms")
        if raw_time is not None and not raw_time.isdigit():
            raise InvalidInput("from_time_ms must be epoch milliseconds")
        globs = [g.strip() for g in params.get("event_types", "*").split(",") if g.strip()]
        accept = compile_globs(globs)
        cipher = svc.bus.cipher(record)
    except EsbError as exc:
        await websocket.close(code=1008, reason=exc.detail[:120])
        return
    settings = svc.bus.settings
    consumer = new_consumer(
        settings, f"esb-live-{uuid.uuid4().hex}", **{"enable.partition.eof": False}
    )
    positions = await asyncio.to_thread(
        _start_positions,
        svc.bus.topics,
        consumer,
        record,
        start,
        int(raw_time) if raw_time is not None else None,
    )
    consumer.assign(positions)
    await websocket.accept()
    try:
        await relay(websocket, _tail(consumer, accept, cipher))
    finally:
        await asyncio.to_thread(consumer.close)


async def _tail(
    consumer: Consumer, accept: re.Pattern[str] | None, cipher: EventCipher | None = None
) -> AsyncIterator[bytes]:
    """The frames of the events the consumer reads, filtered by type. Each consume call runs
    in a thread and ends within half a second, so closing the consumer after it is safe."""
    while True:
        first = await asyncio.to_thread(consumer.consume, 1, 0.5)  # wait for one, not BATCH
        fetched = first + (consumer.consume(BATCH - 1, 0) if first else [])
        messages = [m for m in fetched if m.error() is None]
        if cipher is None:
            for m in messages:
                for frame in _frames(m, accept):
                    yield frame
        else:  # decrypting may ask the key store: a thread, once per batch
            frames = await asyncio.to_thread(_all_frames, messages, accept, cipher)
            for frame in frames:
                yield frame


def _all_frames(
    messages: list[Any], accept: re.Pattern[str] | None, cipher: EventCipher
) -> list[bytes]:
    return [frame for m in messages for frame in _frames(m, accept, cipher)]


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
