"""Joins and patterns on the real broker, Redis and Ray: results equal brute-force oracles over
the events read back from Kafka; a join across two streams (co-partitioning checked at submit);
a pattern pipeline whose patterns change while the job runs, with no restart.

Every phase ends with one far-future record per partition of a type no pipeline selects: that
it closes every interval and absence deadline is the "filtered-out records advance event time"
fix, tested end to end.
"""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from cluster.settings import Settings
from tests.integration.conftest import create_stream
from tests.integration.correlation_helpers import (
    BASE_MS,
    BIG_ORDER,
    BRUTE_FORCE,
    PHASE_MS,
    UNPAID,
    event,
    fraud_spec,
    matches,
    ms,
    on_topic,
    pattern_oracle,
    sentinels,
    traffic,
)
from tests.integration.pipeline_helpers import (
    TENANT,
    all_results,
    caught_up,
    make_events,
    oracle,
    publish,
    results_of,
    spec_for,
    submit_spec,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

# -- a join across two streams ------------------------------------------------------------------

BEFORE_MS, AFTER_MS = 1_000, 5_000


def join_oracle(
    orders: list[dict[str, Any]], payments: list[dict[str, Any]]
) -> set[tuple[Any, ...]]:
    """Every (order, payment) of one key with the payment in [t - before, t + after], plus each
    order with none (how: left; every interval closed by the sentinels, nothing late)."""
    pairs: set[tuple[Any, ...]] = set()
    for o in orders:
        if o["type"] != "order.created":
            continue
        mine = [
            p
            for p in payments
            if p["type"].startswith("payment.")
            and p["aggregateid"] == o["aggregateid"]
            and ms(o) - BEFORE_MS <= ms(p) <= ms(o) + AFTER_MS
        ]
        pairs |= {(o["id"], p["id"], o["data"]["amount"], p["data"]["amount"]) for p in mine}
        if not mine:
            pairs.add((o["id"], None, o["data"]["amount"], None))
    return pairs


def test_join_across_two_streams_equals_the_oracle(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    orders = create_stream(http, TENANT, f"orders-{unique}", partitions=3)
    payments = create_stream(http, TENANT, f"payments-{unique}", partitions=3)
    other = create_stream(http, TENANT, f"wide-{unique}", partitions=4)
    spec = {
        "pipeline_name": "orders-payments",
        "source_stream": orders["stream_id"],
        "fields": {"amount": "int"},
        "allowed_lateness_ms": 60_000,  # more than the disorder below: nothing is late
        "join": {
            "left": {"event_types": ["order.created"]},
            "right": {"event_types": ["payment.*"], "source_stream": payments["stream_id"]},
            "before_ms": BEFORE_MS,
            "after_ms": AFTER_MS,
            "how": "left",
        },
    }
    wide = {**spec, "join": {**spec["join"], "right": {**spec["join"]["right"]}}}
    wide["join"]["right"]["source_stream"] = other["stream_id"]
    refused = http.post("/api/v1/pipelines", json={"tenant_id": TENANT, "spec": wide})
    assert refused.status_code == 422, refused.text
    assert "is not co-partitioned" in refused.json()["detail"]

    rng = random.Random(7)
    left, right = [], []
    for i in range(600):
        key, t = f"o{rng.randrange(60)}", BASE_MS + i * 200 + rng.randrange(-20_000, 20_000)
        left.append(event("order.created" if i % 7 else "order.viewed", key, t, amount=i))
        if rng.random() < 0.7:  # most orders get paid, some twice, some too late
            for _ in range(1 + (rng.random() < 0.2)):
                delay = rng.choice([-1_500, -500, 0, 2_000, 4_900, 7_000])
                right.append(event("payment.captured", key, t + delay, amount=i * 10))
    pipeline_id = submit_spec(http, spec)
    publish(http, orders["stream_id"], left)
    publish(http, payments["stream_id"], right)
    end = BASE_MS + PHASE_MS
    sentinels(stack, orders["kafka_topic"], 3, end)
    sentinels(stack, payments["kafka_topic"], 3, end)

    expected = join_oracle(
        on_topic(stack, orders["kafka_topic"], len(left)),
        on_topic(stack, payments["kafka_topic"], len(right)),
    )

    def pairs() -> set[tuple[Any, ...]]:
        return {
            (r["left_event_id"], r["right_event_id"], r["left.amount"], r["right.amount"])
            for r in all_results(http, pipeline_id)
        }

    wait_for(lambda: caught_up(http, pipeline_id), "the join to catch up")
    assert wait_for(lambda: pairs() == expected or None, "join results") is True
    assert any(r[1] is None for r in expected) and any(r[1] is not None for r in expected)
    assert http.delete(f"/api/v1/pipelines/{pipeline_id}").status_code == 200


# -- patterns, changed while the job runs -------------------------------------------------------


def test_patterns_equal_the_oracle_and_change_without_a_restart(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"activity-{unique}", partitions=2)
    spec = fraud_spec(stream["stream_id"])
    pipeline_id = submit_spec(http, spec)
    first = traffic(1, BASE_MS)
    publish(http, stream["stream_id"], first)
    sentinels(stack, stream["kafka_topic"], 2, BASE_MS + PHASE_MS)
    phase1 = on_topic(stack, stream["kafka_topic"], len(first))
    selected = [e for e in phase1 if e["type"].split(".")[0] in ("order", "login")]
    expected = pattern_oracle(selected, [UNPAID, BRUTE_FORCE])
    assert {r[0] for r in expected} == {"unpaid", "brute-force"}
    assert wait_for(lambda: matches(http, pipeline_id) == expected or None, "matches") is True

    # The change: keep brute-force, drop unpaid, add big-order; owners move at a commit.
    current = http.get(f"/api/v1/pipelines/{pipeline_id}/patterns").json()
    assert current["version"] == 1 and [p["name"] for p in current["patterns"]] == [
        "unpaid",
        "brute-force",
    ]
    bad = http.put(f"/api/v1/pipelines/{pipeline_id}/patterns", json={"patterns": [{"name": "x"}]})
    assert bad.status_code == 422, bad.text
    changed = http.put(
        f"/api/v1/pipelines/{pipeline_id}/patterns", json={"patterns": [BRUTE_FORCE, BIG_ORDER]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2

    def on_version_2() -> bool:
        status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
        versions = status["owners_patterns_version"]
        return len(versions) == 2 and set(versions.values()) == {2}

    wait_for(on_version_2, "every owner to run version 2")
    second = traffic(2, BASE_MS + 2 * PHASE_MS)
    publish(http, stream["stream_id"], second)
    sentinels(stack, stream["kafka_topic"], 2, BASE_MS + 3 * PHASE_MS)
    everything = on_topic(stack, stream["kafka_topic"], len(first) + len(second))
    later = [e for e in everything if e["id"] not in {x["id"] for x in phase1}]
    later = [e for e in later if e["type"].split(".")[0] in ("order", "login")]
    expected_after = pattern_oracle(later, [BRUTE_FORCE, BIG_ORDER])
    want = expected | expected_after
    assert {r[0] for r in expected_after} == {"brute-force", "big-order"}
    assert wait_for(lambda: matches(http, pipeline_id) == want or None, "matches after") is True

    status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    assert status["state"] == "RUNNING" and status["owner_restarts"] == 0
    assert http.delete(f"/api/v1/pipelines/{pipeline_id}").status_code == 200


# -- a quiet partition closes its windows -------------------------------------------------------


def test_a_quiet_partition_closes_its_windows_after_the_idle_timeout(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    """No far-future record this time: the last windows close because the partitions go quiet
    for idle_timeout_ms and event time then follows the clock."""
    stream = create_stream(http, TENANT, f"quiet-{unique}", partitions=2)
    spec = spec_for(stream["stream_id"], allowed_lateness_ms=0, idle_timeout_ms=1_000)
    pipeline_id = submit_spec(http, spec)
    in_order = [
        {**e, "event_time": BASE_MS + i * 20}  # in order: nothing is late at lateness 0
        for i, e in enumerate(make_events(500, seed=9))
    ]
    publish(http, stream["stream_id"], in_order)
    expected = oracle(stack, stream["kafka_topic"])
    assert wait_for(lambda: results_of(http, pipeline_id) == expected or None, "results") is True
    status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    assert status["progress"]["idle_advances"] >= 1
    assert http.delete(f"/api/v1/pipelines/{pipeline_id}").status_code == 200


def test_a_join_on_correlation_id_equals_the_oracle(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    """Orders and payments are different aggregates; the correlation id ties them together
    (published with it as partition_key, so each correlation lives in one partition)."""
    stream = create_stream(http, TENANT, f"checkout-{unique}", partitions=2)
    spec = {
        "pipeline_name": "checkout",
        "source_stream": stream["stream_id"],
        "key": "correlation_id",
        "fields": {"amount": "int"},
        "allowed_lateness_ms": 60_000,
        "join": {
            "left": {"event_types": ["order.created"]},
            "right": {"event_types": ["payment.*"]},
            "after_ms": AFTER_MS,
        },
    }
    pipeline_id = submit_spec(http, spec)
    rng = random.Random(11)
    events = []
    for i in range(400):
        flow, t = f"c{rng.randrange(80)}", BASE_MS + i * 100
        kind = "order.created" if i % 2 else "payment.captured"
        e = event(kind, f"{kind.split('.')[0]}-{i}", t + rng.randrange(-3_000, 3_000), amount=i)
        events.append({**e, "correlation_id": flow, "partition_key": flow})
    publish(http, stream["stream_id"], events)
    sentinels(stack, stream["kafka_topic"], 2, BASE_MS + PHASE_MS)

    found = on_topic(stack, stream["kafka_topic"], len(events))
    expected = {
        (o["id"], p["id"])
        for o in found
        for p in found
        if o["type"] == "order.created"
        and p["type"].startswith("payment.")
        and o["correlationid"] == p["correlationid"]
        and ms(o) <= ms(p) <= ms(o) + AFTER_MS
    }

    def pairs() -> set[tuple[str, str]]:
        return {(r["left_event_id"], r["right_event_id"]) for r in all_results(http, pipeline_id)}

    assert expected and wait_for(lambda: pairs() == expected or None, "pairs") is True
    status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    assert status["progress"]["misrouted"] == 0
    assert http.delete(f"/api/v1/pipelines/{pipeline_id}").status_code == 200
