"""The bus's metrics, recorded with `ray.util.metrics` from every process (API replicas,
partition owners, dispatchers).

Why Ray's metrics: each process hands its values to its node's Ray metrics agent, which
aggregates the processes of that node and serves them in the Prometheus format on the node's
metrics export port; every node has one (Prometheus finds them through Ray's service discovery
file, or scrapes `METRICS_PORT`, see :mod:`cluster.observability.exposition`). Ray prefixes every
application metric with `ray_`: `esb_events_published` is exported as
`ray_esb_events_published_total` by Ray, and as `esb_events_published_total` by our exposition.

Recording is batch-friendly: a publish of n events is one `inc(n)` and one `observe`, a pipeline
step or a dispatcher cycle a handful of calls, whatever its size. Each call is a cheap in-process
record (Ray exports on its own thread every `metrics_report_interval_ms`).

Outside a Ray worker (unit tests, the CLI) or with METRICS_ENABLED=false, every recorder is a
no-op, unless a test installs a fake with :func:`use_backend`.

>>> backend = FakeBackend()
>>> use_backend(backend)
>>> record_publish("acme", "orders", 3, 0.004)
>>> backend.values[("esb_events_published", (("stream", "orders"), ("tenant", "acme")))]
3.0
>>> use_backend(None)
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray
from ray.util import metrics as ray_metrics

from cluster.observability.logs import get_logger
from cluster.settings import get_settings

# Seconds: the publish path answers within a few ms, a slow broker in seconds.
LATENCY_BOUNDARIES_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]
LAG_REFRESH_S = 1.0  # Ray drops a gauge not refreshed within two export intervals
PROCESS_REFRESH_S = 5.0
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# What is recorded is also a DEBUG line of its package's logger (cluster.observability.logs):
# free when DEBUG is off, one line per publish request or cycle when on.
_publishing_log = get_logger("publishing")
_pipelines_log = get_logger("pipelines")
_subscriptions_log = get_logger("subscriptions")


@dataclass(frozen=True)
class Spec:
    kind: str  # counter | gauge | histogram
    description: str
    tags: tuple[str, ...]


# Names as Ray gets them (no `ray_` prefix; counters get `_total` on export).
SPECS: dict[str, Spec] = {
    "esb_events_published": Spec(
        "counter", "Events acknowledged by the broker.", ("tenant", "stream")
    ),
    "esb_events_publish_failed": Spec(
        "counter", "Events the broker did not acknowledge.", ("tenant", "stream")
    ),
    "esb_publish_duration_seconds": Spec(
        "histogram",
        "From the publish call to the broker's acknowledgement (one per request or batch).",
        ("tenant", "stream"),
    ),
    "esb_consumer_lag": Spec(
        "gauge",
        "Records in a partition not yet consumed by the group (subscriptions and pipelines).",
        ("tenant", "group", "topic", "partition"),
    ),
    "esb_pipeline_records_in": Spec(
        "counter", "Records a pipeline consumed.", ("tenant", "pipeline")
    ),
    "esb_pipeline_records_out": Spec(
        "counter", "Results a pipeline wrote.", ("tenant", "pipeline")
    ),
    "esb_pipeline_windows_emitted": Spec(
        "counter", "Windows a pipeline closed and emitted.", ("tenant", "pipeline")
    ),
    "esb_pipeline_late_events": Spec(
        "counter",
        "Events behind the watermark, by what happened to them.",
        ("tenant", "pipeline", "outcome"),
    ),
    "esb_pipeline_step_duration_seconds": Spec(
        "histogram", "One consume-process-commit step of a partition owner.", ("tenant", "pipeline")
    ),
    "esb_webhook_deliveries": Spec(
        "counter",
        "Subscription delivery outcomes: delivered, retried, dead_lettered, forwarded, ...",
        ("tenant", "subscription", "outcome"),
    ),
    "esb_process_cpu_seconds": Spec("counter", "CPU time of the bus's processes.", ("component",)),
    "esb_process_resident_memory_bytes": Spec(
        "gauge", "Resident memory of the bus's processes.", ("component",)
    ),
}


class Backend(Protocol):
    def record(self, name: str, value: float, tags: Mapping[str, str]) -> None: ...


class RayBackend:
    """`ray.util.metrics` instruments, created on first use in this process."""

    def __init__(self) -> None:
        self._instruments: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _instrument(self, name: str) -> Any:
        found = self._instruments.get(name)
        if found is not None:
            return found
        with self._lock:
            spec = SPECS[name]
            if spec.kind == "counter":
                made: Any = ray_metrics.Counter(name, spec.description, spec.tags)
            elif spec.kind == "gauge":
                made = ray_metrics.Gauge(name, spec.description, spec.tags)
            else:
                made = ray_metrics.Histogram(
                    name, spec.description, LATENCY_BOUNDARIES_S, spec.tags
                )
            return self._instruments.setdefault(name, made)

    def record(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        instrument = self._instrument(name)
        kind = SPECS[name].kind
        if kind == "counter":
            if value > 0:
                instrument.inc(value, dict(tags))
        elif kind == "gauge":
            instrument.set(value, dict(tags))
        else:
            instrument.observe(value, dict(tags))


@dataclass
class FakeBackend:
    """For unit tests: counters add up, gauges keep the last value, histograms every sample."""

    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def record(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        key = (name, tuple(sorted(tags.items())))
        kind = SPECS[name].kind
        if kind == "counter":
            self.values[key] += value
        elif kind == "gauge":
            self.values[key] = value
        else:
            self.samples[name].append(value)


_backend: Backend | None = None
_resolved = False
_component = "driver"


def use_backend(backend: Backend | None) -> None:
    """Install a backend (tests); None goes back to deciding from Ray and the settings."""
    global _backend, _resolved
    _backend, _resolved = backend, backend is not None


def _current() -> Backend | None:
    global _backend, _resolved
    if not _resolved:
        if not ray.is_initialized():
            return None  # not yet a Ray worker: decide again next time
        _resolved = True
        _backend = RayBackend() if get_settings().metrics_enabled else None
        if _backend is not None:
            _ProcessSampler.start()
    return _backend


def set_component(name: str) -> None:
    """What the process metrics of this process are labelled (api, partition_owner, ...)."""
    global _component
    _component = name


def _record(name: str, value: float, tags: Mapping[str, str]) -> None:
    backend = _current()
    if backend is None:
        return
    with contextlib.suppress(Exception):  # metrics never fail the work they measure
        backend.record(name, value, tags)


# --- what the bus records ------------------------------------------------------------------


def record_publish(
    tenant: str, stream: str, published: int, seconds: float, failed: int = 0
) -> None:
    """One publish request (one event or a batch)."""
    if _publishing_log.isEnabledFor(logging.DEBUG):
        _publishing_log.debug(
            "published %d events (%d failed)",
            published,
            failed,
            extra={"tenant_id": tenant, "stream_id": stream, "duration_ms": seconds * 1000},
        )
    tags = {"tenant": tenant, "stream": stream}
    if published:
        _record("esb_events_published", published, tags)
    if failed:
        _record("esb_events_publish_failed", failed, tags)
    _record("esb_publish_duration_seconds", seconds, tags)


def record_pipeline_step(
    tenant: str,
    pipeline: str,
    results: int,
    progress: Mapping[int, Mapping[str, int]],
    seconds: float,
) -> None:
    """One partition owner step: `progress` holds each partition's counters (records_in and
    the WindowCounters: windows_emitted, late_dropped, ...), `results` the results written."""
    tags = {"tenant": tenant, "pipeline": pipeline}
    counters: dict[str, int] = defaultdict(int)
    for partition_counters in progress.values():
        for name, n in partition_counters.items():
            counters[name] += n
    records_in = counters["records_in"]
    if _pipelines_log.isEnabledFor(logging.DEBUG):
        _pipelines_log.debug(
            "step: %d records in, %d results",
            records_in,
            results,
            extra={"tenant_id": tenant, "pipeline_id": pipeline, "duration_ms": seconds * 1000},
        )
    _record("esb_pipeline_records_in", records_in, tags)
    _record("esb_pipeline_records_out", results, tags)
    _record("esb_pipeline_windows_emitted", counters.get("windows_emitted", 0), tags)
    for outcome in ("late_dropped", "late_dead_lettered", "late_updated"):
        if counters.get(outcome):
            late_tags = {**tags, "outcome": outcome.removeprefix("late_")}
            _record("esb_pipeline_late_events", counters[outcome], late_tags)
    _record("esb_pipeline_step_duration_seconds", seconds, tags)


def record_deliveries(tenant: str, subscription: str, counters: Mapping[str, int]) -> None:
    """One dispatcher cycle's outcome counts (delivered, retried, dead_lettered, ...)."""
    if _subscriptions_log.isEnabledFor(logging.DEBUG):
        _subscriptions_log.debug(
            "cycle: %s",
            dict(counters),
            extra={"tenant_id": tenant, "subscription_id": subscription},
        )
    for outcome, n in counters.items():
        if n:
            tags = {"tenant": tenant, "subscription": subscription, "outcome": outcome}
            _record("esb_webhook_deliveries", n, tags)


class LagReporter:
    """Sets esb_consumer_lag for a consumer's assigned partitions, at most once a second:
    high watermark (cached from fetches, no broker round trip) minus the consumer's position."""

    def __init__(self, tenant: str, group: str) -> None:
        self.tenant, self.group = tenant, group
        self._next_at = 0.0

    def maybe_report(self, consumer: Any) -> None:
        now = time.monotonic()
        if now < self._next_at or _current() is None:
            return
        self._next_at = now + LAG_REFRESH_S
        with contextlib.suppress(Exception):
            for tp in consumer.position(consumer.assignment()):
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue
                position = tp.offset if tp.offset >= 0 else max(low, 0)
                tags = {
                    "tenant": self.tenant,
                    "group": self.group,
                    "topic": tp.topic,
                    "partition": str(tp.partition),
                }
                _record("esb_consumer_lag", max(high - position, 0), tags)


class _ProcessSampler:
    """A daemon thread per process: CPU seconds and resident memory every few seconds."""

    _started = False

    @classmethod
    def start(cls) -> None:
        if cls._started:
            return
        cls._started = True
        threading.Thread(target=cls._loop, name="esb-process-metrics", daemon=True).start()

    @staticmethod
    def _loop() -> None:
        reported = 0.0
        while True:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime
            tags = {"component": _component}
            _record("esb_process_cpu_seconds", cpu - reported, tags)
            reported = cpu
            with contextlib.suppress(OSError, ValueError), open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * _PAGE_BYTES
                _record("esb_process_resident_memory_bytes", rss, tags)
            time.sleep(PROCESS_REFRESH_S)
