"""Subscriptions on the real broker, Redis and Ray: glob filters with the subscription's live
deliveries WebSocket, and the WebSocket live tail of a stream."""

from __future__ import annotations

import time
from collections import defaultdict

import httpx
import orjson
import pytest
from websockets.sync.client import connect

from cluster.settings import Settings
from tests.integration.conftest import create_stream, refused, token
from tests.integration.subscription_helpers import (
    TENANT,
    Receiver,
    cancel,
    events,
    publish,
    status,
    subscribe,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def test_globs_select_exactly_the_matching_types_and_live_deliveries(
    stack: Settings, http: httpx.Client, receiver: Receiver, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"globs-{unique}", partitions=2)
    sub = subscribe(
        http,
        stream,
        webhook_url=receiver.url,
        event_type_patterns=["user.*", "order.created", "invoice.?aid"],
        start_position="latest",
    )
    ws = f"{stack.api_url.replace('http', 'ws')}/ws/subscriptions/{sub['subscription_id']}"
    types = ["user.created", "user.profile.updated", "users.created", "user", "order.created",
             "order.created.v2", "order.updated", "invoice.paid", "invoice.unpaid",
             "Invoice.paid"]  # fmt: skip
    matching = {"user.created", "user.profile.updated", "order.created", "invoice.paid"}
    batch = events(len(types) * 3, f"g{unique}", types=types)
    with connect(
        f"{ws}?tenant_id={TENANT}", open_timeout=30, additional_headers=token(http)
    ) as live:
        first = orjson.loads(live.recv(timeout=30))
        assert first["type"] == "status" and first["state"] == "active"
        publish(http, stream["stream_id"], batch)
        delivered_live: set[str] = set()
        end = time.monotonic() + 120
        while len(delivered_live) < 12 and time.monotonic() < end:
            message = orjson.loads(live.recv(timeout=120))
            if message["type"] == "deliveries":
                delivered_live |= {i["webhook_id"] for i in message["items"]}
    expected = {e["event_id"] for e in batch if e["event_type"] in matching}
    assert delivered_live == expected
    wait_for(lambda: status(http, sub)["lag"] == 0, "the subscription to catch up")
    assert set(receiver.delivered()) == expected
    assert {orjson.loads(h.body)["type"] for h in receiver.hits} == matching
    assert status(http, sub)["counts"]["filtered_out"] == len(batch) - len(expected)
    cancel(http, sub)


def test_websocket_live_tail_in_order_per_key(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    name = f"tail-{unique}"
    stream = create_stream(http, TENANT, name, partitions=3)
    before = events(10, f"before{unique}", types=["order.placed"])
    publish(http, stream["stream_id"], before)  # published before: not in a `latest` tail
    ws = f"{stack.api_url.replace('http', 'ws')}/ws/events/{name}"
    sent = events(300, f"t{unique}", types=["order.placed", "user.seen"], keys=7)
    with connect(
        f"{ws}?tenant_id={TENANT}&event_types=order.*",
        open_timeout=30,
        additional_headers=token(http),
    ) as live:
        for start in range(0, 300, 50):
            publish(http, stream["stream_id"], sent[start : start + 50])
        got = [orjson.loads(live.recv(timeout=60)) for _ in range(150)]
    assert {g["event"]["type"] for g in got} == {"order.placed"}
    assert {g["event"]["id"] for g in got} == {
        e["event_id"] for e in sent if e["event_type"] == "order.placed"
    }
    per_key: dict[str, list[int]] = defaultdict(list)
    for g in got:
        per_key[g["key"]].append(g["event"]["data"]["seq"])
    assert all(seqs == sorted(seqs) for seqs in per_key.values())
    refused(f"{ws}?tenant_id=nobody", 4403, additional_headers=token(http))  # not its tenant
