"""A private stack for the fault tests (3 brokers, or 1), and what they do to it.

The stack is `esb up --kafka-brokers N` in a subprocess, as a user runs it: Redis, a Ray head,
the API and N KRaft nodes, on free ports below the ephemeral range with their own state dir
(the session's stack is not killed: other tests share it). A killed service comes back the way
`esb up` brings back whatever died: `local_stack.up` here in-process, without touching the API.

`Publisher` is the client under test: it publishes batches with event ids over HTTP until
stopped, sends a batch again (same ids) until every event in it is acknowledged, and keeps
every receipt, the oracle the topic is checked against.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka.admin import AdminClient

from cluster.errors import StackError
from cluster.security import auth_config_from, mint_token
from cluster.settings import Settings
from cluster.stack import local_stack, processes, ray_head
from cluster.stack.processes import ProcessRecord
from tests.integration.conftest import read_topic
from tests.integration.waiting import wait_for

BROKERS = 3
OUTSIDE = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "RAY_ADDRESS")


@dataclass
class ClusterStack:
    """A running private stack: `config` as given to `esb up`, `settings` resolved by it."""

    config: Settings
    settings: Settings
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    def esb(self, *args: str, timeout_s: float = 420) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cluster.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def services(self) -> dict[str, ProcessRecord]:
        """What stack.json records, by service name (redis, ray, kafka-1 ..)."""
        state = json.loads((self.config.esb_state_dir / local_stack.STATE_FILE).read_text())
        return {name: ProcessRecord.from_dict(rec) for name, rec in state["services"].items()}

    def records(self) -> dict[str, ProcessRecord]:
        """The Kafka nodes' records, by service name (kafka-1 ..)."""
        return {n: r for n, r in self.services().items() if n.startswith("kafka-")}

    def kill(self, name: str) -> ProcessRecord:
        """SIGKILL the service (a Kafka node, Redis) and whatever runs in its session (Redis's
        AOF-rewrite child holds the port too): no controlled shutdown, no flush, as when a
        machine dies."""
        record = self.services()[name]
        for pid in [record.pid, *processes.session_members(record.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert processes.wait_for(
            lambda: not processes.is_alive(record) and not processes.session_members(record.pid),
            timeout_s=60,
        )
        return record

    def restart(self) -> None:
        """What `esb up` does for a service that died: forget it, start it, wait until it
        answers (a Kafka node: a live broker again; Redis: from its AOF); the API and the
        rest are left as they are."""
        try:
            local_stack.up(self.config, with_api=False, progress=self.log.append)
        except StackError as exc:  # a port still taken: say by whom
            step, nodes = self.config.kafka_port_step, self.config.kafka_brokers
            kafka = range(self.config.kafka_port, self.config.kafka_port + step * nodes, step)
            ports = (self.config.redis_port, *kafka)
            raise AssertionError(f"{exc}\n{port_holders(ports)}") from exc

    def token(self, tenant: str) -> str:
        config = auth_config_from(self.settings)
        return mint_token(config, tenant, "admin", f"admin@{tenant}", ttl_s=3600)

    def client(self, tenant: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.token(tenant)}"}
        return httpx.Client(base_url=self.settings.api_url, timeout=120, headers=auth)


def running(request: pytest.FixtureRequest, brokers: int = BROKERS) -> Iterator[ClusterStack]:
    """A module fixture's body: the stack up, then down; its logs kept when a test failed."""
    state_dir = Path(tempfile.mkdtemp(prefix="esb-faults-", dir="/tmp"))
    failed_before = request.session.testsfailed
    stack = start(state_dir, brokers)
    try:
        yield stack
    finally:
        down = stack.esb("down")
        print("\n" + "\n".join(line for line in down.stdout.splitlines() if "stopped in" in line))
        if request.session.testsfailed > failed_before or down.returncode != 0:
            print(f"\n[esb] fault stack logs kept in {state_dir}\n{down.stdout}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(ray_head.temp_dir(stack.config), ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


def start(state_dir: Path, brokers: int = BROKERS) -> ClusterStack:
    """`esb up --kafka-brokers N` on free ports in state_dir; StackError-free or it raises.
    The ports are below the ephemeral range (processes.port_run): Redis and the Kafka nodes
    are killed and restarted on theirs."""
    first = processes.port_run(2 * brokers + 5)
    kafka = first  # node n: KAFKA_PORT + 2(n-1), its controller on the next port
    redis, ray, dashboard, api, metrics = range(first + 2 * brokers, first + 2 * brokers + 5)
    ports = {
        "kafka_port": kafka,
        "kafka_controller_port": kafka + 1,
        "kafka_port_step": 2,
        "redis_port": redis,
        "ray_port": ray,
        "ray_dashboard_port": dashboard,
        "api_port": api,
        "metrics_port": metrics,
    }
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE}
    env["ESB_STATE_DIR"] = str(state_dir)
    env.update({name.upper(): str(value) for name, value in ports.items()})
    config = Settings(
        kafka_bootstrap_servers=None,
        redis_url=None,
        ray_address=None,
        esb_state_dir=state_dir,
        kafka_brokers=brokers,
        **ports,  # type: ignore[arg-type]
    )
    stack = ClusterStack(config, config, env)
    up = stack.esb("up", "--kafka-brokers", str(brokers))
    stack.log += up.stdout.splitlines()
    if up.returncode != 0:
        stack.esb("down")
        raise AssertionError(f"esb up --kafka-brokers {brokers} failed:\n{up.stdout}\n{up.stderr}")
    # Everything runs: this only reads the state and the secrets, and resolves the addresses.
    stack.settings = local_stack.up(config, with_api=False, progress=stack.log.append)
    return stack


def port_holders(ports: tuple[int, ...]) -> str:
    """What `ss` shows bound to any of these local ports, with the processes (for a failure)."""
    ss = shutil.which("ss")
    if ss is None:
        return "(no `ss` here to show who holds the ports)"
    found = [
        subprocess.run(
            [ss, "-tanpe", f"( sport = :{port} )"], capture_output=True, text=True
        ).stdout
        for port in ports
    ]
    return "\n".join(found)


def out_of_sync(settings: Settings) -> list[str]:
    """What keeps the cluster from being whole: a broker missing, or a partition (of any topic,
    the internal ones too) without a leader or with a replica out of its ISR."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
    try:
        meta = admin.list_topics(timeout=10)
    except Exception as exc:  # a metadata request that lands on the dying node
        return [repr(exc)]
    problems = (
        [] if len(meta.brokers) == settings.kafka_brokers else [f"brokers {sorted(meta.brokers)}"]
    )
    for name, topic in meta.topics.items():
        for p in topic.partitions.values():
            if p.leader < 0 or sorted(p.isrs) != sorted(p.replicas):
                problems.append(f"{name}[{p.id}] leader {p.leader} isr {p.isrs} of {p.replicas}")
    return problems


def batch_of(number: int, size: int, make: Callable[[int, int], dict[str, Any]]) -> list[dict]:
    return [make(number, i) for i in range(size)]


class Publisher:
    """Publishes batches over HTTP from a thread until `stop()`; a batch goes again with the
    same ids after any error (connection, timeout, 5xx, a 207 with failed events) until each
    of its events is acknowledged (`published` or `duplicate`). A 4xx ends it: that is a bug."""

    def __init__(
        self,
        client: httpx.Client,
        who: dict[str, str],
        make: Callable[[int, int], dict[str, Any]],
        size: int = 200,
    ) -> None:
        self.client, self.who, self.make, self.size = client, who, make, size
        self.sent: set[str] = set()  # every id a request carried
        # id -> (status, partition, offset) of each acknowledgement: `published` once, then
        # `duplicate`s pointing at the original (no place while the original is in flight)
        self.receipts: dict[str, list[tuple[str, int | None, int | None]]] = defaultdict(list)
        self.answers: Counter[str] = Counter()  # HTTP status or error class per request
        self.batches = 0  # fully acknowledged
        self.slowest_s = 0.0
        self.fatal: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the batch in flight (until it is acknowledged), then return."""
        self._stop.set()
        self._thread.join(timeout=600)
        assert not self._thread.is_alive(), "the publisher did not finish its last batch"

    def wait_acknowledged(self, batches: int, what: str) -> None:
        """Until `batches` more batches are acknowledged (or the publisher gave up)."""
        goal = self.batches + batches
        wait_for(lambda: self.batches >= goal or self.fatal, what)
        assert self.fatal is None, self.fatal

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set() and self.fatal is None:
            self._until_acknowledged(batch_of(number, self.size, self.make))
            number += 1

    def _until_acknowledged(self, events: list[dict[str, Any]]) -> None:
        self.sent.update(e["event_id"] for e in events)
        while self.fatal is None:
            began = time.monotonic()
            try:
                body = {**self.who, "events": events}
                answer = self.client.post("/api/v1/events/batch", json=body)
            except httpx.HTTPError as exc:
                self.answers[type(exc).__name__] += 1
                self._stop.wait(0.5)  # the client's back-off before it retries
                continue
            self.slowest_s = max(self.slowest_s, time.monotonic() - began)
            self.answers[str(answer.status_code)] += 1
            if answer.status_code in (200, 207):
                for r in answer.json()["events"]:
                    if r["status"] != "failed":
                        where = (r["status"], r["partition"], r["offset"])
                        self.receipts[r["event_id"]].append(where)
                if answer.status_code == 200:
                    self.batches += 1
                    return
            elif 400 <= answer.status_code < 500:
                self.fatal = f"{answer.status_code}: {answer.text[:500]}"
                return
            self._stop.wait(0.5)


def _published(receipts: list[tuple[str, int | None, int | None]]) -> int:
    return sum(status == "published" for status, _, _ in receipts)


def check_the_topic(cluster: ClusterStack, topic: str, publisher: Publisher) -> None:
    """Each event once on the topic, where its receipts say (read_committed)."""
    records = read_topic(cluster.settings, topic, expected=len(publisher.sent))
    at = {(r.partition(), r.offset()): orjson.loads(r.value())["id"] for r in records}
    on_topic = Counter(at.values())
    assert set(publisher.receipts) == publisher.sent  # the client saw every event acknowledged
    lost, unknown = publisher.sent - set(on_topic), set(on_topic) - publisher.sent
    assert (len(lost), sorted(lost)[:10], sorted(unknown)[:10]) == (0, [], [])
    twice_on_topic = sorted(i for i, n in on_topic.items() if n > 1)
    assert (len(twice_on_topic), twice_on_topic[:10]) == (0, [])  # retries added nothing
    statuses = Counter(s for receipts in publisher.receipts.values() for s, _, _ in receipts)
    twice = [i for i, rs in publisher.receipts.items() if _published(rs) > 1]
    assert twice == []  # an id is published once, later answers are duplicates
    misplaced = [
        (i, (p, o), at.get((p, o)))
        for i, receipts in publisher.receipts.items()
        for _, p, o in receipts
        if p is not None and o is not None and at.get((p, o)) != i
    ]
    assert misplaced == []  # each receipt says where the event is
    print(f"[faults] receipts {dict(statuses)}")
