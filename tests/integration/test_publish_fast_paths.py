"""The front door's fast paths on the real stack: concurrent single publishes that share a batch
(cluster.coalescing) each get their own answer, exactly once; and the opt-in Arrow
route writes Arrow-batched records that unpack to the events sent."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pyarrow as pa
import pytest

from cluster.settings import Settings
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from tests.integration.conftest import create_stream, ipc_stream, read_topic

pytestmark = pytest.mark.integration


def single(n: int, sid: str, **extra: object) -> dict[str, object]:
    return {
        "stream_id": sid,
        "event_type": "order.placed",
        "source_capability": "shop",
        "aggregate_id": f"order-{n % 7}",
        "aggregate_type": "Order",
        "payload": {"n": n},
        **extra,
    }


def test_concurrent_single_publishes_each_land_once(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    created = create_stream(http, "acme", f"burst-{unique}", partitions=3)
    sid = created["stream_id"]
    # 60 at once: 50 without ids, and one client id sent 10 times
    bodies = [single(n, sid) for n in range(50)]
    bodies += [single(99, sid, event_id=f"dup-{unique}") for _ in range(10)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers=dict(http.headers), timeout=120
        ) as client:
            return await asyncio.gather(*(client.post("/api/v1/events", json=b) for b in bodies))

    answers = asyncio.run(burst())
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 51, 200: 9}, [a.text for a in answers if a.status_code >= 300]
    receipts = [a.json() for a in answers]
    where = {(r["partition"], r["offset"]) for r in receipts if r["status"] == "published"}
    assert len(where) == 51  # every published event has its own place
    same_id = Counter(r["status"] for r in receipts if r["event_id"] == f"dup-{unique}")
    assert same_id == {"published": 1, "duplicate": 9}
    records = read_topic(stack, created["kafka_topic"], expected=51)
    assert len(records) == 51
    assert sorted((r.partition(), r.offset()) for r in records) == sorted(where)


def _frame(rows: int) -> bytes:
    table = pa.table(
        {
            "event_type": ["sensor.read"] * rows,
            "source_capability": ["iot"] * rows,
            "aggregate_id": [f"dev-{i % 5}" for i in range(rows)],
            "aggregate_type": ["Device"] * rows,
            "celsius": [float(i) for i in range(rows)],
        }
    )
    return ipc_stream(table)


def test_arrow_route_writes_arrow_batched_records(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    created = create_stream(http, "acme", f"frames-{unique}", partitions=2)
    sid, arrow = created["stream_id"], {"content-type": "application/vnd.apache.arrow.stream"}
    answer = http.post(
        "/api/v1/events/arrow", params={"stream_id": sid}, content=_frame(500), headers=arrow
    )
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["events"] == 500 and 1 <= len(receipt["records"]) <= 2

    records = read_topic(stack, created["kafka_topic"], expected=len(receipt["records"]))
    assert all(is_arrow_batch(r.headers()) for r in records)
    events = [e for r in records for e in to_cloudevents(r.value())]
    assert sorted(e["data"]["celsius"] for e in events) == [float(i) for i in range(500)]
    assert {e["tenantid"] for e in events} == {"acme"}
    assert http.get(f"/api/v1/streams/{sid}/metrics").json()["events_published"] == 500


def test_arrow_route_refuses_what_it_cannot_read(http: httpx.Client, unique: str) -> None:
    sid = create_stream(http, "acme", f"frames-bad-{unique}")["stream_id"]
    url, params = "/api/v1/events/arrow", {"stream_id": sid}
    as_json = http.post(url, params=params, json={"events": []})
    assert as_json.status_code == 415 and "arrow" in as_json.json()["detail"]
    arrow = {"content-type": "application/vnd.apache.arrow.stream"}
    garbage = http.post(url, params=params, content=b"not arrow", headers=arrow)
    assert garbage.status_code == 400
    no_envelope = ipc_stream(pa.table({"event_type": ["a.b"]}))  # no aggregate_id, source, type
    missing = http.post(url, params=params, content=no_envelope, headers=arrow)
    assert missing.status_code == 422, missing.text
