"""Helpers for the join and pattern pipeline tests (test_pipeline_correlation.py,
test_pattern_owner_recovery.py): events, far-future ticks, oracles over what is on the topic."""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any

import httpx
import orjson

from cluster.settings import Settings
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from pipelines.pattern_spec import PatternSpec
from tests.integration.conftest import read_topic
from tests.integration.pipeline_helpers import all_results, one_record_per_partition
from tests.unit.pattern_oracle import Ev, brute_force, oracle_results

BASE_MS = 1_850_000_000_000
PHASE_MS = 10_000_000  # each phase's events, and its sentinel, after the previous phase's


def event(kind: str, key: str, t: int, **payload: Any) -> dict[str, Any]:
    return {
        "event_type": kind,
        "source_capability": "shop",
        "aggregate_id": key,
        "aggregate_type": "Order",
        "event_id": uuid.uuid4().hex,
        "event_time": t,
        "payload": payload,
    }


def sentinels(settings: Settings, topic: str, partitions: int, t: int) -> None:
    """One record per partition at `t`, of a type nothing selects: event time moves past all."""
    one_record_per_partition(settings, topic, partitions, t, "clock.tick", "tick")


def on_topic(settings: Settings, topic: str, expected: int) -> list[dict[str, Any]]:
    """The distinct CloudEvents on a topic (the first of each id), as any client reads them."""
    seen: dict[str, dict[str, Any]] = {}
    for record in read_topic(settings, topic, expected=expected):
        events = (
            to_cloudevents(record.value())
            if is_arrow_batch(record.headers())
            else [orjson.loads(record.value())]
        )
        for e in events:
            seen.setdefault(e["id"], e)
    return [e for e in seen.values() if e["type"] != "clock.tick"]


def ms(e: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() * 1000)


UNPAID = {
    "name": "unpaid",
    "within_ms": 5_000,
    "skip": "past_last_event",
    "steps": [
        {"name": "created", "event_types": ["order.created"]},
        {"name": "paid", "event_types": ["order.paid"], "absent": True},
    ],
}
BRUTE_FORCE = brute_force("risk")


def fraud_spec(stream_id: str) -> dict[str, Any]:
    """The pattern pipeline the pattern tests run: UNPAID and BRUTE_FORCE over orders and logins."""
    return {
        "pipeline_name": "fraud",
        "source_stream": stream_id,
        "event_types": ["order.*", "login.*"],
        "fields": {"amount": "int", "risk": "float"},
        "allowed_lateness_ms": 10_000,
        "patterns": [UNPAID, BRUTE_FORCE],
    }


BIG_ORDER = {
    "name": "big-order",
    "within_ms": 10_000,
    "contiguity": "strict",
    "steps": [
        {
            "name": "created",
            "event_types": ["order.created"],
            "where": [{"field": "amount", "op": ">=", "value": 50}],
        },
        {"name": "paid", "event_types": ["order.paid"]},
    ],
}


def traffic(seed: int, start_ms: int, n: int = 800) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    found = []
    for i in range(n):
        key, t = f"u{rng.randrange(25)}", start_ms + i * 150 + rng.randrange(-3_000, 3_000)
        kind = rng.choice(
            ["order.created", "order.paid", "login.failed", "login.failed", "page.view"]
        )
        found.append(event(kind, key, t, amount=rng.randrange(100), risk=rng.random()))
    return found


def pattern_oracle(
    events: list[dict[str, Any]], patterns: list[dict[str, Any]]
) -> set[tuple[Any, ...]]:
    by_key: dict[str, list[Ev]] = {}
    for e in events:
        ev = Ev(e["aggregateid"], ms(e), e["id"], e["type"], None, tuple(e["data"].items()))
        by_key.setdefault(ev.key, []).append(ev)  # type: ignore[arg-type]
    found = set()
    for evs in by_key.values():
        seq = sorted(evs, key=lambda e: (e.t, e.id))
        for p in patterns:
            found |= {r for _, r in oracle_results(PatternSpec.model_validate(p), seq)}
    return found


def matches(http: httpx.Client, pipeline_id: str) -> set[tuple[Any, ...]]:
    return {
        (
            r["pattern"],
            r["key"],
            r["kind"],
            r["start_ms"],
            r["end_ms"],
            tuple((n, tuple(ids)) for n, ids in r["events"].items()),
        )
        for r in all_results(http, pipeline_id)
    }
