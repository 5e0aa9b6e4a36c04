"""POST /api/v1/events/query against a brute-force oracle, on the real stack: hypothesis draws
events (out-of-order and tied event times, re-published ids, several streams, users and
correlation ids) and queries (type globs, aggregate, correlation, user, time window, page size);
while the pages are read, another thread keeps publishing. Every event acknowledged before the
query must come exactly once across the pages, in (event time, stream, partition, offset) order;
the only extra events allowed are concurrent ones that match the filters."""

from __future__ import annotations

import fnmatch
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import create_stream

BASE_MS = 1_780_000_000_000
TYPES = ("order.placed", "order.paid", "user.created", "user.deleted")
AGGS = (("Order", "A1"), ("Order", "A2"), ("User", "B1"))
USERS = ("u1", "u2")
CORRS = (None, "c1", "c2")

event_st = st.fixed_dictionaries(
    {
        "stream": st.integers(0, 1),
        "type": st.sampled_from(TYPES),
        "agg": st.sampled_from(AGGS),
        "user": st.sampled_from(USERS),
        "corr": st.sampled_from(CORRS),
        "second": st.integers(0, 20),  # few distinct times: many ties
        "again": st.booleans(),  # publish the same id twice: one event
    }
)
query_st = st.fixed_dictionaries(
    {
        "streams": st.sampled_from(["one", "both", "all"]),
        "event_types": st.sampled_from([None, ["order.*"], ["user.created"], ["*.paid", "user.*"]]),
        "agg": st.sampled_from([None, *AGGS]),
        "corr": st.sampled_from(CORRS),
        "user": st.sampled_from([None, *USERS]),
        "window": st.sampled_from([None, (3, 15), (0, 1)]),
        "limit": st.sampled_from([1, 3, 7, 100]),
    }
)


def _body(e: dict[str, Any], event_id: str) -> dict[str, Any]:
    body = {
        "event_id": event_id,
        "event_type": e["type"],
        "source_capability": "tests",
        "aggregate_type": e["agg"][0],
        "aggregate_id": e["agg"][1],
        "event_time": BASE_MS + e["second"] * 1000,
        "payload": {"second": e["second"]},
    }
    if e["corr"] is not None:
        body["correlation_id"] = e["corr"]
    return body


def publish(http: httpx.Client, stream_id: str, user: str, bodies: list[dict[str, Any]]) -> Any:
    answer = http.post(
        "/api/v1/events/batch", json={"stream_id": stream_id, "user_id": user, "events": bodies}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


def matches(q: dict[str, Any], event: dict[str, Any]) -> bool:
    if q["event_types"] and not any(
        fnmatch.fnmatchcase(event["type"], g) for g in q["event_types"]
    ):
        return False
    if q["agg"] and (event["aggregatetype"], event["aggregateid"]) != q["agg"]:
        return False
    if q["corr"] and event.get("correlationid") != q["corr"]:
        return False
    if q["user"] and event["userid"] != q["user"]:
        return False
    if q["window"]:
        second = (_ms(event["time"]) - BASE_MS) // 1000
        return bool(q["window"][0] <= second < q["window"][1])
    return True


def _ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)


class Noise:
    """Publishes up to LIMIT events that match many queries into the streams while pages are
    read (bounded, so paging behind a cursor always ends)."""

    LIMIT = 40

    def __init__(self, http: httpx.Client, stream_ids: list[str]) -> None:
        self.http, self.stream_ids, self.stop = http, stream_ids, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < self.LIMIT:
            e = {"type": "order.placed", "agg": AGGS[0], "corr": "c1", "second": n % 20}
            publish(self.http, self.stream_ids[n % 2], "u1", [_body(e, f"noise-{uuid.uuid4()}")])
            n += 1

    def __enter__(self) -> Noise:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    events=st.lists(event_st, min_size=1, max_size=30),
    queries=st.lists(query_st, min_size=1, max_size=3),
)
def test_queries_agree_with_an_oracle_under_concurrent_publishing(
    http: httpx.Client, events: list[dict[str, Any]], queries: list[dict[str, Any]]
) -> None:
    tag = uuid.uuid4().hex[:8]
    streams = [
        create_stream(http, "acme", f"es-q-{tag}-{i}", partitions=3 - i)["stream_id"]
        for i in range(2)
    ]
    groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for n, e in enumerate(events):
        body = _body(e, f"{tag}-{n}")
        groups[(e["stream"], e["user"])].extend([body, body] if e["again"] else [body])
    stored: list[tuple[tuple[Any, ...], dict[str, Any]]] = []  # (order key, event) acked
    for (s, user), bodies in groups.items():
        for body, receipt in zip(bodies, publish(http, streams[s], user, bodies), strict=True):
            if receipt["status"] == "published":
                event = {
                    "id": body["event_id"],
                    "type": body["event_type"],
                    "aggregatetype": body["aggregate_type"],
                    "aggregateid": body["aggregate_id"],
                    "correlationid": body.get("correlation_id"),
                    "userid": user,
                    "time_ms": body["event_time"],
                    "time": "",
                }
                key = (body["event_time"], streams[s], receipt["partition"], receipt["offset"], 0)
                stored.append((key, event))
    with Noise(http, streams):
        for q in queries:
            chosen = {"one": streams[:1], "both": streams, "all": None}[q["streams"]]
            # every stream of the tenant (other tests' too) only with big pages: bounded runtime
            body: dict[str, Any] = {"limit": q["limit"] if chosen else 100}
            if chosen is not None:
                body["stream_ids"] = chosen
            for name, value in (
                ("event_types", q["event_types"]),
                ("correlation_id", q["corr"]),
                ("user_id", q["user"]),
            ):
                if value is not None:
                    body[name] = value
            if q["agg"]:
                body["aggregate_type"], body["aggregate_id"] = q["agg"]
            if q["window"]:
                body["from_time"] = BASE_MS + q["window"][0] * 1000
                body["to_time"] = BASE_MS + q["window"][1] * 1000
            got = read_all(http, body)
            mine = [
                (k, e) for k, e in got if e["id"].startswith(tag) or e["id"].startswith("noise-")
            ]
            keys = [k for k, _ in mine]
            assert len(set(keys)) == len(keys), "an event came twice"
            assert keys == sorted(keys), "not in (event time, stream, partition, offset) order"
            scope = set(chosen or streams)
            expected = {
                k for k, e in stored if k[1] in scope and matches(q, {**e, "time": _iso(k[0])})
            }
            assert expected <= set(keys), "an acknowledged matching event is missing"
            for k, e in mine:
                if k not in expected:
                    assert e["id"].startswith("noise-") and matches(q, e), e
            for k, e in got:
                assert k[1] in scope or chosen is None
                assert matches(q, e), e


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def read_all(http: httpx.Client, body: dict[str, Any]) -> list[tuple[tuple[Any, ...], Any]]:
    out: list[tuple[tuple[Any, ...], Any]] = []
    cursor = None
    for _ in range(10_000):
        page = http.post("/api/v1/events/query", json={**body, "cursor": cursor})
        assert page.status_code == 200, page.text
        doc = page.json()
        assert len(doc["events"]) <= body["limit"]
        for e in doc["events"]:
            ev = e["event"]
            key = (_ms(ev["time"]), e["stream_id"], e["partition"], e["offset"], e["index"])
            out.append((key, ev))
        cursor = doc["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the pages never ended")
