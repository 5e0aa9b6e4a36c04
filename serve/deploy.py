"""Deploy the API on Ray Serve: API_REPLICAS replicas with num_cpus=0 (they wait on I/O, not
the CPU). How HTTP reaches them (HAProxy, or Serve's proxy) is the nodes' environment
(cluster.stack.ray_head.serve_env). With API_TLS_CERTFILE and API_TLS_KEYFILE set, Serve's HTTP
proxy speaks HTTPS (uvicorn's TLS).
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx
from ray import serve as ray_serve

from actors.dispatch_coordinator import start_dispatch_coordinator
from actors.indexer import IndexerLauncher
from actors.metrics_exporter import start_metrics_exporter
from cluster import ray_client
from cluster.errors import StackError
from cluster.settings import Settings
from serve.app import create_app

APP_NAME = "esb-api"
READY_TIMEOUT_S = 180.0


def api_deployment(settings: Settings) -> Any:
    """The bound Serve application for these settings."""
    app = create_app(settings)

    @ray_serve.deployment(
        name="BusApi",
        num_replicas=settings.api_replicas,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=settings.serve_max_ongoing_requests,
        logging_config={"enable_access_log": settings.api_access_log},
    )
    @ray_serve.ingress(app)
    class BusApi:
        pass

    return BusApi.bind()  # type: ignore[attr-defined]


def app_builder(args: dict[str, Any]) -> Any:
    """The API for a Serve config file (`import_path: serve.deploy:app_builder`), which is how
    KubeRay's RayService and `serve deploy` run it (deploy/serve-config.yaml). Settings come from
    the environment of the Ray node it is built on (the pod's); the event store's indexer starts
    beside it, as in start_api. Serve passes the config's `args`; none are read."""
    settings = Settings()
    IndexerLauncher(settings).start()
    start_dispatch_coordinator(settings)
    return api_deployment(settings)


def http_options(settings: Settings) -> dict[str, Any]:
    """Serve's proxy options: host and port, and the certificate and key for HTTPS."""
    if (settings.api_tls_certfile is None) != (settings.api_tls_keyfile is None):
        raise StackError("HTTPS needs both API_TLS_CERTFILE and API_TLS_KEYFILE (one is unset)")
    options: dict[str, Any] = {"host": settings.api_host, "port": settings.api_port}
    if settings.api_tls:
        options["ssl_certfile"] = str(settings.api_tls_certfile)
        options["ssl_keyfile"] = str(settings.api_tls_keyfile)
    return options


def start_api(settings: Settings, progress: Any = print) -> None:
    """Run the API on the cluster's Serve at settings.api_url and wait until it answers."""
    options = http_options(settings)
    ray_client.connect(settings)
    progress(f"[esb] deploying the API on Ray Serve at {settings.api_url} ...")
    started = time.monotonic()
    # An already running Serve keeps its proxy options: TLS changes need a new Ray head.
    # One ingress, on the head: Serve's default (a proxy on every node with a replica) would
    # start a second proxy or HAProxy on API_PORT when a replica lands on a worker node of the
    # same machine (esb up --ray-workers).
    ray_serve.start(proxy_location="HeadOnly", http_options=options)
    ray_serve.run(api_deployment(settings), name=APP_NAME, route_prefix="/", blocking=False)
    IndexerLauncher(settings).start()  # the event store's indexer runs wherever the API does
    start_dispatch_coordinator(settings)
    _wait_healthy(settings, started)
    progress(f"[esb] API ready in {time.monotonic() - started:.1f}s")
    if settings.metrics_enabled:
        progress(f"[esb] Prometheus metrics at http://{start_metrics_exporter(settings)}/metrics")


def health_check_verify(settings: Settings) -> ssl.SSLContext | bool:
    """How the health check verifies HTTPS: it trusts the certificate file it deployed (each
    certificate in it is an anchor, so a chain or a lone leaf both work), host name checked."""
    if not settings.api_tls:
        return True
    context = ssl.create_default_context(cafile=str(settings.api_tls_certfile))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def _wait_healthy(settings: Settings, started: float) -> None:
    last = "no answer yet"
    verify = health_check_verify(settings)
    while time.monotonic() - started < READY_TIMEOUT_S:
        try:
            answer = httpx.get(f"{settings.api_url}/health", timeout=5, verify=verify)
            if answer.status_code == 200:
                return
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in last:
                break  # the proxy serves another certificate: waiting will not change that
        time.sleep(0.5)
    raise StackError(
        f"the API did not answer on {settings.api_url}/health within "
        f"{time.monotonic() - started:.0f}s "
        f"({last}); see the Serve logs in session_latest/logs/serve under Ray's temp dir "
        "(for the local stack: esb-ray-* in the system temp dir). A Serve already running keeps "
        "its HTTP/HTTPS choice: after changing API_TLS_*, restart the stack (esb down, esb up)."
    )


def stop_api(settings: Settings) -> None:
    ray_client.connect(settings)
    ray_serve.delete(APP_NAME)
