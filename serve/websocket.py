"""Relaying a stream of messages to a WebSocket client without ever waiting for it, and refusing
one with a reason it can read.

Messages go through a bounded queue; a client that falls `limit` messages behind is closed with
1008 (policy violation) and a reason, so a slow client never slows the producer behind it.

A refused socket is accepted, then closed at once with 4000 + the HTTP status the same request
would get (4401 no or bad token, 4403 not allowed, 4404 unknown stream, pipeline, subscription or
route, 4422 bad query, 4429 over quota, 4503 backend down) and the problem's detail as the
reason: a rejection before the handshake would reach the client as a bare HTTP 403. A socket
whose source breaks later (Redis goes away) is closed the same way, by the app's handlers.

>>> close_code(NotFound("stream 'x' not found"))
4404
>>> len(close_reason("é" * 200).encode())
123
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from cluster.errors import EsbError, NotFound

LIVE_QUEUE = 1000
MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, 2 for the code


def close_code(exc: EsbError) -> int:
    return 4000 + exc.status if 400 <= exc.status < 600 else 1011


def close_reason(detail: str) -> str:
    """`detail` cut to what a close frame can carry, on a character boundary."""
    return detail.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


async def refuse(websocket: WebSocket, exc: EsbError) -> None:
    """Close with the problem's code and detail; a socket not accepted yet is accepted first."""
    if websocket.application_state == WebSocketState.CONNECTING:
        await websocket.accept()
    await websocket.close(code=close_code(exc), reason=close_reason(exc.detail))


async def unknown_route(websocket: WebSocket, path: str) -> None:
    """The last WebSocket route: an unknown path is refused with 4404 and the routes that exist."""
    await refuse(
        websocket,
        NotFound(
            f"no WebSocket at /{path}: use /ws/events/{{stream}}, /ws/pipelines/{{id}}, "
            "/ws/subscriptions/{id} or /ws/monitoring"
        ),
    )


async def relay(
    websocket: WebSocket, messages: AsyncIterator[bytes], *, limit: int = LIVE_QUEUE
) -> None:
    """Send every message until the client leaves, the source ends, or the client is too slow."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(limit)
    overflow = asyncio.Event()

    async def pump() -> None:
        async for message in messages:
            if queue.full():
                overflow.set()
                return
            queue.put_nowait(message)

    async def send() -> None:
        while True:
            await websocket.send_text((await queue.get()).decode())

    async def until_closed() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.create_task(job()) for job in (pump, send, until_closed)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if overflow.is_set():
            await websocket.close(code=1008, reason=f"client too slow: over {limit} behind")
        elif tasks[0].done() and not tasks[0].cancelled() and (failed := tasks[0].exception()):
            raise failed  # the source broke: the app's handlers close the socket (Redis: 4503)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def redis_messages(pubsub: Any) -> AsyncIterator[bytes]:
    """The data of each message on the channels a redis.asyncio PubSub subscribed to."""
    async for message in pubsub.listen():
        if message["type"] == "message":
            yield message["data"]
