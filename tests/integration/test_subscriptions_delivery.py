"""Subscriptions on the real broker, Redis and Ray, delivering to a real HTTP receiver on
127.0.0.1: retries with backoff, dead letters and their replay, delivery modes under dispatcher
kills, exactly-once forwarding."""

from __future__ import annotations

import itertools
import os
import signal
from collections import Counter, defaultdict
from typing import Any

import httpx
import orjson
import pytest

from cluster import naming
from cluster.security.webhooks import verify
from cluster.settings import Settings
from tests.integration.conftest import create_stream, read_topic
from tests.integration.subscription_helpers import (
    TENANT,
    Receiver,
    _pid,
    cancel,
    events,
    publish,
    status,
    subscribe,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def test_retries_until_success_with_one_webhook_id_backoff_in_bounds_no_stall(
    http: httpx.Client, receiver: Receiver, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"retry-{unique}", partitions=2)
    receipts = publish(http, stream["stream_id"], events(12, f"r{unique}", keys=12))
    slow_partition = receipts[0]["partition"]
    flaky = {r["event_id"] for r in receipts if r["partition"] == slow_partition}
    steady = {r["event_id"] for r in receipts} - flaky
    assert flaky and steady, "both partitions need events"
    receiver.respond = lambda wid, n: 503 if wid in flaky and n <= 3 else 200
    policy = {"initial_backoff_ms": 300, "max_backoff_ms": 1200, "max_attempts": 6}
    sub = subscribe(http, stream, webhook_url=receiver.url, retry_policy=policy)
    assert (
        sub["secret"].startswith("whsec_")
        and "secret" not in http.get(f"/api/v1/subscriptions/{sub['subscription_id']}").json()
    )

    wait_for(lambda: set(receiver.delivered()) == flaky | steady, "every event delivered")
    hits = receiver.by_id()
    bound_s = [min(1.2, 0.3 * 2 ** (n - 1)) for n in range(1, 4)]
    for wid in flaky:
        attempts = hits[wid]
        assert [h.status for h in attempts] == [503, 503, 503, 200]
        for h in attempts:
            assert h.headers["webhook-id"] == wid == orjson.loads(h.body)["id"]
            assert verify(sub["secret"], h.headers, h.body)
        gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
        assert all(0 <= gap <= bound + 1.0 for gap, bound in zip(gaps, bound_s, strict=True)), gaps
    assert all(len(hits[wid]) == 1 for wid in steady)
    # The failing partition never held the other one up: all of its events arrived before the
    # failing partition's first event got through.
    first_success = min(hits[wid][-1].at for wid in flaky)
    assert max(hits[wid][0].at for wid in steady) < first_success
    # Within the failing partition, order held: each event only after the previous succeeded.
    order = sorted(flaky, key=lambda wid: hits[wid][0].at)
    for before, after in itertools.pairwise(order):
        assert hits[before][-1].at <= hits[after][0].at

    found = wait_for(
        lambda: (s := status(http, sub))["lag"] == 0 and s["counts"]["delivered"] == 12 and s,
        "the offsets to be committed",
    )
    assert found["counts"]["retried"] == 3 * len(flaky) and found["counts"]["dead_lettered"] == 0
    assert found["state"] == "active" and found["dispatchers_running"] == 1
    assert "HTTP 503" in found["last_error"]
    cancel(http, sub)


def test_always_500_dead_letters_each_event_once_and_replay_delivers(
    stack: Settings, http: httpx.Client, receiver: Receiver, unique: str
) -> None:
    receiver.respond = lambda _wid, _n: 500
    stream = create_stream(http, TENANT, f"dlq-{unique}", partitions=3)
    published = {r["event_id"] for r in publish(http, stream["stream_id"], events(30, unique))}
    policy = {"initial_backoff_ms": 20, "max_backoff_ms": 100, "max_attempts": 3}
    sub = subscribe(http, stream, webhook_url=receiver.url, retry_policy=policy)
    assert sub["dead_letter_topic"] == f"esb.{TENANT}.sub.{sub['subscription_id']}.dlq"

    found = wait_for(
        lambda: (s := status(http, sub))["counts"]["dead_lettered"] >= 30 and s["lag"] == 0 and s,
        "every event dead-lettered",
    )
    dead = [
        orjson.loads(r.value())
        for r in read_topic(stack, sub["dead_letter_topic"], 30, deadline_s=120)
    ]
    assert Counter(d["event"]["id"] for d in dead) == Counter(published)  # each exactly once
    assert found["counts"]["delivered"] + found["counts"]["dead_lettered"] == len(published)
    for d in dead:
        assert d["attempts"] == 3 and d["http_status"] == 500 and "HTTP 500" in d["error"]
        assert d["first_attempt_at"] <= d["last_attempt_at"] <= d["dead_lettered_at"]
        assert d["webhook_id"] == d["event"]["id"]
    assert {wid: len(h) for wid, h in receiver.by_id().items()} == dict.fromkeys(published, 3)

    page = http.get(f"/api/v1/subscriptions/{sub['subscription_id']}/dlq", params={"limit": 20})
    assert len(page.json()["dead_letters"]) == 20 and page.json()["next_offset"] is not None
    receiver.respond = lambda _wid, _n: 200
    replay = http.post(f"/api/v1/subscriptions/{sub['subscription_id']}/dlq/replay")
    assert replay.json()["replayed"] == 30
    wait_for(lambda: set(receiver.delivered()) == published, "replayed events delivered")
    again = http.post(f"/api/v1/subscriptions/{sub['subscription_id']}/dlq/replay")
    assert again.json()["replayed"] == 0  # nothing is replayed twice
    cancel(http, sub)


@pytest.mark.parametrize("mode", ["at_least_once", "at_most_once"])
def test_dispatcher_killed_between_delivering_and_committing(
    http: httpx.Client, ray_session: Any, receiver: Receiver, unique: str, mode: str
) -> None:
    import ray

    stream = create_stream(http, TENANT, f"kill-{mode[:8]}-{unique}", partitions=1)
    sub = subscribe(http, stream, webhook_url=receiver.url, delivery_mode=mode, batch_size=5)
    actor = ray.get_actor(naming.dispatcher_name(sub["subscription_id"], 0), namespace="esb")
    pid = ray.get(actor.pid.remote(), timeout=60)
    killed: list[str] = []

    def kill_once(wid: str, n: int) -> None:
        if len(receiver.hits) == 3 and not killed:  # mid-batch: delivered, not yet committed
            killed.append(wid)
            os.kill(pid, signal.SIGKILL)

    receiver.on_request = kill_once
    ids = [e["event_id"] for e in events(20, f"{mode}{unique}")]
    publish(http, stream["stream_id"], events(20, f"{mode}{unique}"))
    wait_for(lambda: killed, "the kill")
    new_pid = wait_for(
        lambda: (p := _pid(ray, sub)) not in (None, pid) and p, "Ray to restart the dispatcher"
    )
    assert new_pid != pid
    wait_for(lambda: set(ids[5:]) <= set(receiver.by_id()), "the events after the killed batch")
    wait_for(lambda: status(http, sub)["lag"] == 0, "the offsets to be committed")
    seen = Counter(h.webhook_id for h in receiver.hits)
    for h in receiver.hits:  # the idempotency key is the event's id on every (re)delivery
        assert h.headers["webhook-id"] == orjson.loads(h.body)["id"]
    if mode == "at_least_once":
        assert set(seen) == set(ids)  # nothing lost
        assert seen[killed[0]] >= 2  # the killed delivery came again, with the same webhook-id
    else:
        assert max(seen.values()) == 1  # nothing twice
        assert seen[killed[0]] == 1
    assert status(http, sub)["dispatcher_restarts"] >= 1
    cancel(http, sub)


def test_exactly_once_forwarding_while_the_dispatcher_is_killed_repeatedly(
    stack: Settings, http: httpx.Client, ray_session: Any, unique: str
) -> None:
    import ray

    source = create_stream(http, TENANT, f"eos-in-{unique}", partitions=3)
    target = create_stream(http, TENANT, f"eos-out-{unique}", partitions=3)
    sub = subscribe(
        http,
        source,
        forward_to=target["stream_id"],
        delivery_mode="exactly_once",
        batch_size=50,
    )
    sent: list[dict] = []
    for wave in range(6):
        batch = events(400, f"w{wave}-{unique}", keys=10)
        publish(http, source["stream_id"], batch)
        sent += batch
        if wave in (1, 2, 3, 4):
            pid = wait_for(lambda: _pid(ray, sub), "a running dispatcher")
            if wave % 2:
                ray.kill(
                    ray.get_actor(
                        naming.dispatcher_name(sub["subscription_id"], 0), namespace="esb"
                    ),
                    no_restart=False,
                )
            else:
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda p=pid: _pid(ray, sub) not in (None, p), "the restart", 120)
    wait_for(lambda: status(http, sub)["lag"] == 0, "the forwarding to catch up", 240)

    out = read_topic(stack, target["kafka_topic"], len(sent), deadline_s=120)
    got = [orjson.loads(r.value()) for r in out]
    assert Counter(e["id"] for e in got) == Counter(e["event_id"] for e in sent)  # no dups, gaps
    per_key: dict[str, list[int]] = defaultdict(list)
    placed: dict[str, set[int]] = defaultdict(set)
    for record, e in zip(out, got, strict=True):
        per_key[e["aggregateid"]].append(e["data"]["seq"])
        placed[e["aggregateid"]].add(record.partition())
    assert all(len(parts) == 1 for parts in placed.values())  # a key stays in one partition
    assert all(seqs == sorted(seqs) for seqs in per_key.values())  # in publish order
    found = status(http, sub)
    # Counters are written after each commit: a kill between the two loses that cycle's count
    # (the records themselves are exact, above), but nothing is ever counted twice.
    assert 0 < found["counts"]["forwarded"] <= len(sent) and found["dispatcher_restarts"] >= 4
    cancel(http, sub)
