"""A Ray node joins a running pipeline's cluster, then leaves (SIGTERM, then SIGKILL of its
processes): owners move onto it and back, and the results equal the oracle throughout."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cluster.settings import Settings
from tests.integration.conftest import create_stream
from tests.integration.pipeline_helpers import (
    TENANT,
    caught_up,
    close_all_windows,
    make_events,
    oracle,
    publish,
    results_of,
    submit,
)
from tests.integration.ray_nodes import extra_ray_node
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

OWNERS = 4


def _status(http: httpx.Client, pipeline_id: str) -> dict[str, Any]:
    answer = http.get(f"/api/v1/pipelines/{pipeline_id}")
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


def _owners_on(http: httpx.Client, pipeline_id: str) -> dict[str, int]:
    """Node id -> how many owners run there (all placed and running, else empty)."""
    status = _status(http, pipeline_id)
    if status["state"] != "RUNNING" or len(status["placement"]) != OWNERS:
        return {}
    counts: dict[str, int] = {}
    for owner in status["placement"]:
        counts[owner["node_id"]] = counts.get(owner["node_id"], 0) + 1
    return counts


def test_owners_follow_nodes_that_join_and_leave(
    stack: Settings, http: httpx.Client, ray_session: Any, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"nodes-{unique}", partitions=OWNERS)
    pipeline_id = submit(http, stream["stream_id"], owners=OWNERS)
    publish(http, stream["stream_id"], make_events(2_000, seed=1))
    [head] = wait_for(lambda: list(_owners_on(http, pipeline_id)), "every owner on the head")
    wait_for(lambda: caught_up(http, pipeline_id), "the first events to be processed")

    with extra_ray_node(stack) as node:
        spread = {head: OWNERS // 2, node.node_id: OWNERS // 2}
        wait_for(lambda: _owners_on(http, pipeline_id) == spread, "half the owners to move")
        publish(http, stream["stream_id"], make_events(2_000, seed=2))
        wait_for(lambda: caught_up(http, pipeline_id), "the owners on the new node to work")
        node.remove()
        publish(http, stream["stream_id"], make_events(2_000, seed=3))
        wait_for(
            lambda: _owners_on(http, pipeline_id) == {head: OWNERS},
            "the removed node's owners to come back to the head",
            deadline_s=180,
        )

    close_all_windows(stack, stream["kafka_topic"], OWNERS)
    expected = oracle(stack, stream["kafka_topic"])
    wait_for(lambda: caught_up(http, pipeline_id), "the pipeline to catch up")
    assert wait_for(lambda: results_of(http, pipeline_id) == expected or None, "results") is True
    assert _status(http, pipeline_id)["owner_moves"] >= OWNERS // 2
    http.delete(f"/api/v1/pipelines/{pipeline_id}")
