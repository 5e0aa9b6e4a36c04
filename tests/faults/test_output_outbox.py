"""Crashes around the output topic's transaction: whichever side of it an owner dies on, its
successor leaves every window on the output topic exactly once (read_committed)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from actors.partition_owner import PartitionOwner
from cluster.settings import Settings
from tests.integration.conftest import create_stream, read_topic
from tests.integration.pipeline_helpers import (
    TENANT,
    close_all_windows,
    make_events,
    oracle,
    owned_without_job,
    publish,
    spec_for,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


class Crash(Exception):
    """Stands for the process dying at that point."""


def _crash(*_: Any, **__: Any) -> None:
    raise Crash


@pytest.mark.parametrize("dies", ["before_publishing", "after_the_transaction_committed"])
def test_a_successor_publishes_each_window_exactly_once(
    stack: Settings, http: httpx.Client, unique: str, dies: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"outbox-{dies[:6]}-{unique}"
    stream = create_stream(http, TENANT, name, partitions=2)
    publish(http, stream["stream_id"], make_events(800, seed=12))
    close_all_windows(stack, stream["kafka_topic"], 2)
    spec = spec_for(stream["stream_id"], sinks={"kafka_topic": f"{name}-out"})
    record = owned_without_job(stream, f"ob{unique}{dies[:3]}", spec, 2)
    record = record.model_copy(update={"output_topic": f"esb.{TENANT}.{name}-out"})
    from cluster.kafka.topics import TopicAdmin

    TopicAdmin(stack).create(record.output_topic or "", 2, 1, {"cleanup.policy": "compact"})

    first = PartitionOwner(stack, record, [0, 1])
    if dies == "before_publishing":
        monkeypatch.setattr(first, "_publish", _crash)
    else:
        monkeypatch.setattr(first.store, "clear_outbox", _crash)
    with pytest.raises(Crash):
        wait_for(lambda: first.step(timeout_s=1.0), "the first owner's step")
    assert first.store.outbox() is not None  # the crash left its outbox behind

    second = PartitionOwner(stack, record, [0, 1])  # finishes (or clears) the outbox first
    assert second.store.outbox() is None
    wait_for(
        lambda: second.step(timeout_s=1.0) == 0 and second.step(timeout_s=1.0) == 0,
        "the second owner to drain the stream",
    )
    second.close()

    expected = oracle(stack, stream["kafka_topic"])
    out = [
        orjson.loads(r.value())
        for r in read_topic(stack, record.output_topic or "", expected=len(expected))
    ]
    windows = [(r["key"], r["window_start_ms"]) for r in out if r["key"] != "sentinel"]
    assert len(windows) == len(set(windows)) == len(expected)
