"""Deploy the API on Ray Serve: one replica with num_cpus=0 (it waits on I/O, not the CPU)."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import ray
from ray import serve as ray_serve

from cluster.errors import StackError
from cluster.processes import tcp_open
from cluster.settings import Settings
from serve.app import create_app

APP_NAME = "esb-api"
READY_TIMEOUT_S = 180.0


def api_deployment(settings: Settings) -> Any:
    """The bound Serve application for these settings."""
    app = create_app(settings)

    @ray_serve.deployment(
        name="BusApi",
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=settings.serve_max_ongoing_requests,
    )
    @ray_serve.ingress(app)
    class BusApi:
        pass

    return BusApi.bind()  # type: ignore[attr-defined]


def connect_ray(settings: Settings) -> None:
    """Join the cluster at settings.ray_address as a driver (once per process)."""
    if ray.is_initialized():
        return
    host, _, port = (settings.ray_address or "").rpartition(":")
    if settings.ray_address and port.isdigit() and not tcp_open(host or "127.0.0.1", int(port)):
        # ray.init would wait forever for a cluster that is gone.
        raise StackError(f"no Ray cluster answers at {settings.ray_address}; start it (esb up)")
    os.environ["RAY_AUTH_MODE"] = settings.ray_auth_mode  # must match the cluster's
    ray.init(
        address=settings.ray_address,
        namespace="esb",
        log_to_driver=False,
        configure_logging=False,
    )


def start_api(settings: Settings, progress: Any = print) -> None:
    """Run the API on the cluster's Serve at settings.api_url and wait until it answers."""
    connect_ray(settings)
    progress(f"[esb] deploying the API on Ray Serve at {settings.api_url} ...")
    started = time.monotonic()
    ray_serve.start(http_options={"host": settings.api_host, "port": settings.api_port})
    ray_serve.run(api_deployment(settings), name=APP_NAME, route_prefix="/", blocking=False)
    _wait_healthy(settings, started)
    progress(f"[esb] API ready in {time.monotonic() - started:.1f}s")


def _wait_healthy(settings: Settings, started: float) -> None:
    last = "no answer yet"
    while time.monotonic() - started < READY_TIMEOUT_S:
        try:
            answer = httpx.get(f"{settings.api_url}/health", timeout=5)
            if answer.status_code == 200:
                return
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise StackError(
        f"the API did not answer on {settings.api_url}/health within {READY_TIMEOUT_S:.0f}s "
        f"({last}); see the Serve logs in session_latest/logs/serve under Ray's temp dir "
        "(for the local stack: esb-ray-* in the system temp dir)"
    )


def stop_api(settings: Settings) -> None:
    connect_ray(settings)
    ray_serve.delete(APP_NAME)
