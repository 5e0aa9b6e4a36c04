"""Redis down is a 503 with Retry-After, never a 500: the real app against a Redis address that
refuses connections, and each connection-class error raised by a route. A WebSocket is closed
with 4503 and the same detail, when it opens or when its source loses Redis later."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.exceptions
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from serve import problems
from serve.websocket import relay
from tests.unit.offline_app import offline_client


@pytest.fixture(scope="module")
def client() -> TestClient:
    return offline_client()  # nothing listens on Redis's port: every Redis call is refused


def _is_redis_down(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == str(problems.REDIS_RETRY_AFTER_S)
    body = answer.json()
    assert body["status"] == 503 and body["title"] == "Service unavailable"
    assert body["detail"].startswith("Redis is unavailable (")


@pytest.mark.parametrize("path", ["/api/v1/streams", "/api/v1/pipelines"])
def test_reads_while_redis_refuses_connections_are_503(client: TestClient, path: str) -> None:
    _is_redis_down(client.get(path))


def test_a_batch_while_redis_refuses_connections_is_503(client: TestClient) -> None:
    event = {
        "event_type": "a.b",
        "source_capability": "c",
        "aggregate_id": "1",
        "aggregate_type": "T",
        "event_id": "e1",
    }
    body = {"stream_id": "s", "tenant_id": "t", "user_id": "u", "events": [event]}
    _is_redis_down(client.post("/api/v1/events/batch", json=body))


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ConnectionError("Connection reset by peer"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    ],
    ids=type,
)
def test_each_connection_class_error_is_503(error: Exception) -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    answer = TestClient(app, raise_server_exceptions=False).get("/boom")
    _is_redis_down(answer)
    assert type(error).__name__ in answer.json()["detail"]


def test_other_redis_errors_stay_500() -> None:
    """A command Redis refuses (a wrong type, a script error) is a bug here, not an outage."""
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key")

    answer = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert answer.status_code == 500 and "retry-after" not in answer.headers


@pytest.mark.parametrize("path", ["/ws/events/s", "/ws/pipelines/p", "/ws/subscriptions/s"])
def test_a_websocket_opened_while_redis_refuses_is_closed_4503(
    client: TestClient, path: str
) -> None:
    with client.websocket_connect(path) as socket:
        closed = socket.receive()
    assert closed["type"] == "websocket.close" and closed["code"] == 4503, closed
    assert closed["reason"].startswith("Redis is unavailable (ConnectionError)")


def test_a_live_socket_whose_source_loses_redis_is_closed_4503() -> None:
    app = FastAPI()
    problems.install(app)

    async def source() -> AsyncIterator[bytes]:
        yield b'{"n": 1}'
        raise redis.exceptions.ConnectionError("Connection reset by peer")

    @app.websocket("/ws")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        await relay(websocket, source())

    with TestClient(app).websocket_connect("/ws") as socket:
        assert socket.receive_text() == '{"n": 1}'
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_text()
    assert closed.value.code == 4503 and "Redis is unavailable" in closed.value.reason
