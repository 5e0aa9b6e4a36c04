"""Helpers for the pipeline tests (test_pipeline_job_*.py, tests/faults): events with disorder,
a brute-force oracle over what is on the topic, and the HTTP calls the tests make in TENANT."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer

from cluster.models.pipelines import PipelineRecord
from cluster.settings import Settings
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from pipelines.envelope import rfc3339_ms
from pipelines.spec import PipelineSpec
from tests.integration.conftest import read_topic

TENANT = "proc"
WINDOW_MS = 1_000
BASE_MS = 1_800_000_000_000
SEED_SPAN_MS = 1_000_000  # each seed's events get their own time range, later seeds later
SENTINEL_MS = BASE_MS + 100 * SEED_SPAN_MS  # far past every window: closes them all


def spec_for(stream_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "pipeline_name": "totals",
        "source_stream": stream_id,
        "event_types": ["order.*"],
        "fields": {"amount": "int"},
        "window": {"type": "tumbling", "size_ms": WINDOW_MS},
        "allowed_lateness_ms": 60_000,  # more than any disorder below: no event is late
        "aggregations": [
            {"name": "orders", "op": "count"},
            {"name": "revenue", "op": "sum", "field": "amount"},
        ],
        **changes,
    }


def make_events(n: int, seed: int, keys: int = 20) -> list[dict[str, Any]]:
    """Out-of-order times (up to 30 s of disorder) and a few other event types to filter out."""
    rng = random.Random(seed)
    return [
        {
            "event_type": "order.placed" if i % 10 else "user.seen",
            "source_capability": "shop",
            "aggregate_id": f"k{rng.randrange(keys)}",
            "aggregate_type": "Order",
            "event_id": f"{seed}-{i}",
            "event_time": BASE_MS + seed * SEED_SPAN_MS + i * 37 + rng.randrange(-30_000, 30_000),
            "payload": {"amount": rng.randrange(1, 100)},
        }
        for i in range(n)
    ]


def publish(http: httpx.Client, stream_id: str, events: list[dict[str, Any]]) -> None:
    who = {"stream_id": stream_id, "tenant_id": TENANT, "user_id": "t"}
    for start in range(0, len(events), 5_000):
        answer = http.post(
            "/api/v1/events/batch", json={**who, "events": events[start : start + 5_000]}
        )
        assert answer.status_code == 200, answer.text[:300]


def one_record_per_partition(
    settings: Settings, topic: str, partitions: int, t: int, event_type: str, key: str, **data: Any
) -> None:
    """A CloudEvent at `t` (aggregate and record key `key`) produced to every partition."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for p in range(partitions):
        event = {
            "specversion": "1.0",
            "id": f"{key}-{p}-{uuid.uuid4().hex}",
            "type": event_type,
            "source": "/tests",
            "time": rfc3339_ms(t),
            "aggregateid": key,
            "data": data,
        }
        producer.produce(topic, orjson.dumps(event), key.encode(), partition=p)
    assert producer.flush(30) == 0


def close_all_windows(settings: Settings, topic: str, partitions: int) -> None:
    """One far-future event per partition, so every partition's watermark passes every window."""
    one_record_per_partition(
        settings,
        topic,
        partitions,
        SENTINEL_MS,
        "order.tick",
        "sentinel",
        amount=0,
        customer="sentinel",
    )


def oracle(settings: Settings, topic: str) -> dict[tuple[str, int], tuple[int, int]]:
    """Brute force over what is on the topic: unique ids, order.* only, tumbling count and sum."""
    seen: dict[str, dict[str, Any]] = {}
    for record in read_topic(settings, topic, expected=1):
        if is_arrow_batch(record.headers()):
            events = to_cloudevents(record.value())
        else:
            events = [orjson.loads(record.value())]
        for event in events:
            seen.setdefault(event["id"], event)
    totals: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for event in seen.values():
        if not event["type"].startswith("order.") or event["aggregateid"] == "sentinel":
            continue
        ms = int(datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp() * 1000)
        window = (event["aggregateid"], ms - ms % WINDOW_MS)
        totals[window][0] += 1
        totals[window][1] += event["data"]["amount"]
    return {w: (c, s) for w, (c, s) in totals.items()}


def all_results(http: httpx.Client, pipeline_id: str) -> list[dict[str, Any]]:
    """Every stored result of a pipeline, page by page."""
    found: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = http.get(
            f"/api/v1/pipelines/{pipeline_id}/results", params={"limit": 1000, "offset": offset}
        ).json()
        found += page["results"]
        offset = page["next_offset"]
    return found


def results_of(http: httpx.Client, pipeline_id: str) -> dict[tuple[str, int], tuple[int, int]]:
    return {
        (r["key"], r["window_start_ms"]): (r["orders"], r["revenue"])
        for r in all_results(http, pipeline_id)
        if r["key"] != "sentinel"
    }


def caught_up(http: httpx.Client, pipeline_id: str) -> dict[str, Any] | None:
    status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    return (
        status if status["progress"].get("lag", 1) == 0 and status["state"] == "RUNNING" else None
    )


def submit(http: httpx.Client, stream_id: str, owners: int, **spec: Any) -> str:
    """A windowed pipeline (spec_for with `spec`'s changes) over `stream_id`."""
    return submit_spec(http, spec_for(stream_id, **spec), owners)


def submit_spec(http: httpx.Client, spec: dict[str, Any], owners: int = 2) -> str:
    answer = http.post(
        "/api/v1/pipelines", json={"tenant_id": TENANT, "owners": owners, "spec": spec}
    )
    assert answer.status_code == 201, answer.text
    pipeline_id: str = answer.json()["pipeline_id"]
    return pipeline_id


def owned_without_job(
    stream: dict[str, Any], pipeline_id: str, spec: dict[str, Any], partitions: int
) -> PipelineRecord:
    """A pipeline record for driving PartitionOwner directly in the test process (no Ray job)."""
    return PipelineRecord(
        pipeline_id=pipeline_id,
        tenant_id=TENANT,
        stream_id=stream["stream_id"],
        kafka_topic=stream["kafka_topic"],
        partitions=partitions,
        owners=1,
        spec=PipelineSpec.model_validate(spec),
        created_by="t",
        created_at="now",
        job_id="none",
    )
