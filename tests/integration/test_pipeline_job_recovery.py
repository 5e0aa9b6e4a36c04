"""Pipelines on the real broker, Redis and Ray: owners killed mid-run lose and double-count
nothing; a fenced zombie writes nothing."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis

from actors.partition_owner import PartitionOwner
from cluster.errors import Fenced
from cluster.naming import owner_name
from cluster.settings import Settings
from cluster.stores.pipelines import PipelineStore
from tests.integration.conftest import create_stream, read_topic
from tests.integration.pipeline_helpers import (
    TENANT,
    caught_up,
    close_all_windows,
    make_events,
    oracle,
    owned_without_job,
    publish,
    results_of,
    spec_for,
    submit,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def test_killed_owners_lose_and_double_count_nothing(
    stack: Settings, http: httpx.Client, ray_session: Any, unique: str
) -> None:
    import ray

    stream = create_stream(http, TENANT, f"kill-{unique}", partitions=4)
    output = f"esb.{TENANT}.kill-out-{unique}"
    pipeline_id = submit(
        http, stream["stream_id"], owners=2, sinks={"kafka_topic": f"kill-out-{unique}"}
    )
    publish(http, stream["stream_id"], make_events(4_000, seed=3))
    wait_for(lambda: caught_up(http, pipeline_id), "the first half to be processed")

    victim = ray.get_actor(owner_name(pipeline_id, 0), namespace="esb")
    ray.kill(victim)
    publish(http, stream["stream_id"], make_events(4_000, seed=4))

    def restarted() -> Any:
        status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
        return status["owner_restarts"] >= 1

    wait_for(restarted, "the supervisor to replace the killed owner")
    other = wait_for(lambda: _actor(ray, owner_name(pipeline_id, 1)), "owner 1")
    os.kill(ray.get(other.pid.remote(), timeout=60), signal.SIGKILL)
    publish(http, stream["stream_id"], make_events(2_000, seed=5))
    close_all_windows(stack, stream["kafka_topic"], 4)

    expected = oracle(stack, stream["kafka_topic"])
    wait_for(
        lambda: http.get(f"/api/v1/pipelines/{pipeline_id}").json()["owner_restarts"] >= 2,
        "the SIGKILLed owner to be replaced",
    )
    wait_for(lambda: caught_up(http, pipeline_id), "the pipeline to catch up after the kills")
    assert wait_for(lambda: results_of(http, pipeline_id) == expected or None, "results") is True
    http.delete(f"/api/v1/pipelines/{pipeline_id}")

    # The output topic, read_committed, has every closed window exactly once despite the kills.
    out = [orjson.loads(r.value()) for r in read_topic(stack, output, expected=len(expected))]
    windows = [(r["key"], r["window_start_ms"]) for r in out if r["key"] != "sentinel"]
    assert len(windows) == len(set(windows)) == len(expected)
    assert {
        (r["key"], r["window_start_ms"]): (r["orders"], r["revenue"])
        for r in out
        if r["key"] != "sentinel"
    } == expected


def _actor(ray: Any, name: str) -> Any:
    try:
        return ray.get_actor(name, namespace="esb")
    except ValueError:
        return None


def test_a_fenced_zombie_cannot_commit(stack: Settings, http: httpx.Client, unique: str) -> None:
    stream = create_stream(http, TENANT, f"zombie-{unique}", partitions=2)
    publish(http, stream["stream_id"], make_events(500, seed=6))
    record = owned_without_job(stream, f"zombie{unique}", spec_for(stream["stream_id"]), 2)
    redis = Redis.from_url(stack.redis)
    base = f"esb:pl:{record.pipeline_id}"

    first = PartitionOwner(stack, record, [0, 1])
    wait_for(lambda: first.step(timeout_s=1.0), "the first owner to consume")
    offsets = {p: PipelineStore(redis, record.pipeline_id).checkpoint(p).offset for p in (0, 1)}

    second = PartitionOwner(stack, record, [0, 1])  # takes over: the first is now a zombie
    publish(http, stream["stream_id"], make_events(500, seed=7))
    results_before = redis.hgetall(f"{base}:res")
    with pytest.raises(Fenced):
        wait_for(lambda: first.step(timeout_s=1.0), "the zombie to try a commit")
    assert {p: PipelineStore(redis, record.pipeline_id).checkpoint(p).offset for p in (0, 1)} == (
        offsets
    )
    assert redis.hgetall(f"{base}:res") == results_before

    def committed() -> int:
        store = PipelineStore(redis, record.pipeline_id)
        return sum(store.checkpoint(p).offset or 0 for p in (0, 1))

    wait_for(
        lambda: second.step(timeout_s=1.0) == 0 and committed() == 1_000,
        "the new owner to commit everything",
    )
    first.close()
    second.close()
