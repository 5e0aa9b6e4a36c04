"""/ws/events/{stream_name}: a live tail of a stream's events.

Query: `tenant_id` (to find the stream by name; an id works too), `event_types` (comma-separated
globs, default all), `start` (`latest`, the default: events published after the socket opened;
or `earliest`) or `from_time_ms`. Each message is one event as JSON:
`{"partition", "offset", "key", "event": <the CloudEvent>}`, in partition order (so in order
per key). The tail reads with its own consumer (no group, nothing committed); a client that
falls more than LIVE_QUEUE events behind is closed with 1008, so it never slows publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from cluster.errors import EsbError, InvalidInput
from cluster.kafka_clients import new_consumer
from cluster.models import StreamRecord
from cluster.subscription_models import compile_globs
from cluster.topics import TopicAdmin
from serve.deps import services

router = APIRouter(tags=["events"])
LIVE_QUEUE = 1000
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


def _frame(msg: Any) -> bytes:
    key = msg.key()
    head = orjson.dumps(
        {
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": key.decode("utf-8", "replace") if key else None,
        }
    )
    return head[:-1] + b',"event":' + (msg.value() or b"null") + b"}"


@router.websocket("/ws/events/{stream_name}")
async def live_events(websocket: WebSocket, stream_name: str) -> None:
    svc = services(websocket)
    params = websocket.query_params
    try:
        record = await svc.bus.streams.resolve(stream_name, params.get("tenant_id"))
        start = params.get("start", "latest")
        if start not in ("latest", "earliest"):
            raise InvalidInput("start must be 'latest' or 'earliest'")
        raw_time = params.get("from_time_ms")
        if raw_time is not None and not raw_time.isdigit():
            raise InvalidInput("from_time_ms must be epoch milliseconds")
        globs = [g.strip() for g in params.get("event_types", "*").split(",") if g.strip()]
        accept = compile_globs(globs)
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
    queue: asyncio.Queue[bytes] = asyncio.Queue(LIVE_QUEUE)
    overflow, stopping = asyncio.Event(), asyncio.Event()

    async def pump() -> None:
        while not stopping.is_set():
            batch = await asyncio.to_thread(consumer.consume, BATCH, 0.5)
            for m in batch:
                if m.error() is not None:
                    continue
                if accept is not None:
                    try:
                        kind = orjson.loads(m.value() or b"{}").get("type")
                    except (orjson.JSONDecodeError, AttributeError):
                        continue
                    if not isinstance(kind, str) or accept.match(kind) is None:
                        continue
                if queue.full():
                    overflow.set()
                    return
                queue.put_nowait(_frame(m))

    async def send() -> None:
        while True:
            await websocket.send_text((await queue.get()).decode())

    async def until_closed() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    reader = asyncio.create_task(pump())
    others = [asyncio.create_task(job()) for job in (send, until_closed)]
    try:
        await asyncio.wait([reader, *others], return_when=asyncio.FIRST_COMPLETED)
        if overflow.is_set():
            await websocket.close(
                code=1008, reason=f"client too slow: over {LIVE_QUEUE} events behind"
            )
    except WebSocketDisconnect:
        pass
    finally:
        stopping.set()
        for task in others:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader, 5)  # its consume call must end before the close
        await asyncio.to_thread(consumer.close)
