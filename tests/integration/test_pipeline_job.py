"""Pipelines on the real broker, Redis and Ray: results equal a brute-force oracle over the events
read back from Kafka, also when owners are killed mid-run; a fenced zombie writes nothing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest
import yaml
from confluent_kafka import Producer
from redis import Redis
from websockets.sync.client import connect

from actors.partition_owner import PartitionOwner
from cluster.errors import Fenced
from cluster.models.pipelines import PipelineRecord
from cluster.naming import owner_name
from cluster.services.bus import shared_bus
from cluster.services.publishing import ArrowReceipt, EventPublishingService
from cluster.settings import Settings
from cluster.stores.pipelines import PipelineStore
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from pipelines.envelope import rfc3339_ms
from pipelines.spec import PipelineSpec
from tests.integration.conftest import create_stream, read_topic

pytestmark = pytest.mark.integration

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


def replay_duplicates(settings: Settings, topic: str, count: int) -> int:
    """Re-produce records already on the topic, as an at-least-once producer would; answers how
    many of them the pipeline's event-type filter lets through."""
    records = read_topic(settings, topic, expected=count)[:count]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for r in records:
        producer.produce(topic, r.value(), r.key(), partition=r.partition())
    assert producer.flush(30) == 0
    return sum(orjson.loads(r.value())["type"].startswith("order.") for r in records)


def close_all_windows(settings: Settings, topic: str, partitions: int) -> None:
    """One far-future event per partition, so every partition's watermark passes every window."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for p in range(partitions):
        event = {
            "specversion": "1.0",
            "id": f"sentinel-{p}-{uuid.uuid4().hex}",
            "type": "order.tick",
            "source": "/tests",
            "time": rfc3339_ms(SENTINEL_MS),
            "aggregateid": "sentinel",
            "data": {"amount": 0, "customer": "sentinel"},
        }
        producer.produce(topic, orjson.dumps(event), b"sentinel", partition=p)
    assert producer.flush(30) == 0


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


def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = 240) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def results_of(http: httpx.Client, pipeline_id: str) -> dict[tuple[str, int], tuple[int, int]]:
    found: dict[tuple[str, int], tuple[int, int]] = {}
    offset: int | None = 0
    while offset is not None:
        page = http.get(
            f"/api/v1/pipelines/{pipeline_id}/results", params={"limit": 1000, "offset": offset}
        ).json()
        for r in page["results"]:
            if r["key"] != "sentinel":
                found[(r["key"], r["window_start_ms"])] = (r["orders"], r["revenue"])
        offset = page["next_offset"]
    return found


def caught_up(http: httpx.Client, pipeline_id: str) -> dict[str, Any] | None:
    status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    return (
        status if status["progress"].get("lag", 1) == 0 and status["state"] == "RUNNING" else None
    )


def submit(http: httpx.Client, stream_id: str, owners: int, **spec: Any) -> str:
    answer = http.post(
        "/api/v1/pipelines",
        json={"tenant_id": TENANT, "owners": owners, "spec": spec_for(stream_id, **spec)},
    )
    assert answer.status_code == 201, answer.text
    pipeline_id: str = answer.json()["pipeline_id"]
    return pipeline_id


def test_pipeline_job_results_equal_the_oracle(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"orders-{unique}", partitions=4)
    publish(http, stream["stream_id"], make_events(3_000, seed=1))
    replayed = replay_duplicates(stack, stream["kafka_topic"], 300)
    pipeline_id = submit(http, stream["stream_id"], owners=2)
    publish(http, stream["stream_id"], make_events(2_000, seed=2))
    close_all_windows(stack, stream["kafka_topic"], 4)

    expected = oracle(stack, stream["kafka_topic"])
    wait_for(lambda: caught_up(http, pipeline_id), "the pipeline to catch up")
    assert wait_for(lambda: results_of(http, pipeline_id) == expected or None, "results") is True

    status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    # Replayed records count as duplicates, or as late once their window was closed and purged.
    assert status["progress"]["duplicates"] + status["progress"]["late_dropped"] == replayed
    assert status["progress"]["windows_emitted"] >= len(expected)
    assert {p["lag"] for p in status["partitions_progress"]} == {0}

    by_key = http.get(f"/api/v1/pipelines/{pipeline_id}/results", params={"key": "k3"}).json()
    assert {r["key"] for r in by_key["results"]} == {"k3"}
    latest = http.get(f"/api/v1/pipelines/{pipeline_id}/results", params={"latest": 5}).json()
    ends = [r["window_end_ms"] for r in latest["results"]]
    assert len(ends) == 5 and ends == sorted(ends, reverse=True)

    assert http.delete(f"/api/v1/pipelines/{pipeline_id}").status_code == 200
    assert http.get(f"/api/v1/pipelines/{pipeline_id}").json()["state"] == "STOPPED"


def test_killed_owners_lose_and_double_count_nothing(
    stack: Settings, http: httpx.Client, ray_session: Any, unique: str
) -> None:
    import ray

    stream = create_stream(http, TENANT, f"kill-{unique}", partitions=4)
    output = f"esb.{TENANT}.kill-out-{unique}"
    pipeline_id = submit(
        http, stream["stream_id"], owners=2, sinks={"kafka_topic": f"kill-out-{unique}"}
    )
    publish(http, stream["stream_id"], make_events(4_000, seed=3))
    wait_for(lambda: caught_up(http, pipeline_id), "the first half to be processed")

    victim = ray.get_actor(owner_name(pipeline_id, 0), namespace="esb")
    ray.kill(victim)
    publish(http, stream["stream_id"], make_events(4_000, seed=4))

    def restarted() -> Any:
        status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
        return status["owner_restarts"] >= 1

    wait_for(restarted, "the supervisor to replace the killed owner")
    other = wait_for(lambda: _actor(ray, owner_name(pipeline_id, 1)), "owner 1")
    os.kill(ray.get(other.pid.remote(), timeout=60), signal.SIGKILL)
    publish(http, stream["stream_id"], make_events(2_000, seed=5))
    close_all_windows(stack, stream["kafka_topic"], 4)

    expected = oracle(stack, stream["kafka_topic"])
    wait_for(
        lambda: http.get(f"/api/v1/pipelines/{pipeline_id}").json()["owner_restarts"] >= 2,
        "the SIGKILLed owner to be replaced",
    )
    wait_for(lambda: caught_up(http, pipeline_id), "the pipeline to catch up after the kills")
    assert wait_for(lambda: results_of(http, pipeline_id) == expected or None, "results") is True
    http.delete(f"/api/v1/pipelines/{pipeline_id}")

    # The output topic, read_committed, has every closed window exactly once despite the kills.
    out = [orjson.loads(r.value()) for r in read_topic(stack, output, expected=len(expected))]
    windows = [(r["key"], r["window_start_ms"]) for r in out if r["key"] != "sentinel"]
    assert len(windows) == len(set(windows)) == len(expected)
    assert {
        (r["key"], r["window_start_ms"]): (r["orders"], r["revenue"])
        for r in out
        if r["key"] != "sentinel"
    } == expected


def _actor(ray: Any, name: str) -> Any:
    try:
        return ray.get_actor(name, namespace="esb")
    except ValueError:
        return None


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


def test_a_fenced_zombie_cannot_commit(stack: Settings, http: httpx.Client, unique: str) -> None:
    stream = create_stream(http, TENANT, f"zombie-{unique}", partitions=2)
    publish(http, stream["stream_id"], make_events(500, seed=6))
    record = owned_without_job(stream, f"zombie{unique}", spec_for(stream["stream_id"]), 2)
    redis = Redis.from_url(stack.redis)
    base = f"esb:pl:{record.pipeline_id}"

    first = PartitionOwner(stack, record, [0, 1])
    wait_for(lambda: first.step(timeout_s=1.0), "the first owner to consume")
    offsets = {p: PipelineStore(redis, record.pipeline_id).checkpoint(p).offset for p in (0, 1)}

    second = PartitionOwner(stack, record, [0, 1])  # takes over: the first is now a zombie
    publish(http, stream["stream_id"], make_events(500, seed=7))
    results_before = redis.hgetall(f"{base}:res")
    with pytest.raises(Fenced):
        wait_for(lambda: first.step(timeout_s=1.0), "the zombie to try a commit")
    assert {p: PipelineStore(redis, record.pipeline_id).checkpoint(p).offset for p in (0, 1)} == (
        offsets
    )
    assert redis.hgetall(f"{base}:res") == results_before

    def committed() -> int:
        store = PipelineStore(redis, record.pipeline_id)
        return sum(store.checkpoint(p).offset or 0 for p in (0, 1))

    wait_for(
        lambda: second.step(timeout_s=1.0) == 0 and committed() == 1_000,
        "the new owner to commit everything",
    )
    first.close()
    second.close()


def test_cli_submit_output_topic_and_live_results(
    stack: Settings, http: httpx.Client, unique: str, tmp_path: Path
) -> None:
    stream = create_stream(http, TENANT, f"cli-{unique}", partitions=2)
    spec = {**spec_for(f"cli-{unique}"), "sinks": {"kafka_topic": f"totals-{unique}"}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))  # source stream by name
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "REDIS_URL": stack.redis,
        "RAY_DASHBOARD_URL": stack.jobs_url,
    }

    def esb(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cluster.cli.main", "pipelines", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    pipeline_id = esb("submit", str(tmp_path / "spec.yaml"), "--tenant", TENANT).split()[2]
    wait_for(lambda: "state: RUNNING" in esb("status", pipeline_id), "the job to run")

    ws_url = f"{stack.api_url.replace('http', 'ws')}/ws/pipelines/{pipeline_id}"
    ws_url += f"?access_token={http.headers['authorization'].split()[1]}"  # as browsers send it
    with connect(ws_url, open_timeout=30) as live:
        publish(http, stream["stream_id"], make_events(1_000, seed=8))
        close_all_windows(stack, stream["kafka_topic"], 2)
        expected = oracle(stack, stream["kafka_topic"])
        pushed: dict[tuple[str, int], tuple[int, int]] = {}
        end = time.monotonic() + 180
        while not expected.items() <= pushed.items() and time.monotonic() < end:
            for r in orjson.loads(live.recv(timeout=180)):
                pushed[(r["key"], r["window_start_ms"])] = (r["orders"], r["revenue"])
        assert expected.items() <= pushed.items()

    out = read_topic(stack, f"esb.{TENANT}.totals-{unique}", expected=len(expected))
    latest = {}
    for record in out:
        r = orjson.loads(record.value())
        assert record.key() == f"{r['key']}|{r['window_start_ms']}|{r['window_end_ms']}".encode()
        latest[(r["key"], r["window_start_ms"])] = (r["orders"], r["revenue"])
    assert {w: v for w, v in latest.items() if w[0] != "sentinel"} == expected

    assert pipeline_id in esb("list", "--tenant", TENANT)
    esb("stop", pipeline_id)
    assert "state: STOPPED" in esb("status", pipeline_id)


def test_bad_pipeline_specs_are_422(http: httpx.Client, unique: str) -> None:
    stream = create_stream(http, TENANT, f"spec-{unique}")
    bad = spec_for(stream["stream_id"], aggregations=[{"name": "s", "op": "sum"}])
    answer = http.post("/api/v1/pipelines", json={"tenant_id": TENANT, "spec": bad})
    assert answer.status_code == 422 and "sum needs a field" in answer.text
    unknown = spec_for("no-such-stream")
    answer = http.post("/api/v1/pipelines", json={"tenant_id": TENANT, "spec": unknown})
    assert answer.status_code == 404
    assert http.get("/api/v1/pipelines/nope").status_code == 404
    assert http.get("/api/v1/pipelines/nope/results").status_code == 404


def test_payload_key_needs_events_partitioned_by_it(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"bykey-{unique}", partitions=3)
    events = make_events(600, seed=9)
    for n, e in enumerate(events):
        e["payload"]["customer"] = f"c{n % 7}"
        if n % 50 != 1:  # every 50th event keeps the default partition key: misrouted
            e["partition_key"] = e["payload"]["customer"]
    publish(http, stream["stream_id"], events)
    close_all_windows(stack, stream["kafka_topic"], 3)
    spec = spec_for(
        stream["stream_id"], key="payload.customer", fields={"amount": "int", "customer": "str"}
    )
    record = owned_without_job(stream, f"bykey{unique}", spec, 3)
    owner = PartitionOwner(stack, record, [0, 1, 2])
    redis = Redis.from_url(stack.redis)
    base = f"esb:pl:{record.pipeline_id}"
    wait_for(
        lambda: (
            owner.step(timeout_s=1.0) == 0
            and sum(int(redis.hget(f"{base}:progress:{p}", "records_in") or 0) for p in range(3))
            == 603
        ),
        "the owner to read everything",
    )
    owner.close()

    routed = [e for n, e in enumerate(events) if n % 50 != 1 and e["event_type"] != "user.seen"]
    expected: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for e in routed:
        window = (e["payload"]["customer"], e["event_time"] - e["event_time"] % WINDOW_MS)
        expected[window][0] += 1
        expected[window][1] += e["payload"]["amount"]
    stored = {}
    for raw in redis.hvals(f"{base}:res"):
        r = orjson.loads(raw)
        if r["key"] != "sentinel":
            stored[(r["key"], r["window_start_ms"])] = [r["orders"], r["revenue"]]
    assert stored == dict(expected)
    dead = [orjson.loads(d) for d in redis.lrange(f"{base}:dead", 0, -1)]
    misrouted = [e for n, e in enumerate(events) if n % 50 == 1 and e["event_type"] != "user.seen"]
    assert misrouted  # the generator must produce some
    assert len(dead) == len(misrouted) and all(d["reason"].startswith("misrouted") for d in dead)


def test_arrow_batched_and_json_events_window_together(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"arrow-{unique}", partitions=3)
    publish(http, stream["stream_id"], make_events(1_000, seed=10))
    rows = make_events(3_000, seed=11)
    frame = pl.DataFrame(
        [{**{k: v for k, v in e.items() if k != "payload"}, **e["payload"]} for e in rows]
    )

    async def publish_arrow() -> ArrowReceipt:
        try:
            return await EventPublishingService(stack).publish_arrow(
                frame, stream["stream_id"], TENANT, "t"
            )
        finally:
            await shared_bus(stack).close()

    receipt = asyncio.run(publish_arrow())
    assert receipt.events == 3_000 and len(receipt.records) <= 3
    close_all_windows(stack, stream["kafka_topic"], 3)

    placed: dict[str, set[int]] = defaultdict(set)  # key -> partitions, over both forms
    for record in read_topic(stack, stream["kafka_topic"], expected=1_000 + len(receipt.records)):
        if is_arrow_batch(record.headers()):
            keys = [e["aggregateid"] for e in to_cloudevents(record.value())]
        else:
            keys = [orjson.loads(record.value())["aggregateid"]]
        for key in keys:
            placed[key].add(record.partition())
    assert all(len(parts) == 1 for key, parts in placed.items() if key != "sentinel")

    expected = oracle(stack, stream["kafka_topic"])
    record = owned_without_job(stream, f"arrow{unique}", spec_for(stream["stream_id"]), 3)
    owner = PartitionOwner(stack, record, [0, 1, 2])
    redis = Redis.from_url(stack.redis)
    base = f"esb:pl:{record.pipeline_id}"

    def stored() -> dict[tuple[str, int], tuple[int, int]]:
        docs = [orjson.loads(raw) for raw in redis.hvals(f"{base}:res")]
        return {
            (r["key"], r["window_start_ms"]): (r["orders"], r["revenue"])
            for r in docs
            if r["key"] != "sentinel"
        }

    wait_for(lambda: owner.step(timeout_s=1.0) == 0 and stored() == expected, "the results")
    owner.close()

    batched, cursor = [], None
    while True:  # read back: an Arrow-batched record is one entry carrying all its events
        params = {"limit": 400, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"/api/v1/streams/{stream['stream_id']}/events", params=params).json()
        batched += [e for e in page["events"] if e.get("format") == "arrow-batch-v1"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert sum(len(e["events"]) for e in batched) == 3_000
