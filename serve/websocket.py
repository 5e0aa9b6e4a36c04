"""Relaying a stream of messages to a WebSocket client without ever waiting for it.

Messages go through a bounded queue; a client that falls `limit` messages behind is closed with
1008 (policy violation) and a reason, so a slow client never slows the producer behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

LIVE_QUEUE = 1000


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
