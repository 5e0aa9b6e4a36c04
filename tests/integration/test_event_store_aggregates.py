"""Concurrent writers on a few aggregates, driven by a hypothesis state machine against a model,
on the real stack (SDK services in this process; Kafka, Redis and the indexer actor on Ray):
versions contiguous from 1, no gap, no duplicate, no lost acknowledged append, exactly one winner
per expected version, retries answer the same versions. Then every index is dropped and rebuilt
from the topics alone, and the rebuilt store agrees with the model."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from actors.indexer import IndexerLauncher
from cluster.errors import WrongExpectedVersion
from cluster.models.event_store import AppendEvent, AppendRequest, AppendResult
from cluster.models.streams import StreamConfig
from cluster.services.aggregates import AggregateService
from cluster.services.bus import Bus
from cluster.services.event_store import EventStoreService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings

T = TypeVar("T")
TENANT = "acme"
AGGREGATES = ("a", "b", "c")


class Loop:
    """One event loop in a thread for the whole test: the Bus's clients stay on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=300)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class World:
    def __init__(self, stack: Settings) -> None:
        self.loop = Loop()
        self.bus = Bus(stack)
        self.store = EventStoreService(bus=self.bus, indexers=IndexerLauncher(stack))
        self.aggregates = AggregateService(bus=self.bus, store=self.store)
        config = StreamConfig(
            stream_name=f"es-agg-{uuid.uuid4().hex[:8]}",
            topic_name=f"es-agg-{uuid.uuid4().hex[:8]}",
            source_capability="tests",
            partitions=3,
        )
        self.stream_id = self.loop.run(
            EventStreamingService(bus=self.bus).create_stream(config, TENANT, "tests")
        )
        self.model: dict[tuple[str, str], list[str]] = {}  # (type, id) -> event id per version


@pytest.fixture(scope="module")
def world(stack: Settings, ray_session: Any) -> Iterator[World]:
    found = World(stack)
    yield found
    found.loop.run(found.bus.close())
    found.loop.close()


class ConcurrentWriters(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        self.run_id = uuid.uuid4().hex[:8]  # each example writes its own aggregates
        self.last: dict[str, AppendRequest] = {}

    def key(self, name: str) -> tuple[str, str]:
        return ("Account", f"{self.run_id}-{name}")

    def versions(self, name: str) -> list[str]:
        return self.world.model.setdefault(self.key(name), [])

    def append(self, name: str, request: AppendRequest) -> Coroutine[Any, Any, AppendResult]:
        kind, agg_id = self.key(name)
        return self.world.aggregates.append(kind, agg_id, request, TENANT, "writer")

    def request(self, expected: Any, sizes: int) -> AppendRequest:
        events = [
            AppendEvent(type="account.changed", payload={"n": i}, event_id=uuid.uuid4().hex)
            for i in range(sizes)
        ]
        return AppendRequest(
            stream_id=self.world.stream_id, expected_version=expected, events=events
        )

    async def together(self, name: str, requests: list[AppendRequest]) -> list[Any]:
        return await asyncio.gather(
            *(self.append(name, r) for r in requests), return_exceptions=True
        )

    @rule(
        name=st.sampled_from(AGGREGATES),
        sizes=st.lists(st.integers(1, 3), min_size=2, max_size=4),
        form=st.sampled_from(["number", "no_stream_or_exists"]),
    )
    def race_at_one_expected_version(self, name: str, sizes: list[int], form: str) -> None:
        model = self.versions(name)
        expected: Any = len(model)
        if form != "number":
            expected = "no_stream" if not model else "exists"
        requests = [self.request(expected, n) for n in sizes]
        answers = self.world.loop.run(self.together(name, requests))
        winners = [
            (r, a) for r, a in zip(requests, answers, strict=True) if isinstance(a, AppendResult)
        ]
        losers = [a for a in answers if not isinstance(a, AppendResult)]
        if form == "number" or not model:
            assert len(winners) == 1, answers  # exactly one winner per expected version
            request, result = winners[0]
            assert all(isinstance(a, WrongExpectedVersion) for a in losers), losers
            assert all(a.current_version >= len(model) + len(request.events) for a in losers)
        else:  # `exists` holds for every writer: all win, one after another
            assert not losers, losers
        for request, result in sorted(winners, key=lambda w: w[1].events[0].version):
            assert [e.version for e in result.events] == list(
                range(len(model) + 1, len(model) + 1 + len(request.events))
            )
            model.extend(e.event_id or "" for e in request.events)
            self.last[name] = request

    @rule(name=st.sampled_from(AGGREGATES), writers=st.integers(2, 4))
    def any_version_writers_all_land(self, name: str, writers: int) -> None:
        model = self.versions(name)
        requests = [self.request("any", 1) for _ in range(writers)]
        answers = self.world.loop.run(self.together(name, requests))
        assert all(isinstance(a, AppendResult) for a in answers), answers
        got = sorted(
            (a.events[0].version, r.events[0].event_id)
            for r, a in zip(requests, answers, strict=True)
        )
        assert [v for v, _ in got] == list(range(len(model) + 1, len(model) + 1 + writers))
        model.extend(i or "" for _, i in got)

    @rule(name=st.sampled_from(AGGREGATES))
    def a_retry_answers_the_same_versions(self, name: str) -> None:
        if name not in self.last:
            return
        request = self.last[name]
        result = self.world.loop.run(self.append(name, request))
        assert result.duplicate
        model = self.versions(name)
        assert [model[e.version - 1] for e in result.events] == [e.event_id for e in request.events]

    @invariant()
    def histories_match_the_model(self) -> None:
        for name in AGGREGATES:
            check_history(self.world, self.key(name), self.versions(name))


def check_history(world: World, key: tuple[str, str], model: list[str]) -> None:
    if not model:
        return
    events = world.loop.run(world.aggregates.events(key[0], key[1], TENANT))
    assert [e.version for e in events] == list(range(1, len(model) + 1))  # contiguous from 1
    assert [e.event["id"] for e in events] == model  # none lost, none duplicated


def test_concurrent_writers_then_a_rebuild_agrees(world: World) -> None:
    ConcurrentWriters.world = world
    run_state_machine_as_test(
        ConcurrentWriters,
        settings=settings(
            max_examples=6,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert any(world.model.values())
    some_id = next(ids[0] for ids in world.model.values() if ids)
    before = world.loop.run(world.store.get_event(some_id, TENANT))

    generation = world.loop.run(world.store.rebuild_indexes())
    status = IndexerLauncher(world.bus.settings).status()
    assert status is not None and status["generation"] == generation >= 1  # a fresh group
    assert status["indexed"] >= sum(len(ids) for ids in world.model.values())  # re-read it all

    for key, model in world.model.items():
        check_history(world, key, model)
        if model:
            head = world.loop.run(world.aggregates.history(key[0], key[1], TENANT, 1, 1))
            assert head.version == len(model)
    assert world.loop.run(world.store.get_event(some_id, TENANT)) == before
