"""Extra Ray worker nodes on this machine (`esb up --ray-workers N`, the tests' extra_ray_node):
`ray start --address <head> --block` from this venv, each in its own session, so stopping one is
a signal to that session by its pid and never `ray stop` (which would stop every Ray node on the
machine).

A second raylet on the same machine needs its own ports where Ray would use fixed defaults (the
dashboard agent's 52365) and is given free ones for the rest too; its object store is capped,
and its log lives under the state dir. Nodes are told apart by a node name of ours
(`esb-ray-worker-<index>-<random>`), which the head's state API (the dashboard, GET
/api/v0/nodes) lists with the node id Ray gave it and whether it is ALIVE or DEAD.

    record = launch(settings, settings.ray_address, index=1)
    processes.wait_for(lambda: is_ready(record), timeout_s=READY_TIMEOUT_S)
    node_id(record)  # Ray's hex node id
    stop(record)
"""

from __future__ import annotations

import functools
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from cluster.errors import StackError
from cluster.settings import Settings
from cluster.stack import processes, ray_head
from cluster.stack.processes import ProcessRecord, Progress, say

LABEL = "Ray worker node"
NAME_PREFIX = "ray-worker-"  # stack.json and `esb status`: ray-worker-1, ray-worker-2, ...
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 20.0
OBJECT_STORE_BYTES = 256 * 1024 * 1024  # each node maps its own store: keep the sum modest
HINT = (
    "Fix: read the log above (Ray's own logs are under the head's temp dir, esb-ray-* in the "
    "system temp dir, session_latest/logs); on a loaded machine, retry `esb up`."
)
EXTERNAL_HEAD = (
    "--ray-workers (RAY_WORKERS) starts worker nodes that join the local stack's Ray head, but "
    "RAY_ADDRESS={address} names an external cluster. Fix: unset RAY_ADDRESS to let `esb up` "
    "start the head, or add nodes to that cluster with Ray's own `ray start --address "
    "{address}` on the machines that should join."
)


def service_name(index: int) -> str:
    return f"{NAME_PREFIX}{index}"


def is_worker_name(name: str) -> bool:
    return name.startswith(NAME_PREFIX) and name[len(NAME_PREFIX) :].isdigit()


def launch(
    settings: Settings,
    head_address: str,
    index: int,
    num_cpus: int = 1,
    resources: dict[str, float] | None = None,
) -> ProcessRecord:
    """Spawn a worker node joining head_address (not waited: see is_ready); `resources`:
    custom Ray resources of the node (to pin work onto it)."""
    ray = ray_head.ray_executable()
    node_name = f"esb-{service_name(index)}-{secrets.token_hex(3)}"
    agent, agent_grpc, metrics, runtime_env, node_manager, object_manager = processes.free_ports(6)
    cmd = [
        ray, "start", "--block",
        "--address", head_address,
        "--node-name", node_name,
        "--num-cpus", str(num_cpus),
        "--object-store-memory", str(OBJECT_STORE_BYTES),
        "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--metrics-export-port", str(metrics),
        "--runtime-env-agent-port", str(runtime_env),
        "--node-manager-port", str(node_manager),
        "--object-manager-port", str(object_manager),
        "--disable-usage-stats",
    ]  # fmt: skip
    if resources:
        cmd += ["--resources", json.dumps(resources)]
    log = settings.esb_state_dir.resolve() / "ray" / f"worker-{index}.log"
    return processes.spawn(
        cmd,
        address=head_address,
        log_path=log,
        env=ray_head.head_env(settings),
        extra={
            "index": index,
            "node_name": node_name,
            "num_cpus": num_cpus,
            "agent_port": agent,
            "dashboard_url": settings.jobs_url,
            **ray_head.auth_extra(settings),
        },
    )


def _get_json(url: str, record: ProcessRecord, timeout_s: float = 5.0) -> Any:
    request = urllib.request.Request(url, headers=ray_head.auth_headers(record))
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def ray_nodes(record: ProcessRecord) -> list[dict[str, Any]]:
    """Every node the head's state API knows (alive and dead), as dicts with node_id, node_name,
    state ("ALIVE" / "DEAD"), is_head_node, resources_total."""
    url = f"{record.extra['dashboard_url']}/api/v0/nodes?limit=10000&timeout=10&detail=false"
    answer = _get_json(url, record)
    return list(answer["data"]["result"]["result"])


def _this_node(record: ProcessRecord) -> dict[str, Any] | None:
    """This record's node as Ray lists it, the alive incarnation first; None when not listed."""
    try:
        nodes = ray_nodes(record)
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None
    mine = [n for n in nodes if n.get("node_name") == record.extra["node_name"]]
    mine.sort(key=lambda n: n.get("state") != "ALIVE")
    return mine[0] if mine else None


def is_ready(record: ProcessRecord) -> bool:
    """The node's agent answers and the head lists the node ALIVE."""
    if not processes.is_alive(record):
        return False
    agent = f"http://127.0.0.1:{record.extra['agent_port']}/api/healthz"
    if not ray_head.http_ok(agent, record):
        return False
    node = _this_node(record)
    return node is not None and node.get("state") == "ALIVE"


def node_id(record: ProcessRecord) -> str | None:
    """Ray's node id (hex) of this worker node, None while the head does not list it."""
    node = _this_node(record)
    return str(node["node_id"]) if node is not None else None


def node_state(record: ProcessRecord, ray_node_id: str) -> str | None:
    """ "ALIVE" or "DEAD" as the head lists node ray_node_id, None when it cannot say."""
    try:
        nodes = ray_nodes(record)
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None
    for node in nodes:
        if node.get("node_id") == ray_node_id:
            return str(node.get("state"))
    return None


def stop(record: ProcessRecord) -> None:
    """SIGTERM to the node's session (ray start, raylet, agents, workers), then SIGKILL."""
    processes.stop(record, grace_s=STOP_GRACE_S)


def check_head(settings: Settings) -> None:
    """Worker nodes join only a head this stack starts: fail before anything starts."""
    if settings.ray_workers and settings.ray_address:
        raise StackError(EXTERNAL_HEAD.format(address=settings.ray_address))
    if settings.ray_workers < 0:
        raise StackError(f"RAY_WORKERS={settings.ray_workers}: give 0 or more worker nodes.")


def workers(state: dict[str, ProcessRecord]) -> list[tuple[str, ProcessRecord]]:
    """The worker node records of a stack's state, by index."""
    found = [(name, rec) for name, rec in state.items() if is_worker_name(name)]
    return sorted(found, key=lambda item: int(item[1].extra["index"]))


def join(
    settings: Settings,
    head_address: str,
    index: int,
    num_cpus: int = 1,
    resources: dict[str, float] | None = None,
    *,
    progress: Progress,
    timeout_s: float = READY_TIMEOUT_S,
) -> ProcessRecord:
    """A worker node that has joined: launched, then waited for until the head lists it ALIVE;
    stopped again, and a StackError with its log raised, when it does not come up."""
    began = time.monotonic()
    record = launch(settings, head_address, index, num_cpus, resources)
    try:
        processes.wait_ready(
            service_name(index),
            functools.partial(is_ready, record),
            record=record,
            timeout_s=timeout_s,
            progress=progress,
            hint=HINT,
            started_at=began,
        )
    except BaseException:
        stop(record)
        raise
    return record


def ensure(
    settings: Settings,
    state: dict[str, ProcessRecord],
    progress: Progress,
    save: Callable[[], None],
) -> None:
    """Start worker nodes until settings.ray_workers run (more running are left running), each
    recorded in state (save() after each spawn), and wait until the head lists them ALIVE. On
    failure the nodes this call started are stopped again and a StackError says why."""
    running = workers(state)
    if running:
        say(progress, f"{len(running)} {LABEL}(s) already running")
    missing = settings.ray_workers - len(running)
    if missing <= 0 or settings.ray_address is None:
        return
    used = {int(rec.extra["index"]) for _, rec in running}
    indices = [i for i in range(1, settings.ray_workers + len(used) + 1) if i not in used]
    started: list[tuple[str, ProcessRecord]] = []
    try:
        # One after the other: nodes sharing the head's session dir pick their unix socket
        # names (sockets/raylet.N) by looking which exist, so two booting at once collide.
        for index in indices[:missing]:
            name = service_name(index)
            say(progress, f"starting {name} ({LABEL}) joining {settings.ray_address} ...")
            began = time.monotonic()
            record = launch(settings, settings.ray_address, index)
            state[name] = record
            save()
            started.append((name, record))
            processes.wait_ready(
                name,
                functools.partial(is_ready, record),
                record=record,
                timeout_s=READY_TIMEOUT_S,
                progress=progress,
                hint=HINT,
                started_at=began,
            )
    except BaseException:
        for name, record in reversed(started):
            say(progress, f"stopping {name} (pid {record.pid}) after the failure ...")
            stop(record)
            state.pop(name, None)
        save()
        raise


def status_entry(record: ProcessRecord) -> dict[str, Any]:
    """What `esb status` shows for a worker node."""
    alive = processes.is_alive(record)
    return {
        "state": "running" if alive else "stopped",
        "head": record.address,
        "num_cpus": record.extra.get("num_cpus"),
        "pid": record.pid,
        "log": record.log_path,
    }
