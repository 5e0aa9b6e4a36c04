"""processes.port_run: ports for restartable services, below the ephemeral range, never the
same run twice in one process, never a port something holds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cluster.errors import StackError
from cluster.settings import Settings
from cluster.stack import processes, ray_head


def test_runs_are_below_the_ephemeral_range_and_apart() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    runs = [range(first, first + 11) for first in (processes.port_run(11) for _ in range(5))]
    assert all(run[-1] < min(low, 30_000) for run in runs)  # and below Serve's ports
    taken = [p for run in runs for p in run]
    assert len(taken) == len(set(taken))  # a run handed out is not handed out again


def _free_window(size: int) -> int:
    for first in range(25_000, 29_000, size):
        window = range(first, first + size)
        if not any(p in processes._RUNS_HANDED_OUT or processes.port_in_use(p) for p in window):
            return first
    raise AssertionError("no free window to test in")


def test_a_port_in_use_is_stepped_over_and_a_full_window_refused() -> None:
    first = _free_window(6)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first + 2))
        holder.listen()
        assert processes.port_run(3, first=first, last=first + 6) == first + 3
        with pytest.raises(StackError, match="no 3 consecutive free ports"):
            processes.port_run(3, first=first, last=first + 6)  # first + 3.. is handed out


def test_each_stack_gets_its_own_serve_ports() -> None:
    """Two stacks on one machine: Serve's ports (replicas, fallback proxy, HAProxy's own) never
    overlap (else one stack's HAProxy could reach the other's), below the ephemeral range."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    settings = Settings(api_ingress="haproxy")
    taken = []
    for _ in range(2):
        env = ray_head.serve_env(settings)
        first = int(env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"])
        replicas = range(first, int(env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]))
        assert len(replicas) == ray_head.REPLICA_PORTS
        others = [int(v) for k, v in env.items() if k.endswith("_PORT") and "INGRESS" not in k]
        assert len(others) == 4  # HAProxy's metrics and stats, the fallback proxy's two
        taken.append({*replicas, *others})
    assert all(min(ports) >= 30_000 and max(ports) < low for ports in taken)
    assert len(taken[0] | taken[1]) == 2 * (ray_head.REPLICA_PORTS + 4)  # none shared
    assert "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT" not in ray_head.serve_env(
        Settings(api_ingress="proxy")
    )
