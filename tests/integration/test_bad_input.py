"""Bad input of the kinds a fuzzer rarely builds: numbers past what Kafka, Redis or Python can hold,
events over the broker's record size, URLs that do not parse. Each is a 4xx with a message that
names the problem, never a 5xx, and nothing of a refused batch is published."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pyarrow as pa
import pytest

from tests.integration.conftest import create_stream, ipc_stream

TENANT = "badinput"
HUGE = "99999999999999999999"  # past int64
BIG_PAYLOAD = {"blob": "x" * 2_000_000}  # under MAX_BODY_BYTES, over MAX_EVENT_BYTES


def _event(**changes: Any) -> dict[str, Any]:
    return {
        "event_type": "thing.happened",
        "source_capability": "tests",
        "aggregate_id": "a1",
        "aggregate_type": "Thing",
        "payload": {"n": 1},
        **changes,
    }


# (name, method, path, request arguments, expected status, words the detail must contain)
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("from_time past int64", "GET", "/streams/{sid}/events", {"params": {"from_time": HUGE}},
     422, "from_time"),
    ("from_offset past int64", "GET", "/streams/{sid}/events",
     {"params": {"from_offset": HUGE}}, 422, "from_offset"),
    ("partition past int32", "GET", "/streams/{sid}/events",
     {"params": {"partition": "4294967296"}}, 422, "partition"),
    ("limit past the maximum", "GET", "/streams/{sid}/events", {"params": {"limit": HUGE}},
     422, "limit"),
    ("single event over the record size", "POST", "/events",
     {"json": {"stream_id": "{sid}", **_event(payload=BIG_PAYLOAD)}}, 413, "MAX_EVENT_BYTES"),
    ("batch with one event over the record size", "POST", "/events/batch",
     {"json": {"stream_id": "{sid}", "events": [_event(), _event(payload=BIG_PAYLOAD)]}},
     413, "event 1"),
    ("event_time past year 9999", "POST", "/events",
     {"json": {"stream_id": "{sid}", **_event(event_time=int(HUGE))}}, 422, "event_time"),
    ("webhook_url that does not parse", "POST", "/subscriptions",
     {"json": {"stream_id": "{sid}", "subscription_name": "s", "consumer_group_id": "bad-url",
               "webhook_url": "http://[::1"}}, 422, "does not parse"),
    ("webhook host that does not resolve", "POST", "/subscriptions",
     {"json": {"stream_id": "{sid}", "subscription_name": "s", "consumer_group_id": "no-dns",
               "webhook_url": "http://hooks.example.invalid/esb"}}, 422, "does not resolve"),
    ("start_offset past int64", "POST", "/subscriptions",
     {"json": {"stream_id": "{sid}", "subscription_name": "s", "consumer_group_id": "far",
               "start_position": "offset", "start_offset": int(HUGE)}}, 422, "start_offset"),
    ("start_time_ms past year 9999", "POST", "/subscriptions",
     {"json": {"stream_id": "{sid}", "subscription_name": "s", "consumer_group_id": "late",
               "start_position": "time", "start_time_ms": int(HUGE)}}, 422, "start_time_ms"),
    ("dead-letter offset past int64", "GET", "/subscriptions/nope/dlq",
     {"params": {"offset": HUGE}}, 422, "offset"),
    ("results offset past int64", "GET", "/pipelines/nope/results",
     {"params": {"offset": HUGE}}, 422, "offset"),
    ("results window time past year 9999", "GET", "/pipelines/nope/results",
     {"params": {"from_ms": HUGE}}, 422, "from_ms"),
    ("stream with too many partitions", "POST", "/streams",
     {"json": {"stream_name": "wide", "topic_name": "wide", "source_capability": "t",
               "partitions": int(HUGE)}}, 422, "partitions"),
]  # fmt: skip


def _fill(value: Any, sid: str) -> Any:
    if isinstance(value, str):
        return value.replace("{sid}", sid)
    if isinstance(value, dict):
        return {k: _fill(v, sid) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, sid) for v in value]
    return value


@pytest.fixture(scope="module")
def stream_id(http_module: httpx.Client) -> str:
    return str(create_stream(http_module, TENANT, "bad-input")["stream_id"])


@pytest.fixture(scope="module")
def http_module(stack: Any, mint: Any) -> Any:
    auth = {"Authorization": f"Bearer {mint(TENANT)}"}
    with httpx.Client(base_url=stack.api_url, timeout=120, headers=auth) as client:
        yield client


@pytest.mark.parametrize(("name", "method", "path", "args", "status", "words"), CASES)
def test_bad_input_is_a_4xx_that_says_why(
    http_module: httpx.Client,
    stream_id: str,
    name: str,
    method: str,
    path: str,
    args: dict[str, Any],
    status: int,
    words: str,
) -> None:
    url = "/api/v1" + _fill(path, stream_id)
    answer = http_module.request(method, url, **_fill(args, stream_id))
    assert answer.status_code == status, (name, answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert words in answer.text, (name, answer.text[:500])


def test_refused_batches_publish_nothing(http_module: httpx.Client, stream_id: str) -> None:
    """After every refusal above (and an Arrow body with one huge event), the stream holds only
    what this test publishes itself."""
    big = ipc_stream(_arrow_rows(["small", secrets.token_hex(1_500_000)]))  # lz4 cannot shrink
    arrow = http_module.post(
        "/api/v1/events/arrow",
        content=big,
        params={"stream_id": stream_id},
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
    )
    assert arrow.status_code == 413, arrow.text[:500]
    ok = http_module.post("/api/v1/events", json={"stream_id": stream_id, **_event()})
    assert ok.status_code == 201, ok.text
    page = http_module.get(f"/api/v1/streams/{stream_id}/events").json()
    assert [e["event"]["id"] for e in page["events"]] == [ok.json()["event_id"]]


def _arrow_rows(blobs: list[str]) -> pa.Table:
    n = len(blobs)
    return pa.table(
        {
            "event_type": ["thing.happened"] * n,
            "source_capability": ["tests"] * n,
            "aggregate_id": ["a1"] * n,
            "aggregate_type": ["Thing"] * n,
            "blob": blobs,
        }
    )
