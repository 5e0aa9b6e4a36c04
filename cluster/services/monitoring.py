"""A tenant's view of the bus's metrics: what `GET /api/v1/metrics` and `/ws/monitoring` answer.

The figures are the cluster's `esb_*` metrics (cluster.observability.exposition) with the
tenant's label, summed over nodes and processes (what PromQL's `sum by` does); latency
percentiles are estimated from the histogram's buckets like `histogram_quantile`. Rates need two
readings: :func:`with_rates` derives them from the previous view (the WebSocket keeps it).

>>> from prometheus_client.parser import text_string_to_metric_families as parse
>>> text = '''# TYPE esb_events_published counter
... esb_events_published_total{tenant="acme",stream="s1"} 5.0
... esb_events_published_total{tenant="other",stream="s9"} 7.0
... '''
>>> view = tenant_view(list(parse(text)), "acme", now_s=10.0)
>>> [(s.stream_id, s.events_published_total) for s in view.streams]
[('s1', 5.0)]
>>> later = tenant_view(list(parse(text.replace("5.0", "9.0"))), "acme", now_s=12.0)
>>> with_rates(later, view).streams[0].events_per_s
2.0
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import TypeVar

from prometheus_client import Metric
from pydantic import BaseModel, Field

from cluster.coalescing import Coalescer
from cluster.observability import exposition

PERCENTILES = (0.5, 0.95, 0.99)
Item = TypeVar("Item", bound=BaseModel)


class Percentiles(BaseModel):
    p50: float | None = Field(
        default=None, description="Milliseconds; null before the first sample."
    )
    p95: float | None = None
    p99: float | None = None


class StreamMetrics(BaseModel):
    stream_id: str
    events_published_total: float = 0
    events_publish_failed_total: float = 0
    publish_latency_ms: Percentiles = Field(default_factory=lambda: Percentiles())
    events_per_s: float | None = Field(default=None, description="Since the previous reading.")


class LagMetrics(BaseModel):
    group: str
    topic: str
    partition: int
    lag: float


class PipelineMetrics(BaseModel):
    pipeline_id: str
    records_in_total: float = 0
    records_out_total: float = 0
    windows_emitted_total: float = 0
    late_events_total: float = 0
    records_per_s: float | None = None


class SubscriptionMetrics(BaseModel):
    subscription_id: str
    deliveries: dict[str, float] = Field(
        default_factory=dict, description="By outcome: delivered, retried, dead_lettered, ..."
    )


class TenantMetrics(BaseModel):
    tenant_id: str
    collected_at: datetime
    interval_s: float | None = Field(
        default=None, description="Seconds since the previous reading."
    )
    streams: list[StreamMetrics] = Field(default_factory=list)
    consumer_lag: list[LagMetrics] = Field(default_factory=list)
    pipelines: list[PipelineMetrics] = Field(default_factory=list)
    subscriptions: list[SubscriptionMetrics] = Field(default_factory=list)


def _mine(families: list[Metric], tenant: str) -> list[Metric]:
    """The families with only the tenant's samples."""
    out = []
    for family in families:
        kept = Metric(family.name, family.documentation, family.type)
        kept.samples = [s for s in family.samples if s.labels.get("tenant") == tenant]
        if kept.samples:
            out.append(kept)
    return out


def _quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative bucket counts {le: count}, in the bucket's unit."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            span = count - lower_count
            return lower_bound + (le - lower_bound) * ((rank - lower_count) / span if span else 1)
        lower_bound, lower_count = le, count
    return lower_bound


# Sample name -> PipelineMetrics field it adds to.
_PIPELINE_FIELDS = {
    "esb_pipeline_records_in_total": "records_in_total",
    "esb_pipeline_records_out_total": "records_out_total",
    "esb_pipeline_windows_emitted_total": "windows_emitted_total",
    "esb_pipeline_late_events_total": "late_events_total",
}


def tenant_view(families: list[Metric], tenant: str, now_s: float | None = None) -> TenantMetrics:
    now_s = time.time() if now_s is None else now_s
    streams: dict[str, StreamMetrics] = {}
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    lag: dict[tuple[str, str, int], float] = defaultdict(float)
    pipes: dict[str, PipelineMetrics] = {}
    subs: dict[str, SubscriptionMetrics] = {}
    for family in _mine(families, tenant):
        for s in family.samples:
            labels = s.labels
            if "stream" in labels:
                stream = streams.setdefault(
                    labels["stream"], StreamMetrics(stream_id=labels["stream"])
                )
                if s.name == "esb_events_published_total":
                    stream.events_published_total += s.value
                elif s.name == "esb_events_publish_failed_total":
                    stream.events_publish_failed_total += s.value
                elif s.name == "esb_publish_duration_seconds_bucket":
                    buckets[labels["stream"]][float(labels["le"])] += s.value
            elif s.name == "esb_consumer_lag":
                lag[(labels["group"], labels["topic"], int(labels["partition"]))] += s.value
            elif "pipeline" in labels:
                pipe = pipes.setdefault(
                    labels["pipeline"], PipelineMetrics(pipeline_id=labels["pipeline"])
                )
                field = _PIPELINE_FIELDS.get(s.name)
                if field is not None:
                    setattr(pipe, field, getattr(pipe, field) + s.value)
            elif s.name == "esb_webhook_deliveries_total":
                sub = subs.setdefault(
                    labels["subscription"],
                    SubscriptionMetrics(subscription_id=labels["subscription"]),
                )
                outcome = labels.get("outcome", "")
                sub.deliveries[outcome] = sub.deliveries.get(outcome, 0.0) + s.value
    for stream_id, counts in buckets.items():
        ms = {q: _quantile(q, counts) for q in PERCENTILES}
        streams[stream_id].publish_latency_ms = Percentiles(
            **{f"p{round(q * 100)}": None if v is None else v * 1000 for q, v in ms.items()}
        )
    return TenantMetrics(
        tenant_id=tenant,
        collected_at=datetime.fromtimestamp(now_s, UTC),
        streams=[streams[k] for k in sorted(streams)],
        consumer_lag=[
            LagMetrics(group=g, topic=t, partition=p, lag=v) for (g, t, p), v in sorted(lag.items())
        ],
        pipelines=[pipes[k] for k in sorted(pipes)],
        subscriptions=[subs[k] for k in sorted(subs)],
    )


def _rates(
    current: list[Item], previous: list[Item], key: str, total: str, rate: str, interval: float
) -> list[Item]:
    """Each item with `rate` = growth of its `total` per second since `previous` (same `key`)."""
    before = {getattr(item, key): getattr(item, total) for item in previous}
    return [
        item.model_copy(
            update={rate: (getattr(item, total) - before[getattr(item, key)]) / interval}
        )
        if before.get(getattr(item, key), math.inf) <= getattr(item, total)
        else item
        for item in current
    ]


def with_rates(current: TenantMetrics, previous: TenantMetrics | None) -> TenantMetrics:
    """Per-second rates since `previous` (counters that went down, a restart: no rate)."""
    if previous is None:
        return current
    interval = (current.collected_at - previous.collected_at).total_seconds()
    if interval <= 0:
        return current
    streams = _rates(
        current.streams,
        previous.streams,
        "stream_id",
        "events_published_total",
        "events_per_s",
        interval,
    )
    pipelines = _rates(
        current.pipelines,
        previous.pipelines,
        "pipeline_id",
        "records_in_total",
        "records_per_s",
        interval,
    )
    return current.model_copy(
        update={"interval_s": interval, "streams": streams, "pipelines": pipelines}
    )


class MonitoringService:
    """Reads the cluster's metrics (one HTTP GET per Ray node, in a thread) for one tenant.
    Concurrent readers (every /ws/monitoring client pushes each second) share one scrape."""

    def __init__(self) -> None:
        self._scrapes: Coalescer[None, list[Metric]] = Coalescer(self._scrape, max_batch=10_000)

    async def _scrape(self, readers: list[None]) -> list[list[Metric]]:
        texts = await asyncio.to_thread(exposition.scrape_nodes)
        return [exposition.esb_families(texts)] * len(readers)  # read-only for every reader

    async def families(self) -> list[Metric]:
        return await self._scrapes.submit((), None)

    async def tenant_metrics(self, tenant: str) -> TenantMetrics:
        return tenant_view(await self.families(), tenant)

    async def tenant_exposition(self, tenant: str) -> bytes:
        return exposition.render(_mine(await self.families(), tenant))
