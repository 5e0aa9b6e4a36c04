"""The `esb_*` metrics of the whole cluster, read from Ray's metrics export of every node.

Ray aggregates the processes of a node in its metrics agent and serves them on the node's
metrics export port, with every application metric prefixed `ray_`. This module reads each
live node's export (the addresses come from the GCS: `ray.nodes()`), keeps the `ray_esb_*`
families, renames them `esb_*` and serves them as one exposition; series of different nodes
stay apart by Ray's own labels (NodeAddress; WorkerId, the process: Ray keeps one series per
worker for application metrics). Nothing is summed here: Prometheus (or the
tenant view, :mod:`cluster.services.monitoring`) does that.

>>> text = '''# HELP ray_esb_events_published_total Events.
... # TYPE ray_esb_events_published_total counter
... ray_esb_events_published_total{tenant="acme",stream="s1"} 3.0
... # HELP ray_tasks Ray's own.
... # TYPE ray_tasks gauge
... ray_tasks{State="RUNNING"} 1.0
... '''
>>> [f.name for f in esb_families([text])]
['esb_events_published']
>>> print(render(esb_families([text])).decode().splitlines()[2])
esb_events_published_total{stream="s1",tenant="acme"} 3.0
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import ray
from prometheus_client import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

RAY_PREFIX = "ray_"
PREFIX = "esb_"
SCRAPE_TIMEOUT_S = 5.0
# Labels Ray's OpenTelemetry recorder puts on every series alike (its own scope): dropped.
OTEL_SCOPE = "otel_scope_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def node_endpoints() -> list[str]:
    """`http://<node>:<port>/metrics` of every live node's Ray metrics agent (needs ray.init)."""
    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


def _fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""  # a node going away: its series are missing from this scrape only


def scrape_nodes(endpoints: list[str] | None = None) -> list[str]:
    """Every node's exposition text, fetched concurrently."""
    urls = node_endpoints() if endpoints is None else endpoints
    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=min(len(urls), 8)) as pool:
        return list(pool.map(_fetch, urls))


def esb_families(texts: Iterable[str]) -> list[Metric]:
    """The `ray_esb_*` families of all texts, renamed `esb_*`, one family per name."""
    merged: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(RAY_PREFIX + PREFIX):
                continue
            name = family.name.removeprefix(RAY_PREFIX)
            target = merged.get(name)
            if target is None:
                target = merged[name] = Metric(name, family.documentation, family.type)
            for sample in family.samples:
                labels = {k: v for k, v in sample.labels.items() if not k.startswith(OTEL_SCOPE)}
                renamed = sample.name.removeprefix(RAY_PREFIX)
                target.samples.append(sample._replace(name=renamed, labels=labels))
    return [merged[name] for name in sorted(merged)]


class _Families(Collector):
    """A collector answering what `read` gives, read anew at every collect (every scrape)."""

    def __init__(self, read: Callable[[], list[Metric]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        yield from self.read()


def _registry(read: Callable[[], list[Metric]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)  # no collect at register time
    registry.register(_Families(read))
    return registry


def render(families: list[Metric]) -> bytes:
    """The Prometheus text format (prometheus_client's own writer)."""
    return generate_latest(_registry(lambda: families))


def cluster_registry() -> CollectorRegistry:
    """What `GET /metrics` on METRICS_PORT serves (prometheus_client's server): every scrape
    reads every node's Ray export."""
    return _registry(lambda: esb_families(scrape_nodes()))
