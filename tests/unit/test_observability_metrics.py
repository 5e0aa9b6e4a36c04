"""The metrics' recording (a fake backend, no Ray), the exposition's renaming and merging of the
nodes' Ray exports, and the tenant's view (sums, percentiles, rates, isolation)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from cluster.observability import exposition, metrics
from cluster.services.monitoring import tenant_view, with_rates


@pytest.fixture
def backend() -> Iterator[metrics.FakeBackend]:
    fake = metrics.FakeBackend()
    metrics.use_backend(fake)
    yield fake
    metrics.use_backend(None)


def value(backend: metrics.FakeBackend, name: str, **tags: str) -> float:
    return backend.values[(name, tuple(sorted(tags.items())))]


def test_a_batch_is_one_increment_by_n(backend: metrics.FakeBackend) -> None:
    metrics.record_publish("acme", "s1", 500, 0.01)
    metrics.record_publish("acme", "s1", 0, 0.02, failed=3)
    assert value(backend, "esb_events_published", tenant="acme", stream="s1") == 500
    assert value(backend, "esb_events_publish_failed", tenant="acme", stream="s1") == 3
    assert backend.samples["esb_publish_duration_seconds"] == [0.01, 0.02]


def test_pipeline_steps_and_deliveries(backend: metrics.FakeBackend) -> None:
    progress = {
        0: {"records_in": 10, "windows_emitted": 2, "late_dropped": 1},
        1: {"records_in": 5, "windows_emitted": 1, "late_updated": 2},
    }
    metrics.record_pipeline_step("acme", "p1", 3, progress, 0.05)
    tags = {"tenant": "acme", "pipeline": "p1"}
    assert value(backend, "esb_pipeline_records_in", **tags) == 15
    assert value(backend, "esb_pipeline_records_out", **tags) == 3
    assert value(backend, "esb_pipeline_windows_emitted", **tags) == 3
    assert value(backend, "esb_pipeline_late_events", **tags, outcome="dropped") == 1
    assert value(backend, "esb_pipeline_late_events", **tags, outcome="updated") == 2
    metrics.record_deliveries("acme", "sub1", {"delivered": 4, "retried": 0})
    sub = {"tenant": "acme", "subscription": "sub1"}
    assert value(backend, "esb_webhook_deliveries", **sub, outcome="delivered") == 4
    assert ("esb_webhook_deliveries", tuple(sorted({**sub, "outcome": "retried"}.items()))) not in (
        backend.values
    )


class FakeConsumer:
    def __init__(self, positions: dict[int, int], high: int) -> None:
        self.positions, self.high = positions, high

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", p) for p in self.positions]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition("t", tp.partition, self.positions[tp.partition]) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached  # no broker round trip on the consume loop
        return 0, self.high


def test_lag_is_high_watermark_minus_position_at_most_once_a_second(
    backend: metrics.FakeBackend,
) -> None:
    reporter = metrics.LagReporter("acme", "g")
    reporter.maybe_report(FakeConsumer({0: 7, 1: -1001}, high=10))
    tags = {"tenant": "acme", "group": "g", "topic": "t"}
    assert value(backend, "esb_consumer_lag", **tags, partition="0") == 3
    assert value(backend, "esb_consumer_lag", **tags, partition="1") == 10  # nothing consumed
    reporter.maybe_report(FakeConsumer({0: 10, 1: 10}, high=10))  # within the second: skipped
    assert value(backend, "esb_consumer_lag", **tags, partition="0") == 3


NODE_A = """# HELP ray_esb_events_published_total Events.
# TYPE ray_esb_events_published_total counter
ray_esb_events_published_total{NodeAddress="10.0.0.1",tenant="acme",stream="s1"} 5.0
ray_esb_events_published_total{NodeAddress="10.0.0.1",tenant="other",stream="s9"} 9.0
# HELP ray_esb_publish_duration_seconds Time.
# TYPE ray_esb_publish_duration_seconds histogram
ray_esb_publish_duration_seconds_bucket{tenant="acme",stream="s1",le="0.01"} 2.0
ray_esb_publish_duration_seconds_bucket{tenant="acme",stream="s1",le="0.1"} 4.0
ray_esb_publish_duration_seconds_bucket{tenant="acme",stream="s1",le="+Inf"} 4.0
ray_esb_publish_duration_seconds_count{tenant="acme",stream="s1"} 4.0
ray_esb_publish_duration_seconds_sum{tenant="acme",stream="s1"} 0.1
# HELP ray_node_cpu_count Ray's own.
# TYPE ray_node_cpu_count gauge
ray_node_cpu_count{NodeAddress="10.0.0.1"} 2.0
"""
NODE_B = """# HELP ray_esb_events_published_total Events.
# TYPE ray_esb_events_published_total counter
ray_esb_events_published_total{NodeAddress="10.0.0.2",tenant="acme",stream="s1"} 3.0
# HELP ray_esb_consumer_lag Lag.
# TYPE ray_esb_consumer_lag gauge
ray_esb_consumer_lag{tenant="acme",group="g",topic="t",partition="0"} 4.0
"""


def families() -> list[Any]:
    return exposition.esb_families([NODE_A, NODE_B, ""])


def test_exposition_keeps_esb_families_renamed_one_per_name() -> None:
    text = exposition.render(families()).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(parsed) == {
        "esb_events_published",
        "esb_publish_duration_seconds",
        "esb_consumer_lag",
    }
    published = parsed["esb_events_published"]
    assert published.type == "counter"
    nodes = {s.labels["NodeAddress"] for s in published.samples if s.labels["tenant"] == "acme"}
    assert nodes == {"10.0.0.1", "10.0.0.2"}  # series stay apart: nothing summed here
    assert "ray_" not in text


def test_tenant_view_sums_nodes_estimates_percentiles_and_sees_only_its_tenant() -> None:
    view = tenant_view(families(), "acme", now_s=100.0)
    (stream,) = view.streams
    assert (stream.stream_id, stream.events_published_total) == ("s1", 8.0)
    assert stream.publish_latency_ms.p50 == pytest.approx(10.0)  # rank 2 of 4: bucket 0.01
    assert stream.publish_latency_ms.p99 is not None and 10 < stream.publish_latency_ms.p99 <= 100
    assert [(lag.group, lag.partition, lag.lag) for lag in view.consumer_lag] == [("g", 0, 4.0)]
    assert tenant_view(families(), "nobody").streams == []
    later = view.model_copy(
        update={
            "collected_at": view.collected_at + timedelta(seconds=2),
            "streams": [stream.model_copy(update={"events_published_total": 18.0})],
        }
    )
    assert with_rates(later, view).streams[0].events_per_s == 5.0
