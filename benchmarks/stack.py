"""A private local stack for one benchmark run: its own ports and state dir, so it never collides
with `make run` or a test session, and always stopped (only what it started) at the end.

    with private_stack(progress) as bench:
        bench.settings.api_url, bench.pid("kafka")

`keep_dir` reuses (and leaves running) a stack in that dir: for developing the suite only.

RAY_TMPDIR is pointed into the state dir before the Ray head starts. Ray's job supervisor finds
the cluster a job driver joins through `<ray temp dir>/ray_current_cluster`, which by default is
/tmp/ray, shared by every Ray head on the machine: with another stack started later (a test
session, `make run`), our pipeline jobs' drivers would join that other cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.datagen import TENANT
from cluster import ray_client
from cluster.security import auth_config_from, mint_token
from cluster.settings import Settings
from cluster.stack import local_stack, processes

PORTS_FILE = "bench-ports.json"


def _ports(state_dir: Path) -> dict[str, int]:
    """Fresh free ports, or the ones a kept stack in state_dir was started with."""
    saved = state_dir / PORTS_FILE
    if saved.exists():
        ports: dict[str, int] = json.loads(saved.read_text())
        return ports
    names = (
        "kafka_port",
        "kafka_controller_port",
        "redis_port",
        "ray_port",
        "ray_dashboard_port",
        "api_port",
        "metrics_port",
    )
    ports = dict(zip(names, processes.free_ports(len(names)), strict=True))
    saved.write_text(json.dumps(ports))
    return ports


@dataclass(frozen=True)
class BenchStack:
    settings: Settings
    state_dir: Path

    def pid(self, service: str) -> int | None:
        """Pid of a service this stack started (kafka, redis, ray), None when external."""
        state = json.loads((self.state_dir / local_stack.STATE_FILE).read_text())
        record = state.get("services", {}).get(service)
        return int(record["pid"]) if record else None

    def auth_header(self) -> dict[str, str]:
        """An admin token of the bench tenant, for the API."""
        config = auth_config_from(self.settings)
        token = mint_token(config, TENANT, "admin", "bench", ttl_s=24 * 3600)
        return {"Authorization": f"Bearer {token}"}

    def connect_ray(self) -> Any:
        """This process as a Ray driver of the stack (for actor pids); ray imported lazily."""
        os.environ.update(ray_client.auth_env(self.settings))  # the head's mode (and token)
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.settings.ray_address,
                namespace="esb-bench",
                log_to_driver=False,
                configure_logging=False,
            )
        return ray


@contextmanager
def private_stack(
    progress: Callable[[str], None], keep_dir: Path | None = None
) -> Iterator[BenchStack]:
    state_dir = keep_dir or Path(tempfile.mkdtemp(prefix="esb-bench-", dir="/tmp"))
    state_dir.mkdir(parents=True, exist_ok=True)
    unlimited = {"esb_quota_events_per_s": None, "esb_quota_bytes_per_s": None}  # we measure
    settings = Settings.model_validate(
        {"esb_state_dir": state_dir, **unlimited, **_ports(state_dir)}
    )
    ray_tmp = state_dir / "rt"
    ray_tmp.mkdir(exist_ok=True)
    os.environ["RAY_TMPDIR"] = str(ray_tmp)  # inherited by the head: see the module docstring
    failed = True
    try:
        resolved = local_stack.up(settings, progress=progress, with_api=True)
        yield BenchStack(resolved, state_dir)
        failed = False
    finally:
        _disconnect_ray()
        if keep_dir is None:
            local_stack.down(settings, progress=progress)
            if failed:
                progress(f"[bench] stack logs kept in {state_dir}")
            else:
                shutil.rmtree(state_dir, ignore_errors=True)


def _disconnect_ray() -> None:
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
