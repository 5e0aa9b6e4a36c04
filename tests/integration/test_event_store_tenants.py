"""Tenant isolation of the event store: another tenant's event ids, aggregates, streams and
queries answer exactly like missing ones (404 or nothing), and never carry the owner's data."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from cluster.settings import Settings
from tests.conftest import Mint
from tests.integration.conftest import create_stream
from tests.integration.waiting import wait_for

RUN = uuid.uuid4().hex[:6]
OWNER, INTRUDER = f"esown{RUN}", f"esint{RUN}"


@pytest.fixture
def clients(stack: Settings, mint: Mint) -> Any:
    made = {
        t: httpx.Client(
            base_url=stack.api_url, timeout=60, headers={"Authorization": f"Bearer {mint(t)}"}
        )
        for t in (OWNER, INTRUDER)
    }
    yield made
    for client in made.values():
        client.close()


def test_another_tenants_ids_aggregates_and_queries_answer_nothing(
    clients: dict[str, httpx.Client],
) -> None:
    owner, intruder = clients[OWNER], clients[INTRUDER]
    secret = f"SECRET-{uuid.uuid4().hex}"
    stream = create_stream(owner, OWNER, "ledger")
    sid = stream["stream_id"]
    mine = create_stream(intruder, INTRUDER, "ledger")["stream_id"]  # the same name, its own
    event = {
        "stream_id": sid,
        "event_id": "shared-id",
        "event_type": "entry.made",
        "source_capability": "tests",
        "aggregate_id": "acct-1",
        "aggregate_type": "Account",
        "correlation_id": "corr-1",
        "payload": {"secret": secret},
    }
    assert owner.post("/api/v1/events", json=event).status_code == 201
    url = "/api/v1/aggregates/Account/acct-1"
    appended = owner.post(
        f"{url}/events",
        json={"stream_id": sid, "events": [{"type": "entry.made", "payload": {"s": secret}}]},
    )
    assert appended.status_code == 201, appended.text
    wait_for(lambda: owner.get("/api/v1/events/shared-id").status_code == 200, "indexing")

    def refused(answer: httpx.Response, named_stream: bool = False) -> None:
        """Exactly a missing one's answer: 404, nothing of the owner's but what was asked."""
        assert answer.status_code == 404, answer.text
        assert secret not in answer.text and OWNER not in answer.text
        assert named_stream or sid not in answer.text

    refused(intruder.get("/api/v1/events/shared-id"))
    refused(intruder.get("/api/v1/events/shared-id", params={"stream_id": sid}), True)
    refused(intruder.get(f"{url}/events"))
    refused(intruder.get(f"{url}/state"))
    refused(intruder.post("/api/v1/events/query", json={"stream_id": sid}), True)
    assert intruder.get("/api/v1/events/shared-id", params={"tenant_id": OWNER}).status_code == 403
    for body in ({}, {"correlation_id": "corr-1"}, {"aggregate_id": "acct-1"}, {"stream_id": mine}):
        answer = intruder.post("/api/v1/events/query", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["events"] == [] and secret not in answer.text
    # The same aggregate type and id in the intruder's tenant is another aggregate.
    own = intruder.post(
        f"{url}/events",
        json={"stream_id": mine, "expected_version": "no_stream", "events": [{"type": "x.y"}]},
    )
    assert own.status_code == 201 and own.json()["version"] == 1, own.text
    assert owner.get(f"{url}/state").json()["version"] == 1
    assert owner.get(f"{url}/state").json()["state"] == {"s": secret}
