"""Helpers for integration tests on the session stack (fixtures are in tests/conftest.py): a plain
confluent-kafka reader for checking what landed on a topic, and stream creation over HTTP; the
`receiver` fixture, a webhook receiver for the subscription tests."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cluster.settings import Settings
from tests.integration.subscription_helpers import Receiver

pytestmark = pytest.mark.integration


def read_topic(settings: Settings, topic: str, expected: int, deadline_s: float = 60) -> list[Any]:
    """Every record on `topic` (plain confluent-kafka, as any client would), waiting for
    `expected` records or the deadline, whichever comes first."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",  # librdkafka's default; stated, it is checked
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        records: list[Any] = []
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            batch = consumer.consume(num_messages=10_000, timeout=1.0)
            records.extend(m for m in batch if m.error() is None)
            if len(records) >= expected and not batch:
                break
        return records
    finally:
        consumer.close()


def create_stream(http: httpx.Client, tenant: str, name: str, **config: Any) -> dict[str, Any]:
    body = {
        "stream_name": name,
        "topic_name": name,
        "source_capability": "tests",
        "tenant_id": tenant,
        **config,
    }
    answer = http.post("/api/v1/streams", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def ipc_stream(table: pa.Table) -> bytes:
    """An Arrow IPC stream of `table`: the body the Arrow routes take."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def token(http: httpx.Client) -> dict[str, str]:
    """The http client's Authorization header, for a WebSocket client."""
    return {"Authorization": http.headers["authorization"]}


def refused(url: str, code: int, **connect_args: Any) -> str:
    """The reason a WebSocket at `url` is closed with `code` right after its handshake (the bus
    accepts, then closes with 4000 + the HTTP status, so a stock client can read why)."""
    with (
        connect(url, open_timeout=30, **connect_args) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=30)
    close = closed.value.rcvd
    assert close is not None and close.code == code, (url, close)
    return close.reason


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()
