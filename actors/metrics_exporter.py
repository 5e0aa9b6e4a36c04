"""`GET /metrics` on METRICS_PORT (bound to API_HOST, no token: the scrape convention): the
`esb_*` metrics of every process of the cluster, in the Prometheus text format.

A detached Ray actor (`naming.METRICS_EXPORTER`, num_cpus=0) on the node that starts the API
runs prometheus_client's HTTP server on a registry whose every scrape reads every node's Ray
metrics export (cluster.observability.exposition). One per cluster, whatever the number of API
replicas.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

import ray
from prometheus_client import start_http_server
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster import naming
from cluster.errors import StackError
from cluster.observability import exposition
from cluster.settings import Settings

READY_TIMEOUT_S = 60.0


@ray.remote(num_cpus=0, max_restarts=-1)
class MetricsExporterActor:
    def __init__(self, host: str, port: int) -> None:
        self.error: str | None = None
        self.server: WSGIServer | None = None
        try:  # prometheus_client's own threaded server: text format, OpenMetrics and gzip if asked
            self.server, _ = start_http_server(port, host, exposition.cluster_registry())
        except OSError as exc:
            self.error = f"cannot listen on {host}:{port}: {exc}"

    def address(self) -> tuple[str | None, str | None]:
        """(host:port, None) when listening, else (None, why not)."""
        if self.server is None:
            return None, self.error
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}", None


def start_metrics_exporter(settings: Settings) -> str:
    """Start (or find) the cluster's exporter on this node; answers host:port it listens on."""
    actor = MetricsExporterActor.options(  # type: ignore[attr-defined]
        name=naming.METRICS_EXPORTER,
        namespace=naming.RAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        ),
    ).remote(settings.api_host, settings.metrics_port)
    address, error = ray.get(actor.address.remote(), timeout=READY_TIMEOUT_S)
    if address is None:
        ray.kill(actor, no_restart=True)
        raise StackError(
            f"metrics endpoint: {error}. Fix: choose another METRICS_PORT, or set "
            "METRICS_ENABLED=false."
        )
    return str(address)
