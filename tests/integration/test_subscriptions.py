"""Subscriptions on the real broker, Redis and Ray, delivering to a real HTTP receiver on
127.0.0.1: retries with backoff, dead letters, delivery modes under dispatcher kills, exactly-once
forwarding, glob filters, and the WebSockets."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from cluster import naming
from cluster.errors import InvalidInput
from cluster.models.subscriptions import SubscriptionConfig
from cluster.security.webhooks import verify
from cluster.services.bus import Bus
from cluster.settings import Settings
from event_streaming_bus import SubscriptionService
from tests.integration.conftest import create_stream, read_topic, token

pytestmark = pytest.mark.integration
TENANT = "subs"


@dataclass
class Hit:
    at: float
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """A webhook receiver: `respond(webhook_id, nth attempt)` picks the status; `on_request`
    runs before answering (the kill tests SIGKILL the dispatcher there)."""

    def __init__(self, respond: Callable[[str, int], int] = lambda _id, _n: 200) -> None:
        self.respond = respond
        self.on_request: Callable[[str, int], None] | None = None
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                wid = self.headers.get("webhook-id", "")
                with receiver.lock:
                    n = 1 + sum(h.webhook_id == wid for h in receiver.hits)
                    status = receiver.respond(wid, n)
                    receiver.hits.append(
                        Hit(time.monotonic(), wid, dict(self.headers.items()), body, status)
                    )
                if receiver.on_request is not None:
                    receiver.on_request(wid, n)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def by_id(self) -> dict[str, list[Hit]]:
        with self.lock:
            found: dict[str, list[Hit]] = defaultdict(list)
            for h in self.hits:
                found[h.webhook_id].append(h)
            return found

    def delivered(self) -> Counter[str]:
        with self.lock:
            return Counter(h.webhook_id for h in self.hits if 200 <= h.status < 300)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = 120) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def events(n: int, prefix: str, types: list[str] | None = None, keys: int = 6) -> list[dict]:
    return [
        {
            "event_type": (types or ["user.created"])[i % len(types or ["x"])],
            "source_capability": "tests",
            "aggregate_id": f"{prefix}-k{i % keys}",
            "aggregate_type": "User",
            "event_id": f"{prefix}-{i}",
            "payload": {"seq": i},
        }
        for i in range(n)
    ]


def publish(http: httpx.Client, stream_id: str, batch: list[dict]) -> list[dict]:
    who = {"stream_id": stream_id, "tenant_id": TENANT, "user_id": "t"}
    answer = http.post("/api/v1/events/batch", json={**who, "events": batch})
    assert answer.status_code == 200, answer.text[:300]
    receipts: list[dict] = answer.json()["events"]
    return receipts


def subscribe(http: httpx.Client, stream: dict, **config: Any) -> dict[str, Any]:
    body = {
        "tenant_id": TENANT,
        "subscription_name": "test",
        "stream_id": stream["stream_id"],
        "consumer_group_id": f"g-{uuid.uuid4().hex[:8]}",
        "start_position": "earliest",
        **config,
    }
    answer = http.post("/api/v1/subscriptions", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def status(http: httpx.Client, sub: dict) -> dict[str, Any]:
    found: dict[str, Any] = http.get(
        f"/api/v1/subscriptions/{sub['subscription_id']}/status"
    ).json()
    return found


def cancel(http: httpx.Client, sub: dict) -> None:
    answer = http.delete(f"/api/v1/subscriptions/{sub['subscription_id']}")
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled"


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


def _pid(ray: Any, sub: dict) -> int | None:
    try:
        actor = ray.get_actor(naming.dispatcher_name(sub["subscription_id"], 0), namespace="esb")
        return int(ray.get(actor.pid.remote(), timeout=10))
    except Exception:
        return None


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


def test_globs_select_exactly_the_matching_types_and_live_deliveries(
    stack: Settings, http: httpx.Client, receiver: Receiver, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"globs-{unique}", partitions=2)
    sub = subscribe(
        http,
        stream,
        webhook_url=receiver.url,
        event_type_patterns=["user.*", "order.created", "invoice.?aid"],
        start_position="latest",
    )
    ws = f"{stack.api_url.replace('http', 'ws')}/ws/subscriptions/{sub['subscription_id']}"
    types = ["user.created", "user.profile.updated", "users.created", "user", "order.created",
             "order.created.v2", "order.updated", "invoice.paid", "invoice.unpaid",
             "Invoice.paid"]  # fmt: skip
    matching = {"user.created", "user.profile.updated", "order.created", "invoice.paid"}
    batch = events(len(types) * 3, f"g{unique}", types=types)
    with connect(
        f"{ws}?tenant_id={TENANT}", open_timeout=30, additional_headers=token(http)
    ) as live:
        first = orjson.loads(live.recv(timeout=30))
        assert first["type"] == "status" and first["state"] == "active"
        publish(http, stream["stream_id"], batch)
        delivered_live: set[str] = set()
        end = time.monotonic() + 120
        while len(delivered_live) < 12 and time.monotonic() < end:
            message = orjson.loads(live.recv(timeout=120))
            if message["type"] == "deliveries":
                delivered_live |= {i["webhook_id"] for i in message["items"]}
    expected = {e["event_id"] for e in batch if e["event_type"] in matching}
    assert delivered_live == expected
    wait_for(lambda: status(http, sub)["lag"] == 0, "the subscription to catch up")
    assert set(receiver.delivered()) == expected
    assert {orjson.loads(h.body)["type"] for h in receiver.hits} == matching
    assert status(http, sub)["counts"]["filtered_out"] == len(batch) - len(expected)
    cancel(http, sub)


def test_websocket_live_tail_in_order_per_key(
    stack: Settings, http: httpx.Client, unique: str
) -> None:
    name = f"tail-{unique}"
    stream = create_stream(http, TENANT, name, partitions=3)
    before = events(10, f"before{unique}", types=["order.placed"])
    publish(http, stream["stream_id"], before)  # published before: not in a `latest` tail
    ws = f"{stack.api_url.replace('http', 'ws')}/ws/events/{name}"
    sent = events(300, f"t{unique}", types=["order.placed", "user.seen"], keys=7)
    with connect(
        f"{ws}?tenant_id={TENANT}&event_types=order.*",
        open_timeout=30,
        additional_headers=token(http),
    ) as live:
        for start in range(0, 300, 50):
            publish(http, stream["stream_id"], sent[start : start + 50])
        got = [orjson.loads(live.recv(timeout=60)) for _ in range(150)]
    assert {g["event"]["type"] for g in got} == {"order.placed"}
    assert {g["event"]["id"] for g in got} == {
        e["event_id"] for e in sent if e["event_type"] == "order.placed"
    }
    per_key: dict[str, list[int]] = defaultdict(list)
    for g in got:
        per_key[g["key"]].append(g["event"]["data"]["seq"])
    assert all(seqs == sorted(seqs) for seqs in per_key.values())
    with (
        pytest.raises(InvalidStatus),
        connect(f"{ws}?tenant_id=nobody", open_timeout=30, additional_headers=token(http)),
    ):
        pass  # an unknown stream is refused before the handshake completes


def test_410_disables_then_resume_pause_cancel_and_the_ssrf_guard(
    stack: Settings, http: httpx.Client, receiver: Receiver, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"gone-{unique}")
    receiver.respond = lambda _wid, _n: 410
    sub = subscribe(http, stream, webhook_url=receiver.url)
    publish(http, stream["stream_id"], events(1, f"gone{unique}"))
    found = wait_for(
        lambda: (s := status(http, sub))["state"] == "disabled" and s, "410 to disable"
    )
    assert "410" in found["last_error"] and found["counts"]["delivered"] == 0
    receiver.respond = lambda _wid, _n: 200
    base = f"/api/v1/subscriptions/{sub['subscription_id']}"
    assert http.post(f"{base}/resume").json()["state"] == "active"
    wait_for(lambda: status(http, sub)["counts"]["delivered"] == 1, "delivery after resume")
    assert http.post(f"{base}/pause").json()["state"] == "paused"
    publish(http, stream["stream_id"], events(3, f"paused{unique}"))
    assert http.post(f"{base}/resume").json()["state"] == "active"
    wait_for(lambda: status(http, sub)["counts"]["delivered"] == 4, "delivery after pause")
    listed = http.get("/api/v1/subscriptions", params={"tenant_id": TENANT}).json()
    assert sub["subscription_id"] in {s["subscription_id"] for s in listed["subscriptions"]}
    duplicate = http.post(
        "/api/v1/subscriptions",
        json={
            "tenant_id": TENANT,
            "subscription_name": "again",
            "stream_id": stream["stream_id"],
            "consumer_group_id": sub["config"]["consumer_group_id"],
            "webhook_url": receiver.url,
        },
    )
    assert duplicate.status_code == 409
    cancel(http, sub)
    assert status(http, sub)["state"] == "cancelled"
    assert http.post(f"{base}/resume").status_code == 409
    assert http.get("/api/v1/subscriptions/nope/status").status_code == 404

    strict = SubscriptionService(
        bus=Bus(stack.model_copy(update={"allow_private_webhooks": False}))
    )
    config = SubscriptionConfig(
        subscription_name="s",
        stream_id=stream["stream_id"],
        consumer_group_id=f"ssrf-{unique}",
        webhook_url=receiver.url,
    )
    with pytest.raises(InvalidInput, match="loopback"):
        asyncio.run(strict.create_subscription(config, TENANT))


def test_pull_subscription_async_iterator(stack: Settings, http: httpx.Client, unique: str) -> None:
    stream = create_stream(http, TENANT, f"pull-{unique}", partitions=2)
    sent = events(40, f"p{unique}", types=["a.one", "b.two"])
    publish(http, stream["stream_id"], sent)
    config = SubscriptionConfig(
        subscription_name="pull",
        stream_id=f"pull-{unique}",
        consumer_group_id=f"pull-{unique}",
        event_type_patterns=["a.*"],
        start_position="earliest",
    )

    async def consume() -> list[dict]:
        service = SubscriptionService(bus=Bus(stack))
        record, _ = await service.create_subscription(config, TENANT)
        got: list[dict] = []
        async for event in service.events(record.subscription_id):
            got.append(event)
            if len(got) == 20:
                break
        return got

    got = asyncio.run(asyncio.wait_for(consume(), 120))
    assert {e["id"] for e in got} == {e["event_id"] for e in sent if e["event_type"] == "a.one"}
