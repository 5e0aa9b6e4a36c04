"""Bad requests are refused with problem+json before any service is called (no Kafka here)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.offline_app import offline_client

EVENT = {
    "stream_id": "s",
    "tenant_id": "t",
    "user_id": "u",
    "event_type": "a.b",
    "source_capability": "c",
    "aggregate_id": "1",
    "aggregate_type": "T",
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    # Unreachable services: any test that got past validation would fail loudly.
    return offline_client(max_body_bytes=1000, max_batch_events=3)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "says"),
    [
        ("/api/v1/events", b"{", {"content-type": "application/json"}, 400, "not valid JSON"),
        ("/api/v1/events", b"[]", {"content-type": "application/json"}, 400, "JSON object"),
        ("/api/v1/events", b"{}", {"content-type": "text/plain"}, 415, "application/json"),
        ("/api/v1/events", b"{}", {}, 415, "(none)"),
        ("/api/v1/events", b"{}", {"content-type": "application/json"}, 422, "event_type"),
        ("/api/v1/events", b"x" * 2000, {"content-type": "application/json"}, 413, "1000"),
        ("/api/v1/events/batch", b"[{}]", {"content-type": "application/json"}, 422, "stream_id"),
        ("/api/v1/events/batch", b"[]", {"content-type": "application/xml"}, 415, "xml"),
        (
            "/api/v1/streams",
            b'{"stream_name": 1}',
            {"content-type": "application/json"},
            422,
            "stream_name",
        ),
    ],
)
def test_bad_input_table(
    client: TestClient, path: str, body: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert says in answer.json()["detail"]


def test_wrongly_typed_field_is_named(client: TestClient) -> None:
    answer = client.post("/api/v1/events", json={**EVENT, "aggregate_id": 5})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "aggregate_id"


def test_batch_over_event_limit_is_413(client: TestClient) -> None:
    event = {k: v for k, v in EVENT.items() if k not in ("stream_id", "tenant_id", "user_id")}
    answer = client.post("/api/v1/events/batch?stream_id=s&tenant_id=t&user_id=u", json=[event] * 4)
    assert answer.status_code == 413 and "limit is 3" in answer.json()["detail"]


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert client.get("/api/v1/nope").status_code == 404
    answer = client.put("/api/v1/events", json={})
    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/streams",
        "/api/v1/events",
        "/api/v1/events/batch",
        "/api/v1/streams/{stream_id}/events",
        "/api/v1/kafka/health",
        "/api/v1/redis/health",
        "/api/v1/database/health",
        "/api/v1/status",
    ):
        assert path in paths
