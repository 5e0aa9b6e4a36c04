"""The local stack behind `esb up` and the test fixtures: Kafka broker, Redis and Ray head, each
started only when its external counterpart (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, RAY_ADDRESS) is
unset, then the HTTP API on Ray Serve.

What we started is recorded in <state_dir>/stack.json (pid, start time, address, log), so `up` is
idempotent, `down` stops exactly those processes and nothing else, and `status` can tell.

    settings = up(Settings())          # prints progress, returns Settings with the addresses
    status(settings)["kafka"]["state"]  # 'running'
    down(settings)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.errors import StackError
from cluster.settings import Settings
from cluster.stack import kafka_broker, kafka_cluster, processes, ray_head, ray_worker, redis_server
from cluster.stack.processes import ProcessRecord, Progress, say
from cluster.stack.secrets import with_local_secrets
from serve.deploy import start_api

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class _Service:
    """How the stack drives one service; the modules hold the details."""

    name: str  # key in stack.json and in status()
    label: str
    external: Callable[[Settings], str | None]
    local_address: Callable[[Settings], str]
    address: Callable[[ProcessRecord], str]  # the value that goes into Settings
    preflight: Callable[[Settings], None]
    launch: Callable[[Settings, Progress], ProcessRecord]
    is_ready: Callable[[ProcessRecord], bool]
    ready_timeout_s: float
    hint: str  # what to try when it does not come up
    stop: Callable[[ProcessRecord], None]

    def wait(self, record: ProcessRecord, progress: Progress, started_at: float) -> float:
        """Until it answers (or its process exits); returns seconds since `started_at`."""
        return processes.wait_ready(
            self.label,
            lambda: self.is_ready(record),
            record=record,
            timeout_s=self.ready_timeout_s,
            progress=progress,
            hint=self.hint,
            started_at=started_at,
        )


def _record_address(record: ProcessRecord) -> str:
    return record.address


def _kafka(node: kafka_cluster.Node) -> _Service:
    """One Kafka node: the single broker (`kafka`) or node n of a cluster (`kafka-n`)."""
    return _Service(
        node.name,
        node.label,
        lambda s: s.kafka_bootstrap_servers,
        lambda _s: node.address,
        _record_address,
        lambda s: kafka_broker.preflight(s, node),
        lambda s, progress: kafka_broker.launch(s, progress, node),
        kafka_broker.is_record_ready,
        kafka_broker.READY_TIMEOUT_S,
        kafka_broker.HINT,
        kafka_broker.stop,
    )


REDIS = _Service(
    "redis",
    redis_server.LABEL,
    lambda s: s.redis_url,
    lambda s: f"redis://127.0.0.1:{s.redis_port}/0",
    redis_server.url,
    redis_server.preflight,
    redis_server.launch,
    lambda r: redis_server.is_ready(redis_server.url(r)),
    redis_server.READY_TIMEOUT_S,
    redis_server.HINT,
    redis_server.stop,
)
RAY = _Service(
    "ray",
    ray_head.LABEL,
    lambda s: s.ray_address,
    lambda s: f"127.0.0.1:{s.ray_port}",
    _record_address,
    ray_head.preflight,
    ray_head.launch,
    ray_head.is_ready,
    ray_head.READY_TIMEOUT_S,
    ray_head.HINT,
    ray_head.stop,
)


def _start_order(settings: Settings, state: dict[str, ProcessRecord]) -> tuple[_Service, ...]:
    """Redis and Ray spawn at once; Kafka's launch blocks on the jar fetch and storage format, so
    it goes last and the others boot meanwhile. The Kafka nodes are those of the cluster
    stack.json records, else KAFKA_BROKERS of them."""
    size = kafka_cluster.recorded_size(state) or settings.kafka_brokers
    return (REDIS, RAY, *(_kafka(node) for node in kafka_cluster.nodes(settings, size)))


def _stop_order(settings: Settings, state: dict[str, ProcessRecord]) -> tuple[_Service, ...]:
    """Down stops the consumers (Ray) before their stores."""
    redis, ray, *kafka = _start_order(settings, state)
    return (ray, *kafka, redis)


def _state_dir(settings: Settings) -> Path:
    return settings.esb_state_dir.resolve()


def _read_state(state_dir: Path) -> dict[str, ProcessRecord]:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}
    return {name: ProcessRecord.from_dict(rec) for name, rec in data.get("services", {}).items()}


def _write_state(state_dir: Path, state: dict[str, ProcessRecord]) -> None:
    """Atomic replace, so a crash mid-write never loses track of running processes."""
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    services = {name: rec.to_dict() for name, rec in state.items()}
    tmp.write_text(json.dumps({"version": 1, "services": services}, indent=2) + "\n")
    os.replace(tmp, path)


def _forget_dead(state_dir: Path, state: dict[str, ProcessRecord]) -> None:
    """Drop records whose process is gone, killing leftovers of a half-dead one (a Ray head whose
    `ray start` died while its raylet lives on) so they do not hold the ports."""
    by_name = {svc.name: svc for svc in (REDIS, RAY)}
    dead = [name for name, rec in state.items() if not processes.is_alive(rec)]
    if "ray" in dead:  # worker nodes of a head that is gone go with it
        dead += [name for name, _ in ray_worker.workers(state) if name not in dead]
    for name in dead:
        if name in by_name:
            by_name[name].stop(state[name])
        elif kafka_cluster.is_broker_service(name):
            kafka_broker.stop(state[name])
        elif ray_worker.is_worker_name(name):
            ray_worker.stop(state[name])
        del state[name]
    if dead:
        _write_state(state_dir, state)


def _resolve(settings: Settings, state: dict[str, ProcessRecord]) -> Settings:
    """settings with the address (and ports) of every service we run filled in."""
    update: dict[str, Any] = {}
    brokers = [rec for name, rec in sorted(state.items()) if kafka_cluster.is_broker_service(name)]
    if settings.kafka_bootstrap_servers is None and brokers:
        update.update(_resolve_kafka(settings, brokers[0]))
    if REDIS.external(settings) is None and "redis" in state:
        record = state["redis"]
        update["redis_url"] = redis_server.url(record)
        update["redis_port"] = int(record.address.rpartition(":")[2])
    if RAY.external(settings) is None and "ray" in state:
        record = state["ray"]
        update["ray_address"] = record.address
        update["ray_port"] = int(record.address.rpartition(":")[2])
        update["ray_dashboard_port"] = int(record.extra["dashboard_port"])
        update.update(ray_head.resolved_auth(record))
    return settings.model_copy(update=update)


def _resolve_kafka(settings: Settings, record: ProcessRecord) -> dict[str, Any]:
    """The local broker's listener the clients use (TLS when they speak SSL) and its CA; for a
    node of a cluster, every node's listener (its record knows them)."""
    seeds = str(record.extra.get("bootstrap", record.address))
    update: dict[str, Any] = {"kafka_port": int(seeds.split(",")[0].rpartition(":")[2])}
    if "brokers" in record.extra:
        update["kafka_brokers"] = int(record.extra["brokers"])
    ssl_address = record.extra.get("ssl_address")
    ssl_seeds = str(record.extra.get("ssl_bootstrap", ssl_address))
    if ssl_address is not None:
        update["kafka_ssl_port"] = int(ssl_seeds.split(",")[0].rpartition(":")[2])
        update["kafka_ssl_ca_location"] = Path(record.extra["ssl_ca"])  # what verifies this one
    if settings.kafka_security_protocol.upper() == "PLAINTEXT":
        update["kafka_bootstrap_servers"] = seeds
    elif ssl_address is not None:
        update["kafka_bootstrap_servers"] = ssl_seeds
    else:
        raise StackError(
            f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}, but the running local "
            f"Kafka broker (pid {record.pid}) has no TLS listener. Fix: `esb down`, then `esb up` "
            "with KAFKA_SSL_PORT set."
        )
    return update


def _check_kafka_size(settings: Settings, state: dict[str, ProcessRecord]) -> None:
    """A running local Kafka of another size than KAFKA_BROKERS is not silently reused."""
    recorded = kafka_cluster.recorded_size(state)
    if settings.kafka_bootstrap_servers is None and recorded not in (None, settings.kafka_brokers):
        raise StackError(
            f"The local Kafka here runs {recorded} broker(s), not the {settings.kafka_brokers} "
            f"asked for. Fix: `esb up --kafka-brokers {recorded}` (or KAFKA_BROKERS={recorded}) "
            "to use it, or `esb down` first."
        )


def up(settings: Settings, *, progress: Progress = print, with_api: bool = True) -> Settings:
    """Start what is missing, wait until all of it answers, and return the resolved Settings.

    If anything fails, what this call started is stopped again and StackError says why.
    settings.ray_workers worker nodes join the head last, after the API: the API and its
    singletons stay on the head, the nodes add capacity for pipelines and subscriptions.
    """
    ray_worker.check_head(settings)
    state_dir = _state_dir(settings)
    state_dir.mkdir(parents=True, exist_ok=True)
    with processes.file_lock(state_dir / "stack.lock"):
        state = _read_state(state_dir)
        _forget_dead(state_dir, state)
        _check_kafka_size(settings, state)
        to_start: list[_Service] = []
        to_wait: list[tuple[_Service, ProcessRecord, float]] = []
        for svc in _start_order(settings, state):
            external = svc.external(settings)
            record = state.get(svc.name)
            if external is not None:
                say(progress, f"using external {svc.label} at {external}")
            elif record is not None:
                say(progress, f"{svc.label} already running on {record.address} (pid {record.pid})")
                svc.wait(record, lambda _line: None, time.monotonic())
            else:
                svc.preflight(settings)
                to_start.append(svc)
        started: list[tuple[_Service, ProcessRecord]] = []
        try:
            for svc in to_start:
                began = time.monotonic()
                record = svc.launch(settings, progress)
                state[svc.name] = record
                _write_state(state_dir, state)
                started.append((svc, record))
                to_wait.append((svc, record, began))
            for svc, record, began in to_wait:
                svc.wait(record, progress, began)
            for svc, record, _ in to_wait:  # one that died while another was awaited
                if not processes.is_alive(record):
                    raise processes.failure(
                        f"{svc.label} exited right after starting.",
                        record.log_path,
                        "Fix: read the log above; on a loaded machine, retry `esb up`.",
                    )
        except BaseException:
            for svc, record in reversed(started):
                say(progress, f"stopping {svc.label} (pid {record.pid}) after the failure ...")
                svc.stop(record)
                state.pop(svc.name, None)
            _write_state(state_dir, state)
            raise
    resolved = with_local_secrets(_resolve(settings, state))
    if with_api:
        start_api(resolved, progress=progress)
    with processes.file_lock(state_dir / "stack.lock"):
        state = _read_state(state_dir)
        ray_worker.ensure(resolved, state, progress, lambda: _write_state(state_dir, state))
    return resolved


def down(settings: Settings, *, progress: Progress = print) -> None:
    """Stop exactly the processes recorded in the state file (never `ray stop`, never by name)."""
    state_dir = _state_dir(settings)
    if not (state_dir / STATE_FILE).exists():
        say(progress, f"nothing to stop: no {STATE_FILE} in {state_dir}")
        return
    with processes.file_lock(state_dir / "stack.lock"):
        state = _read_state(state_dir)
        for name, node in ray_worker.workers(state):  # before the head they joined
            say(progress, f"stopping {name} (pid {node.pid}) ...")
            ray_worker.stop(node)
            del state[name]
            _write_state(state_dir, state)
        for svc in _stop_order(settings, state):
            record = state.get(svc.name)
            if record is None:
                continue
            say(progress, f"stopping {svc.label} (pid {record.pid}) ...")
            began = time.monotonic()
            if kafka_cluster.is_broker_service(svc.name):  # all nodes at once: see begin_stop
                kafka_broker.begin_stop(state)
            svc.stop(record)
            del state[svc.name]
            _write_state(state_dir, state)
            say(progress, f"{svc.label} stopped in {time.monotonic() - began:.1f}s")


def status(settings: Settings) -> dict[str, Any]:
    """Each service's state (running / stopped / external), address, and pid and log when this
    stack runs it; plus the API."""
    state = _read_state(_state_dir(settings))
    report: dict[str, Any] = {}
    for svc in _start_order(settings, state):
        record = state.get(svc.name)
        external = svc.external(settings)
        if record is not None and processes.is_alive(record):
            report[svc.name] = {
                "state": "running",
                "address": svc.address(record),
                "pid": record.pid,
                "log": record.log_path,
            }
            if "ssl_address" in record.extra:
                report[svc.name]["tls_address"] = record.extra["ssl_address"]
            if "auth_mode" in record.extra:  # the Ray head's door: token (and its file)
                report[svc.name]["auth"] = record.extra["auth_mode"]
            if "token_path" in record.extra:
                report[svc.name]["token"] = record.extra["token_path"]
        elif external is not None:
            report[svc.name] = {"state": "external", "address": external}
        else:
            address = svc.local_address(settings)
            report[svc.name] = {"state": "stopped", "address": address}
    for name, record in ray_worker.workers(state):
        report[name] = ray_worker.status_entry(record)
    api_up = processes.tcp_open(settings.api_host, settings.api_port)
    # No pid of its own: the API is a Ray Serve application inside the Ray head's processes.
    report["api"] = {
        "state": "running" if api_up else "stopped",
        "address": settings.api_url,
        "served_by": "Ray Serve (ray_head)",
    }
    return report


def running_services(settings: Settings) -> list[str]:
    """Names of the services this state dir's stack runs now (what `up` would reuse)."""
    state = _read_state(_state_dir(settings))
    return [
        svc.name
        for svc in _start_order(settings, state)
        if svc.name in state and processes.is_alive(state[svc.name])
    ]
