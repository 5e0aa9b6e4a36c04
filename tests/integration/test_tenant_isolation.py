"""Two tenants on one bus, driven by a hypothesis state machine: each creates streams (often
with the same names as the other's), publishes secrets, subscribes; the other tenant's admin
token then tries every stream, event, subscription and pipeline endpoint and WebSocket on them
by id and by name. Zero leaks: another tenant's resource answers exactly like a missing one,
and no answer ever carries the owner's tenant, ids or events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    multiple,
    rule,
    run_state_machine_as_test,
)

from cluster.settings import Settings
from tests.conftest import Mint
from tests.integration.conftest import refused

RUN = uuid.uuid4().hex[:6]
TENANTS = (f"iso{RUN}a", f"iso{RUN}b")
NAMES = ("orders", "payments", "shared")


@dataclass(frozen=True)
class Stream:
    tenant: str
    stream_id: str
    name: str


@dataclass(frozen=True)
class Subscription:
    tenant: str
    subscription_id: str


@dataclass
class World:
    """The live clients and what each tenant owns (pipelines are made once, up front)."""

    settings: Settings
    clients: dict[str, httpx.Client]
    tokens: dict[str, str]
    pipelines: dict[str, str] = field(default_factory=dict)

    def other(self, tenant: str) -> str:
        return TENANTS[1 - TENANTS.index(tenant)]


def _event(secret: str) -> dict[str, Any]:
    return {
        "event_type": "order.placed",
        "source_capability": "iso",
        "aggregate_id": "a-1",
        "aggregate_type": "Order",
        "payload": {"secret": secret, "amount": 1},
    }


def _spec(source: str) -> dict[str, Any]:
    return {
        "pipeline_name": "iso",
        "source_stream": source,
        "window": {"type": "tumbling", "size_ms": 60_000},
        "aggregations": [{"name": "n", "op": "count"}],
    }


@pytest.fixture(scope="module")
def world(stack: Settings, mint: Mint) -> Iterator[World]:
    tokens = {t: mint(t) for t in TENANTS}
    clients = {
        t: httpx.Client(
            base_url=stack.api_url, timeout=60, headers={"Authorization": f"Bearer {tokens[t]}"}
        )
        for t in TENANTS
    }
    found = World(stack, clients, tokens)
    try:
        for tenant, http in clients.items():
            body = {"stream_name": "piped", "topic_name": "piped", "source_capability": "iso"}
            assert http.post("/api/v1/streams", json=body).status_code == 201
            made = http.post("/api/v1/pipelines", json={"owners": 1, "spec": _spec("piped")})
            assert made.status_code == 201, made.text
            found.pipelines[tenant] = made.json()["pipeline_id"]
        yield found
    finally:
        for tenant, pipeline_id in found.pipelines.items():
            clients[tenant].delete(f"/api/v1/pipelines/{pipeline_id}")
        for http in clients.values():
            http.close()


def _assert_no_leak(answer: httpx.Response, owner: str, *secrets: str) -> None:
    assert answer.status_code == 404, (answer.request.method, answer.request.url, answer.text)
    for secret in (owner, *secrets):
        assert secret not in answer.text


def _refused_websocket(world: World, path: str, tenant: str) -> None:
    url = world.settings.api_url.replace("http", "ws", 1) + path
    refused(f"{url}?access_token={world.tokens[tenant]}", 4404)


class TwoTenants(RuleBasedStateMachine):
    world: World  # set by the test before the machine runs

    streams = Bundle("streams")
    subscriptions = Bundle("subscriptions")

    def __init__(self) -> None:
        super().__init__()
        self.run = uuid.uuid4().hex[:6]  # names are fresh per example; the bus is not
        self.owned: dict[str, dict[str, Stream]] = {t: {} for t in TENANTS}
        self.secrets: dict[str, set[str]] = {t: set() for t in TENANTS}

    def _name(self, base: str) -> str:
        return f"{base}-{self.run}"

    @rule(target=streams, tenant=st.sampled_from(TENANTS), base=st.sampled_from(NAMES))
    def create_stream(self, tenant: str, base: str) -> Any:
        name = self._name(base)
        body = {"stream_name": name, "topic_name": name, "source_capability": "iso"}
        answer = self.world.clients[tenant].post("/api/v1/streams", json=body)
        if name in self.owned[tenant]:
            assert answer.status_code == 409, answer.text  # its own: never the other's
            return multiple()
        assert answer.status_code == 201, answer.text
        stream = Stream(tenant, answer.json()["stream_id"], name)
        self.owned[tenant][name] = stream
        return stream

    @rule(stream=streams)
    def publish_secret(self, stream: Stream) -> None:
        secret = f"secret-{stream.tenant}-{uuid.uuid4().hex[:8]}"
        body = {**_event(secret), "stream_id": stream.stream_id}
        answer = self.world.clients[stream.tenant].post("/api/v1/events", json=body)
        assert answer.status_code == 201, answer.text
        self.secrets[stream.tenant].add(secret)

    @rule(target=subscriptions, stream=streams)
    def subscribe(self, stream: Stream) -> Subscription:
        group = f"g-{uuid.uuid4().hex[:8]}"
        body = {"subscription_name": group, "stream_id": stream.name, "consumer_group_id": group}
        answer = self.world.clients[stream.tenant].post("/api/v1/subscriptions", json=body)
        assert answer.status_code == 201, answer.text
        return Subscription(stream.tenant, answer.json()["subscription_id"])

    @rule(stream=streams, by_name=st.booleans())
    def other_tenant_tries_the_stream(self, stream: Stream, by_name: bool) -> None:
        intruder = self.world.other(stream.tenant)
        if by_name and stream.name in self.owned[intruder]:
            self._same_name_is_own_stream(intruder, stream)
            return
        ref = stream.name if by_name else stream.stream_id
        http = self.world.clients[intruder]
        # The answer may echo the ref the intruder sent; nothing else of the owner's.
        hidden = {stream.stream_id, stream.name} - {ref}
        secrets = (*hidden, *self.secrets[stream.tenant])
        for method, path, kwargs in (
            ("GET", f"/api/v1/streams/{ref}", {}),
            ("GET", f"/api/v1/streams/{ref}/events", {}),
            ("GET", f"/api/v1/streams/{ref}/metrics", {}),
            ("DELETE", f"/api/v1/streams/{ref}", {}),
            ("POST", "/api/v1/events", {"json": {**_event("x"), "stream_id": ref}}),
            ("POST", "/api/v1/events/batch", {"json": {"stream_id": ref, "events": [_event("x")]}}),
            ("POST", "/api/v1/pipelines", {"json": {"owners": 1, "spec": _spec(ref)}}),
            (
                "POST",
                "/api/v1/subscriptions",
                {"json": {"subscription_name": "s", "stream_id": ref, "consumer_group_id": "s"}},
            ),
        ):
            _assert_no_leak(http.request(method, path, **kwargs), stream.tenant, *secrets)
        _refused_websocket(self.world, f"/ws/events/{ref}", intruder)

    def _same_name_is_own_stream(self, intruder: str, stream: Stream) -> None:
        """The intruder's own stream of that name: its answer is about its own stream only."""
        answer = self.world.clients[intruder].get(f"/api/v1/streams/{stream.name}/events")
        assert answer.status_code == 200, answer.text
        for secret in self.secrets[stream.tenant]:
            assert secret not in answer.text
        record = self.world.clients[intruder].get(f"/api/v1/streams/{stream.name}").json()
        assert record["stream_id"] == self.owned[intruder][stream.name].stream_id
        assert record["tenant_id"] == intruder

    @rule(subscription=subscriptions)
    def other_tenant_tries_the_subscription(self, subscription: Subscription) -> None:
        intruder = self.world.other(subscription.tenant)
        http = self.world.clients[intruder]
        base = f"/api/v1/subscriptions/{subscription.subscription_id}"
        for method, path in (
            ("GET", base),
            ("GET", f"{base}/status"),
            ("GET", f"{base}/dlq"),
            ("POST", f"{base}/dlq/replay"),
            ("POST", f"{base}/pause"),
            ("POST", f"{base}/resume"),
            ("DELETE", base),
        ):
            _assert_no_leak(http.request(method, path), subscription.tenant)
        ws = f"/ws/subscriptions/{subscription.subscription_id}"
        _refused_websocket(self.world, ws, intruder)

    @rule(owner=st.sampled_from(TENANTS))
    def other_tenant_tries_the_pipeline(self, owner: str) -> None:
        intruder = self.world.other(owner)
        http = self.world.clients[intruder]
        base = f"/api/v1/pipelines/{self.world.pipelines[owner]}"
        for method, path in (
            ("GET", base),
            ("GET", f"{base}/results"),
            ("GET", f"{base}/dead-letters"),
            ("DELETE", base),
        ):
            _assert_no_leak(http.request(method, path), owner)
        _refused_websocket(self.world, f"/ws/pipelines/{self.world.pipelines[owner]}", intruder)

    @rule(tenant=st.sampled_from(TENANTS))
    def listings_hold_only_own_resources(self, tenant: str) -> None:
        http = self.world.clients[tenant]
        other = self.world.other(tenant)
        for path in ("/api/v1/streams", "/api/v1/subscriptions", "/api/v1/pipelines"):
            answer = http.get(path)
            assert answer.status_code == 200, answer.text
            assert other not in answer.text
        # Naming the other tenant outright is refused, not answered.
        assert http.get("/api/v1/streams", params={"tenant_id": other}).status_code == 403

    @rule(stream=streams)
    def owner_reads_only_own_events(self, stream: Stream) -> None:
        answer = self.world.clients[stream.tenant].get(f"/api/v1/streams/{stream.name}/events")
        assert answer.status_code == 200, answer.text
        for event in answer.json()["events"]:
            assert event["event"]["tenantid"] == stream.tenant
        for secret in self.secrets[self.world.other(stream.tenant)]:
            assert secret not in answer.text


def test_two_tenants_never_see_each_other(world: World) -> None:
    TwoTenants.world = world
    run_state_machine_as_test(
        TwoTenants,
        settings=settings(
            max_examples=8,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_pipeline_grants_follow_the_source_stream(world: World, mint: Mint) -> None:
    """Within a tenant, a token narrowed to other streams may not read a pipeline's results."""
    tenant = TENANTS[0]
    path = f"/api/v1/pipelines/{world.pipelines[tenant]}/results"
    http = world.clients[tenant]
    for streams, status in ((["piped"], 200), (["elsewhere"], 403)):
        token = mint(tenant, "viewer", streams=streams)
        answer = http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == status, answer.text
    listed = http.get(
        "/api/v1/pipelines",
        headers={"Authorization": f"Bearer {mint(tenant, 'viewer', streams=['elsewhere'])}"},
    ).json()["pipelines"]
    assert listed == []
