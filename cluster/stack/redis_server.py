"""A Redis server from the OS package for the local stack: AOF on, loopback only, in the
foreground (no daemonize) so the pid we record is the server itself.
"""

from __future__ import annotations

import contextlib

from cluster.settings import Settings
from cluster.stack import processes
from cluster.stack.processes import ProcessRecord, Progress, say

LABEL = "Redis"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 30.0
HINT = (
    "Fix: read the Redis log above (a corrupt appendonly file can be checked with "
    "`redis-check-aof --fix <state_dir>/redis/appendonlydir/*.manifest`), or set REDIS_URL to "
    "use an existing server."
)


def preflight(settings: Settings) -> None:
    """Fail before anything starts when the port is taken."""
    processes.require_free_ports(
        LABEL,
        {"REDIS_PORT": settings.redis_port},
        "Fix: stop what listens there, choose another REDIS_PORT, or point REDIS_URL at it.",
    )


def launch(settings: Settings, progress: Progress) -> ProcessRecord:
    """Spawn redis-server (installing the Debian package first when root and it is missing)."""
    server = processes.require_executable("redis-server", "redis-server", progress)
    home = settings.esb_state_dir.resolve() / "redis"
    home.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{settings.redis_port}"
    say(progress, f"starting {LABEL} on {address} ...")
    # No --logfile: the server logs to stdout, which spawn() appends to redis.log together with
    # anything printed before logging is set up (bad options, a port in use).
    cmd = [
        server,
        "--port", str(settings.redis_port),
        "--bind", "127.0.0.1",
        "--dir", str(home),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip
    return processes.spawn(cmd, address=address, log_path=home / "redis.log", cwd=home)


def url(record: ProcessRecord) -> str:
    return f"redis://{record.address}/0"


def is_ready(redis_url: str, timeout_s: float = 1.0) -> bool:
    """True when the server answers PING (not while it still loads the AOF)."""
    import redis

    client = redis.Redis.from_url(
        redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def stop(record: ProcessRecord) -> None:
    """SHUTDOWN first (fsyncs the AOF, then exits), SIGTERM/SIGKILL only if it does not exit."""
    import redis

    asked = False
    if processes.is_alive(record):
        client = redis.Redis.from_url(url(record), socket_connect_timeout=2, socket_timeout=10)
        with contextlib.suppress(redis.RedisError):
            client.shutdown()  # returns once the server closed the connection after saving
            asked = True
        client.close()
    if asked and processes.wait_for(lambda: not processes.owned_pids(record), timeout_s=10.0):
        return
    processes.stop(record, grace_s=STOP_GRACE_S)  # SIGTERM also makes Redis flush the AOF
