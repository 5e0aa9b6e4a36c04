"""Helpers for the front-door tests: an `esb` command line in subprocesses, on free ports with
its own state dir, never using the external services a developer's environment may name."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cluster.stack.processes import free_ports

Esb = Callable[..., subprocess.CompletedProcess[str]]
PORTS = (
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "REDIS_PORT",
    "RAY_PORT",
    "RAY_DASHBOARD_PORT",
    "API_PORT",
    "METRICS_PORT",
)


def stack_env(state_dir: Path, *more_ports: str, **settings: object) -> dict[str, str]:
    """The environment: ours without KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and RAY_ADDRESS, one
    free port for each of PORTS and `more_ports` (one call, so they differ), then `settings`
    (upper-cased)."""
    names = (*PORTS, *more_ports)
    outside = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "RAY_ADDRESS")
    env = {k: v for k, v in os.environ.items() if k not in outside}
    env["ESB_STATE_DIR"] = str(state_dir)
    env.update({name: str(port) for name, port in zip(names, free_ports(len(names)), strict=True)})
    env.update({name.upper(): str(value) for name, value in settings.items()})
    return env


def esb_cli(env: dict[str, str]) -> Esb:
    """`esb(*args)`: the CLI in a subprocess with `env`, its output captured."""

    def esb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cluster.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return esb
