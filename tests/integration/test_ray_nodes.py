"""A Ray worker node joining the session's head and leaving it (tests/integration/ray_nodes.py):
Ray lists it ALIVE, work runs on it, Serve keeps its one proxy on the head (a proxy per node
would fight over API_PORT on one machine), and removing the node leaves the API and the actors
elsewhere working."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from ray import serve

from cluster.settings import Settings
from tests.integration.ray_nodes import extra_ray_node
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


PINNED, PROBE = "esb_test_node", "raynodes-probe"


def _probe(stack: Settings) -> str | None:
    try:
        answer = httpx.get(f"{stack.api_url}/{PROBE}", timeout=10)
    except httpx.HTTPError:
        return None
    return answer.text if answer.status_code == 200 else None


def _alive_node_ids(ray: Any) -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def _head_node_id(ray: Any) -> str:
    heads = [
        n["NodeID"]
        for n in ray.nodes()
        if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {})
    ]
    assert len(heads) == 1, ray.nodes()
    return str(heads[0])


def test_a_node_joins_runs_work_and_leaves_without_breaking_the_api(
    stack: Settings, ray_session: Any, http: httpx.Client
) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    class Where:
        def node(self) -> str:
            return str(ray.get_runtime_context().get_node_id())

    # Defined in here, so Ray pickles them by value (tests/ is not importable in the workers).
    @serve.deployment(
        num_replicas=1,
        ray_actor_options={"num_cpus": 0, "resources": {PINNED: 1}},
    )
    class Probe:
        async def __call__(self, request: Any) -> str:
            return str(ray.get_runtime_context().get_node_id())

    head = _head_node_id(ray)
    on_head = Where.options(  # type: ignore[attr-defined]
        scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)
    ).remote()
    assert ray.get(on_head.node.remote(), timeout=120) == head

    with extra_ray_node(stack, resources={PINNED: 1}) as node:
        assert node.node_id in _alive_node_ids(ray)
        assert node.node_id != head
        on_node = Where.options(  # type: ignore[attr-defined]
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        ).remote()
        assert ray.get(on_node.node.remote(), timeout=120) == node.node_id
        # A Serve replica on the node: by Serve's default a proxy (HAProxy) would start there
        # too and fail to bind API_PORT, taken by the head's on this machine. With HeadOnly
        # (serve/deploy.py) the head's proxy reaches the replica.
        probe = Probe.bind()  # type: ignore[attr-defined]
        serve.run(probe, name=PROBE, route_prefix=f"/{PROBE}", blocking=False)
        try:
            answer = wait_for(lambda: _probe(stack), "the probe replica on the node", 120)
            assert answer == node.node_id
            assert set(serve.status().proxies) == {head}
        finally:
            # Not waited: an ingress replica drains for 30 s (Serve's direct-ingress minimum);
            # the node's removal ends it sooner.
            serve.delete(PROBE, _blocking=False)

        node.remove()
        assert node.node_id not in _alive_node_ids(ray)
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(on_node.node.remote(), timeout=120)

    assert ray.get(on_head.node.remote(), timeout=120) == head
    assert set(serve.status().proxies) == {head}
    assert httpx.get(f"{stack.api_url}/health", timeout=60).status_code == 200
    assert http.get("/api/v1/streams").status_code == 200
