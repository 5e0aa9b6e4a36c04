"""Publishing over HTTP lands on Kafka as CloudEvents, exactly once, readable by any client."""

from __future__ import annotations

import io
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest
from confluent_kafka.admin import AdminClient

from cluster.settings import Settings
from tests.integration.conftest import create_stream, read_topic

pytestmark = pytest.mark.integration


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_type": "order.placed" if n % 2 else "order.paid",
        "source_capability": "shop",
        "aggregate_id": f"order-{n % 1000}",
        "aggregate_type": "Order",
        "payload": {"n": n, "amount": n * 1.5},
        **extra,
    }


def test_event_published_over_http_is_a_cloudevent_on_the_topic(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    created = create_stream(http, "acme", f"users-{unique}", partitions=4, replication_factor=3)
    assert created["kafka_topic"] == f"esb.acme.users-{unique}"
    assert "capped to 1" in created["warnings"][0]
    default = create_stream(http, "acme", f"plain-{unique}")  # as many as there are, no warning
    assert default["warnings"] == []
    record = http.get(f"/api/v1/streams/{default['stream_id']}").json()
    assert (record["replication_factor"], record["requested_replication_factor"]) == (1, None)

    body = {
        "stream_id": created["stream_id"],
        "tenant_id": "acme",
        "user_id": "alice",
        "event_type": "user.created",
        "source_capability": "user_management",
        "aggregate_id": "user_123",
        "aggregate_type": "User",
        "correlation_id": "corr-1",
        "event_time": "2026-11-29T10:00:00.250Z",
        "payload": {"email": "a@example.com"},
    }
    answer = http.post("/api/v1/events", json=body)
    assert answer.status_code == 201, answer.text
    receipt = answer.json()

    [record] = read_topic(stack, created["kafka_topic"], expected=1)
    assert record.key() == b"user_123"
    assert (record.partition(), record.offset()) == (receipt["partition"], receipt["offset"])
    assert dict(record.headers())["content-type"].startswith(b"application/cloudevents+json")
    ce = orjson.loads(record.value())
    assert ce["specversion"] == "1.0" and ce["id"] == receipt["event_id"]
    assert ce["type"] == "user.created" and ce["subject"] == "user_123"
    assert ce["time"] == "2026-11-29T10:00:00.250Z" and ce["data"] == {"email": "a@example.com"}
    assert ce["source"] == "/acme/user_management"
    assert (ce["tenantid"], ce["userid"], ce["aggregatetype"], ce["correlationid"]) == (
        "acme",
        "alice",
        "User",
        "corr-1",
    )

    # Same key, same partition: the key decides placement. By name, the answer names the id.
    by_name = {**body, "stream_id": f"users-{unique}", "payload": {}}
    again = http.post("/api/v1/events", json=by_name).json()
    assert again["partition"] == receipt["partition"]
    assert again["stream_id"] == receipt["stream_id"] == created["stream_id"]


def _arrow_body(events: list[dict[str, Any]]) -> bytes:
    rows = [{**e, "payload": orjson.dumps(e["payload"]).decode()} for e in events]
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


@pytest.mark.parametrize("encoding", ["json", "arrow"])
def test_batch_of_10000_lands_exactly_once(
    stack: Settings, http: httpx.Client, unique: str, encoding: str
) -> None:
    created = create_stream(http, "acme", f"orders-{encoding}-{unique}", partitions=6)
    who = {"stream_id": created["stream_id"], "tenant_id": "acme", "user_id": "loader"}
    events = [event(n, event_id=f"{unique}-{n}") for n in range(10_000)]
    if encoding == "json":
        post = lambda: http.post("/api/v1/events/batch", json={**who, "events": events})  # noqa: E731
    else:
        body = _arrow_body(events)
        post = lambda: http.post(  # noqa: E731
            "/api/v1/events/batch",
            params=who,
            content=body,
            headers={"content-type": "application/vnd.apache.arrow.stream"},
        )

    first = post()
    assert first.status_code == 200, first.text[:500]
    assert (first.json()["published"], first.json()["failed"]) == (10_000, 0)
    statuses = first.json()["events"]
    assert [s["event_id"] for s in statuses] == [e["event_id"] for e in events]

    again = post()
    assert again.status_code == 200
    assert (again.json()["published"], again.json()["duplicates"]) == (0, 10_000)
    # A duplicate answers where the original landed.
    assert again.json()["events"][7]["offset"] == statuses[7]["offset"]

    records = read_topic(stack, created["kafka_topic"], expected=10_000)
    ids = [orjson.loads(r.value())["id"] for r in records]
    assert len(ids) == 10_000 and set(ids) == {e["event_id"] for e in events}


def test_ndjson_and_json_array_bodies_take_the_stream_from_the_query(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    created = create_stream(http, "acme", f"nd-{unique}")
    who = {"stream_id": created["stream_id"], "tenant_id": "acme", "user_id": "u"}
    ndjson = b"\n".join(orjson.dumps(event(n)) for n in range(5))
    answer = http.post(
        "/api/v1/events/batch",
        params=who,
        content=ndjson,
        headers={"content-type": "application/x-ndjson"},
    )
    assert answer.status_code == 200 and answer.json()["published"] == 5
    answer = http.post("/api/v1/events/batch", params=who, json=[event(n) for n in range(3)])
    assert answer.status_code == 200 and answer.json()["published"] == 3
    assert len(read_topic(stack, created["kafka_topic"], expected=8)) == 8


def test_bad_batch_publishes_nothing(stack: Settings, http: httpx.Client, unique: str) -> None:
    created = create_stream(http, "acme", f"bad-{unique}")
    who = {"stream_id": created["stream_id"], "tenant_id": "acme", "user_id": "u"}
    events = [event(1), {**event(2), "aggregate_id": None}, event(3)]
    answer = http.post("/api/v1/events/batch", json={**who, "events": events})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["index"] == 1
    assert read_topic(stack, created["kafka_topic"], expected=0, deadline_s=3) == []


def test_stream_lifecycle_read_back_and_metrics(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    created = create_stream(http, "acme", f"life-{unique}", partitions=2)
    sid = created["stream_id"]
    listed = http.get("/api/v1/streams", params={"tenant_id": "acme"}).json()["streams"]
    assert sid in {s["stream_id"] for s in listed}
    details = http.get(f"/api/v1/streams/{sid}").json()
    assert details["kafka_topic"] == created["kafka_topic"] and details["partitions"] == 2

    who = {"stream_id": sid, "tenant_id": "acme", "user_id": "u"}
    http.post("/api/v1/events/batch", json={**who, "events": [event(n) for n in range(25)]})

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"/api/v1/streams/{sid}/events", params=params).json()
        seen += [(e["partition"], e["offset"]) for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 25 == len(set(seen))
    later = http.get(f"/api/v1/streams/{sid}/events", params={"from_time": "2999-01-01T00:00:00Z"})
    assert later.json()["events"] == []
    one = http.get(f"/api/v1/streams/{sid}/events", params={"partition": 0, "from_offset": 1})
    assert all(e["partition"] == 0 and e["offset"] >= 1 for e in one.json()["events"])

    metrics = http.get(f"/api/v1/streams/{sid}/metrics").json()
    assert metrics["event_count"] == 25 and metrics["events_published"] == 25
    assert sum(p["end_offset"] for p in metrics["partitions"]) == 25
    assert metrics["publish_rate_per_s"] > 0

    assert http.delete(f"/api/v1/streams/{sid}").status_code == 200
    assert http.get(f"/api/v1/streams/{sid}").status_code == 404
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    assert created["kafka_topic"] not in admin.list_topics(timeout=10).topics


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/api/v1/streams/no-such-stream", {}, 404),
        ("delete", "/api/v1/streams/no-such-stream", {}, 404),
        ("get", "/api/v1/streams/no-such-stream/events", {}, 404),
        (
            "post",
            "/api/v1/events",
            {"json": {**event(1), "stream_id": "nope", "tenant_id": "acme", "user_id": "u"}},
            404,
        ),
        (
            "post",
            "/api/v1/streams",
            {
                "json": {
                    "stream_name": "x",
                    "topic_name": "bad topic!",
                    "source_capability": "c",
                    "tenant_id": "acme",
                }
            },
            422,
        ),
        (
            "post",
            "/api/v1/streams",
            {
                "json": {
                    "stream_name": "x",
                    "topic_name": "x",
                    "source_capability": "c",
                    "tenant_id": "a.b",
                }
            },
            403,  # another tenant than the token's
        ),
        (
            "post",
            "/api/v1/streams",
            {
                "json": {
                    "stream_name": "x",
                    "topic_name": "x",
                    "source_capability": "c",
                    "tenant_id": "acme",
                    "partitions": 0,
                }
            },
            422,
        ),
        ("get", "/api/v1/streams/x/events", {"params": {"limit": 0}}, 422),
        ("get", "/api/v1/streams/x/events", {"params": {"from_time": "yesterday"}}, 422),
        ("get", "/api/v1/streams/x/events", {"params": {"cursor": "!!"}}, 404),
    ],
)
def test_bad_inputs_over_the_real_stack(
    http: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    answer = getattr(http, method)(path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"]


def test_duplicate_stream_name_is_409(http: httpx.Client, unique: str) -> None:
    create_stream(http, "acme", f"dup-{unique}")
    body = {
        "stream_name": f"dup-{unique}",
        "topic_name": f"dup2-{unique}",
        "source_capability": "c",
        "tenant_id": "acme",
    }
    assert http.post("/api/v1/streams", json=body).status_code == 409


def test_health_endpoints(http: httpx.Client) -> None:
    assert http.get("/health").json()["status"] == "ok"
    status = http.get("/api/v1/status").json()
    assert status["status"] == "ok", status
    assert status["ray"]["alive_nodes"] >= 1 and status["kafka"]["brokers"] == 1
    for name in ("kafka", "redis", "database"):
        assert http.get(f"/api/v1/{name}/health").json()["status"] == "ok"
    assert "/api/v1/events" in http.get("/openapi.json").json()["paths"]
    assert http.get("/docs").status_code == 200
