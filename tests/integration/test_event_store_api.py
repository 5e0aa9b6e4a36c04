"""The event store over HTTP on the real stack: events by id (JSON, Arrow-batched, encrypted),
queries with filters, and an event-sourced aggregate (append, conflict, retry, history, state),
checked against what a stock Kafka consumer reads from the topic."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pyarrow as pa

from cluster.settings import Settings
from tests.integration.conftest import create_stream, ipc_stream, read_topic
from tests.integration.waiting import wait_for


def _event(kind: str, agg: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_type": kind,
        "source_capability": "tests",
        "aggregate_id": agg,
        "aggregate_type": "Order",
        "payload": {"n": 1},
        **extra,
    }


def _found(http: httpx.Client, event_id: str, **params: Any) -> dict[str, Any] | None:
    answer = http.get(f"/api/v1/events/{event_id}", params=params)
    assert answer.status_code in (200, 404), answer.text
    return answer.json() if answer.status_code == 200 else None


def test_by_id_answers_the_record_as_stored_with_its_position(
    http: httpx.Client, stack: Settings, unique: str
) -> None:
    stream = create_stream(http, "acme", f"es-id-{unique}", partitions=3)
    sid = stream["stream_id"]
    events = [_event("order.placed", f"o{i}", event_id=f"id-{unique}-{i}") for i in range(5)]
    batch = http.post("/api/v1/events/batch", json={"stream_id": sid, "events": events})
    assert batch.status_code == 200, batch.text
    table = pa.table(
        {
            "event_type": ["order.shipped"] * 3,
            "source_capability": ["tests"] * 3,
            "aggregate_id": ["a1", "a2", "a3"],
            "aggregate_type": ["Order"] * 3,
            "event_id": [f"arrow-{unique}-{i}" for i in range(3)],
            "amount": [1.5, 2.5, 3.5],
        }
    )
    arrow = http.post(
        "/api/v1/events/arrow",
        params={"stream_id": sid},
        content=ipc_stream(table),
        headers={"content-type": "application/vnd.apache.arrow.stream"},
    )
    assert arrow.status_code == 200, arrow.text

    records = read_topic(stack, stream["kafka_topic"], 5 + len(arrow.json()["records"]))
    json_records = {
        orjson.loads(m.value())["id"]: m
        for m in records
        if m.headers() is None or ("esb-format", b"arrow-batch-v1") not in m.headers()
    }
    for receipt in batch.json()["events"]:
        found = wait_for(lambda r=receipt: _found(http, r["event_id"]), "the event by id")
        assert (found["partition"], found["offset"]) == (receipt["partition"], receipt["offset"])
        assert found["stream_id"] == sid
        assert found["event"] == orjson.loads(json_records[receipt["event_id"]].value())
    found = wait_for(lambda: _found(http, f"arrow-{unique}-1", stream_id=sid), "an Arrow event")
    assert found["event"]["data"] == {"amount": 2.5}
    assert found["event"]["subject"] == "a2"
    assert _found(http, f"missing-{unique}") is None

    page = http.post(
        "/api/v1/events/query",
        json={"stream_id": sid, "event_types": ["order.*"], "aggregate_type": "Order"},
    )
    assert page.status_code == 200, page.text
    assert len(page.json()["events"]) == 8 and page.json()["next_cursor"] is None
    only = http.post(
        "/api/v1/events/query",
        json={"stream_id": sid, "event_types": ["order.ship*"], "limit": 2},
    ).json()
    assert len(only["events"]) == 2 and only["next_cursor"] is not None
    rest = http.post(
        "/api/v1/events/query",
        json={"stream_id": sid, "event_types": ["order.ship*"], "cursor": only["next_cursor"]},
    ).json()
    ids = [e["event"]["id"] for e in only["events"] + rest["events"]]
    assert sorted(ids) == [f"arrow-{unique}-{i}" for i in range(3)]
    bad = http.post("/api/v1/events/query", json={"stream_id": sid, "cursor": "nope"})
    assert bad.status_code == 400, bad.text


def test_encrypted_stream_answers_decrypted_events(http: httpx.Client, unique: str) -> None:
    stream = create_stream(http, "acme", f"es-enc-{unique}", encrypted=True)
    sid = stream["stream_id"]
    secret = f"CANARY-{uuid.uuid4().hex}"
    body = _event("card.added", "c1", event_id=f"enc-{unique}", payload={"card": secret})
    assert http.post("/api/v1/events", json={"stream_id": sid, **body}).status_code == 201
    found = wait_for(lambda: _found(http, f"enc-{unique}"), "the encrypted event")
    assert found["event"]["data"] == {"card": secret}
    appended = http.post(
        f"/api/v1/aggregates/Card/c-{unique}/events",
        json={"stream_id": sid, "events": [{"type": "card.added", "payload": {"pin": secret}}]},
    )
    assert appended.status_code == 201, appended.text
    state = http.get(f"/api/v1/aggregates/Card/c-{unique}/state").json()
    assert state == {
        "aggregate_type": "Card",
        "aggregate_id": f"c-{unique}",
        "version": 1,
        "state": {"pin": secret},
    }


def test_an_aggregate_appends_conflicts_retries_and_folds(http: httpx.Client, unique: str) -> None:
    sid = create_stream(http, "acme", f"es-agg-{unique}", partitions=2)["stream_id"]
    url = f"/api/v1/aggregates/Order/o-{unique}/events"
    first = {
        "stream_id": sid,
        "expected_version": "no_stream",
        "events": [
            {"type": "order.placed", "payload": {"item": "book", "qty": 1}, "event_id": "e1"},
            {"type": "order.changed", "payload": {"qty": 2, "note": "gift"}, "event_id": "e2"},
        ],
    }
    created = http.post(url, json=first)
    assert created.status_code == 201, created.text
    assert [e["version"] for e in created.json()["events"]] == [1, 2]
    again = http.post(url, json=first)  # a retry after an unknown outcome: the same versions
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert [e["version"] for e in again.json()["events"]] == [1, 2]
    stale = http.post(
        url,
        json={"stream_id": sid, "expected_version": 1, "events": [{"type": "order.paid"}]},
    )
    assert stale.status_code == 409, stale.text
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["current_version"] == 2
    more = {"type": "order.changed", "payload": {"note": None}}
    assert (
        http.post(url, json={"stream_id": sid, "expected_version": 2, "events": [more]}).status_code
        == 201
    )
    history = http.get(url, params={"from_version": 2}).json()
    assert history["version"] == 3
    assert [(e["version"], e["event"]["type"]) for e in history["events"]] == [
        (2, "order.changed"),
        (3, "order.changed"),
    ]
    assert history["events"][0]["event"]["esbversion"] == 2
    state = http.get(f"/api/v1/aggregates/Order/o-{unique}/state").json()
    assert (state["version"], state["state"]) == (3, {"item": "book", "qty": 2})
    earlier = http.get(f"/api/v1/aggregates/Order/o-{unique}/state", params={"at_version": 2})
    assert earlier.json()["state"] == {"item": "book", "qty": 2, "note": "gift"}
    assert http.get(f"/api/v1/aggregates/Order/none-{unique}/events").status_code == 404
    wrong = http.post(url, json={"stream_id": sid, "expected_version": -1, "events": [more]})
    assert wrong.status_code == 422, wrong.text
    huge = {"type": "order.changed", "payload": {"blob": "x" * 950_000}}
    too_big = http.post(url, json={"stream_id": sid, "expected_version": 3, "events": [huge]})
    assert too_big.status_code == 413, too_big.text  # refused before any version was reserved
    after = http.post(url, json={"stream_id": sid, "expected_version": 3, "events": [more]})
    assert after.status_code == 201 and after.json()["version"] == 4, after.text
