"""Group commit: concurrent calls with the same key go out as one batch. Single publishes to one
stream share a lookup, an idempotency pipeline and a produce call (services.publishing); a
tenant's concurrent quota charges share one Redis script call (security.quotas).

Per key, at most one batch is in flight; whatever arrives meanwhile waits for it and goes in the
next one. A lone request is sent at once (nothing waits for company), and under load the batches
grow by themselves, so the per-request cost falls as the rate rises.

>>> import asyncio
>>> calls = []
>>> async def publish(items, *key):
...     calls.append(len(items))
...     await asyncio.sleep(0)
...     return [f"{key[0]}:{item}" for item in items]
>>> async def main():
...     group = Coalescer(publish, max_batch=3)
...     together = await asyncio.gather(*(group.submit(("s",), i) for i in range(5)))
...     alone = await group.submit(("s",), 5)
...     return together + [alone]
>>> asyncio.run(main()), calls  # five at once: batches of at most 3; then one alone
(['s:0', 's:1', 's:2', 's:3', 's:4', 's:5'], [3, 2, 1])
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Slot = tuple[int, tuple[Hashable, ...]]  # (event loop, key)


@dataclass
class _Queue(Generic[Item, Result]):
    waiting: list[tuple[Item, asyncio.Future[Result]]] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None  # the one batch loop of this key, while it runs


class Coalescer(Generic[Item, Result]):
    """`publish(items, *key)` answers one result per item, in order; submit() awaits its own."""

    def __init__(
        self,
        publish: Callable[..., Awaitable[Sequence[Result]]],
        *,
        max_batch: int,
    ) -> None:
        self._publish = publish
        self._max = max_batch
        self._queues: dict[Slot, _Queue[Item, Result]] = {}

    async def submit(self, key: tuple[Hashable, ...], item: Item) -> Result:
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)  # futures belong to one event loop
        queue = self._queues.setdefault(slot, _Queue())
        future: asyncio.Future[Result] = loop.create_future()
        queue.waiting.append((item, future))
        if queue.drain is None:
            queue.drain = loop.create_task(self._drain(slot, key, queue))
        return await future

    async def _drain(
        self,
        slot: tuple[int, tuple[Hashable, ...]],
        key: tuple[Hashable, ...],
        queue: _Queue[Any, Any],
    ) -> None:
        try:
            while queue.waiting:
                group, queue.waiting = queue.waiting[: self._max], queue.waiting[self._max :]
                try:
                    results = await self._publish([item for item, _ in group], *key)
                except BaseException as exc:  # cancelled too: nobody may wait forever
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for (_, future), result in zip(group, results, strict=True):
                        if not future.done():
                            future.set_result(result)
        finally:
            queue.drain = None
            if not queue.waiting:
                self._queues.pop(slot, None)
