"""Group commit of single publishes (cluster.coalescing): every caller gets its own
result, failures reach every caller of the batch, and keys never mix."""

from __future__ import annotations

import asyncio

import pytest

from cluster.coalescing import Coalescer


async def test_callers_of_one_key_share_batches_and_keys_never_mix() -> None:
    batches: list[tuple[str, list[int]]] = []
    release = asyncio.Event()

    async def publish(items: list[int], stream: str) -> list[str]:
        batches.append((stream, items))
        await release.wait()
        return [f"{stream}/{i}" for i in items]

    group: Coalescer[int, str] = Coalescer(publish, max_batch=100)
    first = asyncio.ensure_future(group.submit(("a",), 0))
    await asyncio.sleep(0)  # the first batch is in flight: the next ones wait for it
    rest = [asyncio.ensure_future(group.submit((s,), i)) for i, s in enumerate("abab", 1)]
    await asyncio.sleep(0)
    release.set()
    assert await first == "a/0"
    assert [await r for r in rest] == ["a/1", "b/2", "a/3", "b/4"]
    assert sorted(batches) == [("a", [0]), ("a", [1, 3]), ("b", [2, 4])]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def publish(items: list[int], stream: str) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("broker down")
        return items

    group: Coalescer[int, int] = Coalescer(publish, max_batch=2)
    answers = await asyncio.gather(
        *(group.submit(("s",), i) for i in range(3)), return_exceptions=True
    )
    assert [type(a) for a in answers[:2]] == [RuntimeError, RuntimeError]
    assert answers[2] == 2
    assert await group.submit(("s",), 9) == 9


async def test_a_cancelled_caller_does_not_break_its_batch() -> None:
    gate = asyncio.Event()

    async def publish(items: list[int], stream: str) -> list[int]:
        await gate.wait()
        return items

    group: Coalescer[int, int] = Coalescer(publish, max_batch=10)
    gone = asyncio.ensure_future(group.submit(("s",), 1))
    kept = asyncio.ensure_future(group.submit(("s",), 2))
    await asyncio.sleep(0)
    gone.cancel()
    gate.set()
    assert await kept == 2
    with pytest.raises(asyncio.CancelledError):
        await gone
