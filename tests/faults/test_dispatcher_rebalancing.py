"""Exactly-once forwarding subscriptions while a Ray node joins and then leaves: the cluster's
dispatchers spread onto the new node (the newest subscriptions move) and come back when it
leaves, and each target stream holds every source event exactly once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from ray.util.state import list_actors

from cluster import naming
from cluster.settings import Settings
from tests.integration.conftest import create_stream, read_topic
from tests.integration.ray_nodes import extra_ray_node
from tests.integration.subscription_helpers import (
    TENANT,
    cancel,
    events,
    publish,
    status,
    subscribe,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def _placement(stack: Settings) -> dict[str, str]:
    """Every running dispatcher (actor name) -> its node."""
    actors = list_actors(
        address=stack.jobs_url,
        filters=[("class_name", "=", "DispatcherActor"), ("state", "=", "ALIVE")],
        limit=10_000,
    )
    return {a.name: a.node_id for a in actors if a.name and a.node_id}


def _even_over(stack: Settings, nodes: set[str]) -> dict[str, str] | None:
    """The placement, once the dispatchers run on exactly `nodes`, evenly (within one)."""
    where = _placement(stack)
    counts = Counter(where.values())
    if set(counts) != nodes or max(counts.values()) - min(counts.values()) > 1:
        return None
    return where


def test_dispatchers_follow_nodes_and_forward_exactly_once(
    stack: Settings, http: httpx.Client, ray_session: Any, unique: str
) -> None:
    pairs = []
    for n in range(2):
        source = create_stream(http, TENANT, f"move-in{n}-{unique}", partitions=2)
        target = create_stream(http, TENANT, f"move-out{n}-{unique}", partitions=2)
        sub = subscribe(http, source, forward_to=target["stream_id"], delivery_mode="exactly_once")
        pairs.append((source, target, sub, list[dict]()))
    newest = naming.dispatcher_name(pairs[-1][2]["subscription_id"], 0)

    def wave(tag: str) -> None:
        for source, _, _, sent in pairs:
            batch = events(200, f"{tag}{source['stream_id'][:6]}{unique}", keys=8)
            publish(http, source["stream_id"], batch)
            sent += batch

    wave("a")
    head = wait_for(lambda: _placement(stack).get(newest), "the newest dispatcher running")
    with extra_ray_node(stack) as node:
        where = wait_for(lambda: _even_over(stack, {head, node.node_id}), "an even spread")
        assert where[newest] == node.node_id  # the newest subscription moved
        wave("b")
        node.remove()
    wave("c")
    wait_for(lambda: _even_over(stack, {head}), "every dispatcher back on the head", 180)

    for _, target, sub, sent in pairs:
        wait_for(lambda s=sub: status(http, s)["lag"] == 0, "the forwarding to catch up", 240)
        out = read_topic(stack, target["kafka_topic"], len(sent), deadline_s=120)
        got = Counter(orjson.loads(r.value())["id"] for r in out)
        assert got == Counter(e["event_id"] for e in sent)  # nothing lost, nothing twice
        cancel(http, sub)
