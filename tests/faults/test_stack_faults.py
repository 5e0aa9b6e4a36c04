"""Faults of a private 3-broker stack (RF3, min.insync.replicas=2), each checked against an
oracle: nothing acknowledged lost, nothing counted twice.

- Broker SIGKILLs, one at a time, 5 times, each restarted, while a client publishes over HTTP
  and a windowed pipeline runs: every event the API acknowledged is on the topic exactly once
  where its receipt says, a batch that met an error and was sent again with the same ids left
  each event once (read_committed, against the client's receipts), and the pipeline's results
  equal the brute-force oracle, in Redis and on its output topic (each window once). With the
  output topic, an owner was seen (2 runs in 4) to hang in send_offsets_to_transaction past its
  timeout after a broker kill (librdkafka #5456); the job's coordinator replaces an owner stuck
  in a step (actors.job.STUCK_S).
- Redis SIGKILLed while a pipeline commits, down until an owner has failed a commit, then
  restarted from its AOF: while it is down the API answers 503 with Retry-After (never 500);
  afterwards every event is on the topic once and the results equal the oracle.
- The API replica SIGKILLed mid-batch: an error or a whole answer, and a retry adds nothing.

The stack's ports are below the ephemeral range (processes.port_run): with free_ports() a
process binding port 0 could take Redis's port while it was down, and its restart failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cluster.kafka.topics import TopicAdmin
from cluster.stack import processes
from tests.faults.brokers import (
    BROKERS,
    ClusterStack,
    Publisher,
    check_the_topic,
    out_of_sync,
    running,
)
from tests.integration.conftest import create_stream, read_topic
from tests.integration.pipeline_helpers import (
    BASE_MS,
    SEED_SPAN_MS,
    TENANT,
    caught_up,
    close_all_windows,
    make_events,
    one_record_per_partition,
    oracle,
    results_of,
    submit,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

KILLS = 5
PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterStack]:
    yield from running(request, BROKERS)


def test_esb_up_runs_three_brokers_and_rf3_topics(cluster: ClusterStack) -> None:
    print("\n" + "\n".join(line for line in cluster.log if "Kafka" in line))  # esb up's lines
    status = cluster.esb("status").stdout
    print(status)
    names = [f"kafka-{n}" for n in range(1, BROKERS + 1)]
    for name in names:
        assert any(
            line.startswith(name) and "state=running" in line for line in status.splitlines()
        ), status
    assert cluster.settings.kafka_bootstrap.count(",") == BROKERS - 1
    assert sorted(cluster.records()) == names

    with cluster.client(TENANT) as http:
        stream = create_stream(http, TENANT, "rf3", partitions=PARTITIONS)  # the default: RF3
    assert stream["warnings"] == []
    admin = TopicAdmin(cluster.settings)
    assert admin.broker_count() == BROKERS
    assert admin.configs(stream["kafka_topic"])["min.insync.replicas"] == "2"
    assert not out_of_sync(cluster.settings)


def _event(batch: int, index: int) -> dict[str, Any]:
    """Orders for the pipeline (pipeline_helpers.spec_for: order.*, 1 s windows) in event-time
    order, ten batches a window."""
    return {
        "event_type": "order.placed",
        "source_capability": "shop",
        "aggregate_id": f"k{(batch * 7 + index) % 20}",
        "aggregate_type": "Order",
        "event_id": f"b{batch}-{index}",
        "event_time": BASE_MS + batch * 100 + index // 2,
        "payload": {"amount": (batch + index) % 97 + 1},
    }


def test_acknowledged_events_survive_five_broker_kills_exactly_once(
    cluster: ClusterStack,
) -> None:
    began = time.monotonic()
    with cluster.client(TENANT) as http:
        stream = create_stream(http, TENANT, "kills", partitions=PARTITIONS, replication_factor=3)
        # A pipeline runs through the kills too, into Redis and its output topic.
        pipeline_id = submit(
            http, stream["stream_id"], owners=2, sinks={"kafka_topic": "kills-out"}
        )
        who = {"stream_id": stream["stream_id"], "tenant_id": TENANT, "user_id": "chaos"}
        publisher = Publisher(http, who, _event).start()
        try:
            publisher.wait_acknowledged(3, "the first batches")
            rounds = []
            for kill in range(KILLS):
                victim = f"kafka-{kill % BROKERS + 1}"
                cluster.kill(victim)
                # Two of three replicas are in sync: writes go on while it is down.
                publisher.wait_acknowledged(3, f"acknowledgements while {victim} is down")
                restarted = time.monotonic()
                cluster.restart()
                wait_for(lambda: not out_of_sync(cluster.settings), "every replica in sync")
                rounds.append((victim, round(time.monotonic() - restarted, 1)))
            publisher.wait_acknowledged(2, "acknowledgements after the kills")
        finally:
            publisher.stop()
        print(
            f"\n[faults] {KILLS} kills in {time.monotonic() - began:.0f}s; restarts (node, s to "
            f"in sync): {rounds}; answers {dict(publisher.answers)}; {publisher.batches} "
            f"batches, {len(publisher.sent)} events, slowest answer {publisher.slowest_s:.1f}s"
        )
        check_the_topic(cluster, stream["kafka_topic"], publisher)
        _check_the_pipeline(cluster, http, stream["kafka_topic"], pipeline_id)


def _check_the_pipeline(
    cluster: ClusterStack, http: httpx.Client, topic: str, pipeline_id: str
) -> None:
    """Its results equal the brute-force oracle over the topic."""
    close_all_windows(cluster.settings, topic, PARTITIONS)
    expected = oracle(cluster.settings, topic)
    try:  # a stuck owner is replaced after STUCK_S (the module docstring)
        wait_for(lambda: caught_up(http, pipeline_id), "the pipeline to catch up", deadline_s=360)
    except AssertionError as exc:
        status = http.get(f"/api/v1/pipelines/{pipeline_id}").text
        raise AssertionError(f"{exc}: {status}") from None
    _wait_for_results(http, pipeline_id, expected)
    out = read_topic(cluster.settings, f"esb.{TENANT}.kills-out", expected=len(expected))
    windows = Counter(
        (doc["key"], doc["window_start_ms"])
        for doc in (orjson.loads(r.value()) for r in out)
        if doc["key"] != "sentinel"
    )
    assert set(windows) == set(expected) and max(windows.values()) == 1  # each window once
    restarts = http.get(f"/api/v1/pipelines/{pipeline_id}").json()["owner_restarts"]
    print(f"[faults] pipeline: {len(expected)} windows, results exact, owner restarts {restarts}")


def test_pipeline_results_survive_a_redis_kill(cluster: ClusterStack) -> None:
    """Redis SIGKILLed while a pipeline commits, then restarted from its AOF (appendfsync
    everysec). It stays down until an owner has failed a commit (records keep arriving on
    partition 0) and been replaced; what the last second lost, results and offsets
    together, is computed again. Every event published is on the topic once and the results
    equal the oracle. While Redis is down the API answers 503 with Retry-After, never 500."""
    before, after = make_events(20_000, seed=7), make_events(5_000, seed=8)
    answers: Counter[str] = Counter()
    with cluster.client(TENANT) as http:
        stream = create_stream(http, TENANT, "redis-kill", partitions=PARTITIONS)
        pipeline_id = submit(http, stream["stream_id"], owners=2)
        _publish(http, stream["stream_id"], before, answers)
        wait_for(lambda: _committed(http, pipeline_id) > 0, "the first commits")
        owners = _head_processes(cluster, b"ray::PartitionOwnerActor")
        assert owners, "no partition owner in the private stack's Ray session"
        cluster.kill("redis")
        killed = time.monotonic()
        # No batch is in flight: one sent now fails claiming its ids, before Kafka.
        probe = {"stream_id": stream["stream_id"], "tenant_id": TENANT, "events": after[:100]}
        down = wait_for(
            lambda: _unavailable(http, probe, pipeline_id, answers), "a 503 while Redis is down"
        )
        # Input for partition 0 (straight to Kafka, which is up): its owner must commit, fail
        # and be replaced while Redis is still down.
        wait_for(
            lambda: _an_owner_failed(cluster, stream["kafka_topic"], owners),
            "an owner to fail its commit while Redis is down",
        )
        cluster.restart()
        down_s = time.monotonic() - killed
        _publish(http, stream["stream_id"], after, answers)
        assert set(answers) <= {"200", "503"}, answers  # never a 500
        assert down.headers["retry-after"].isdigit(), down.headers
        assert down.headers["content-type"] == "application/problem+json"
        assert "Redis is unavailable" in down.json()["detail"], down.text

        records = read_topic(cluster.settings, stream["kafka_topic"], len(before) + len(after))
        on_topic = Counter(orjson.loads(r.value())["id"] for r in records)
        outage = [i for i in on_topic if i.startswith(f"{OUTAGE_KEY}-")]
        published = +Counter({i: n for i, n in on_topic.items() if i not in outage})
        assert published == Counter(e["event_id"] for e in before + after)  # each once
        close_all_windows(cluster.settings, stream["kafka_topic"], PARTITIONS)
        expected = oracle(cluster.settings, stream["kafka_topic"])
        wait_for(lambda: caught_up(http, pipeline_id), "the pipeline to catch up", deadline_s=360)
        _wait_for_results(http, pipeline_id, expected)
        restarts = http.get(f"/api/v1/pipelines/{pipeline_id}").json()["owner_restarts"]
        print(
            f"\n[faults] Redis kill: down {down_s:.1f}s (restart included), {len(outage)} records "
            f"meanwhile; answers {dict(answers)}; {len(expected)} windows exact, owner restarts "
            f"{restarts} (not counted while Redis is down); while down: {down.json()['detail']}"
        )


def _wait_for_results(
    http: httpx.Client, pipeline_id: str, expected: dict[tuple[str, int], tuple[int, int]]
) -> None:
    """Until the pipeline's results equal the oracle's; if they never do, which windows differ."""
    try:
        wait_for(lambda: results_of(http, pipeline_id) == expected, "results equal to the oracle")
    except AssertionError as exc:
        got = results_of(http, pipeline_id)
        wrong = {w: (got.get(w), expected.get(w)) for w in got.keys() | expected.keys()}
        differ = sorted((w, v) for w, v in wrong.items() if v[0] != v[1])
        raise AssertionError(f"{exc}: {len(differ)} windows (got, oracle): {differ[:10]}") from None


OUTAGE_KEY = "outage"


def _an_owner_failed(cluster: ClusterStack, topic: str, owners: list[int]) -> bool:
    """One more record on partition 0 (only there: a key's window is one partition's); True
    once an owner that ran before the kill is gone."""
    at = BASE_MS + 7 * SEED_SPAN_MS + 800_000  # after seed 7's events, before seed 8's
    one_record_per_partition(cluster.settings, topic, 1, at, "order.placed", OUTAGE_KEY, amount=1)
    return not set(owners) <= set(_head_processes(cluster, b"ray::PartitionOwnerActor"))


def _unavailable(
    http: httpx.Client, batch: dict[str, Any], pipeline_id: str, answers: Counter[str]
) -> httpx.Response | None:
    """A publish and a status read while Redis is down: the first 503 (none until the API
    has noticed), every status counted."""
    found = None
    for answer in (
        http.post("/api/v1/events/batch", json=batch),
        http.get(f"/api/v1/pipelines/{pipeline_id}"),
    ):
        answers[str(answer.status_code)] += 1
        if found is None and answer.status_code == 503:
            found = answer
    return found


def _publish(
    http: httpx.Client, stream_id: str, events: list[dict[str, Any]], answers: Counter[str]
) -> None:
    """In batches, each sent again (same ids: nothing twice) until the API answers it whole;
    right after a Redis restart the first answers may be 503. Every status is counted."""
    for first in range(0, len(events), 5_000):
        chunk = events[first : first + 5_000]
        body = {"stream_id": stream_id, "tenant_id": TENANT, "user_id": "chaos", "events": chunk}

        def whole(b: dict[str, Any] = body) -> bool:
            answer = http.post("/api/v1/events/batch", json=b)
            answers[str(answer.status_code)] += 1
            assert answer.status_code in (200, 429) or answer.status_code >= 500, answer.text
            return answer.status_code == 200

        wait_for(whole, "the batch to be published")


def _committed(http: httpx.Client, pipeline_id: str) -> int:
    status = http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    return sum(p["committed_offset"] or 0 for p in status.get("partitions_progress", []))


def test_a_killed_api_replica_answers_whole_or_not_at_all(cluster: ClusterStack) -> None:
    """The API replica SIGKILLed while a batch is in flight: the client gets an error or a
    full answer, never a silent half; sending the batch again with the same ids until it is
    answered whole leaves every event on the topic exactly once."""
    with cluster.client(TENANT) as http:
        stream = create_stream(http, TENANT, "replica-kill", partitions=PARTITIONS)
        events = make_events(10_000, seed=9)
        body = {"stream_id": stream["stream_id"], "tenant_id": TENANT, "events": events}
        [replica] = _head_processes(cluster, b"ray::ServeReplica:")
        answers: list[httpx.Response | Exception] = []

        def send() -> None:
            try:
                answers.append(http.post("/api/v1/events/batch", json=body))
            except httpx.HTTPError as exc:
                answers.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        os.kill(replica, signal.SIGKILL)
        sender.join(180)
        [first] = answers
        if isinstance(first, httpx.Response) and first.status_code == 200:
            receipts = first.json()["events"]  # a full answer: every event accounted for
            assert len(receipts) == len(events) and first.json()["failed"] == 0
        else:
            assert isinstance(first, Exception) or first.status_code >= 500, first.text
        wait_for(
            lambda: _head_processes(cluster, b"ray::ServeReplica:") not in ([], [replica]),
            "a new replica",
        )
        retries: Counter[str] = Counter()
        _publish(http, stream["stream_id"], events, retries)
        out = read_topic(cluster.settings, stream["kafka_topic"], expected=len(events))
        got = Counter(orjson.loads(r.value())["id"] for r in out)
        assert got == Counter(e["event_id"] for e in events)  # once each, the retry added nothing
        print(
            f"\n[faults] replica kill: first answer {first!r}; retries {dict(retries)}; "
            f"{len(events)} events once each"
        )


def _head_processes(cluster: ClusterStack, title: bytes) -> list[int]:
    """Pids of the private stack's Ray workers whose process title starts with `title` (the
    Serve replica, partition owners): processes of its Ray head's session."""
    found = []
    for pid in processes.session_members(cluster.services()["ray"].pid):
        with contextlib.suppress(OSError):  # gone meanwhile
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title):
                found.append(pid)
    return sorted(found)
