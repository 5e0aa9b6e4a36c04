"""Prometheus metrics of the whole cluster on the real stack, read with prometheus-client's own
text parser: `GET /metrics` on METRICS_PORT after a known workload (publishes, a webhook
subscription), then the tenant's view on `/api/v1/metrics`."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from cluster.settings import Settings
from tests.conftest import Mint
from tests.integration.conftest import create_stream, refused
from tests.integration.metrics_helpers import ARTIFACTS, scrape, total
from tests.integration.subscription_helpers import (
    TENANT,
    Receiver,
    cancel,
    events,
    publish,
    subscribe,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration
DEADLINE_S = 90  # Ray hands metrics to its agent every 2 s on the test stack


def test_published_counts_histograms_and_lag_back_to_zero(
    stack: Settings, http: httpx.Client, receiver: Receiver, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"metrics-{unique}", partitions=2)
    sid = stream["stream_id"]
    publish(http, sid, events(30, f"a{unique}"))
    publish(http, sid, events(12, f"b{unique}"))
    one = {**events(1, f"c{unique}")[0], "stream_id": sid, "tenant_id": TENANT}
    assert http.post("/api/v1/events", json=one).status_code == 201
    published = 30 + 12 + 1

    def counted() -> dict[str, list[Any]] | None:
        samples = scrape(stack)
        n = total(samples, "esb_events_published_total", tenant=TENANT, stream=sid)
        return samples if n == published else None

    samples = wait_for(counted, f"{published} published events in /metrics", DEADLINE_S)
    assert total(samples, "esb_publish_duration_seconds_count", stream=sid) >= 3
    assert total(samples, "esb_publish_duration_seconds_sum", stream=sid) > 0
    assert total(samples, "esb_events_publish_failed_total", stream=sid) == 0
    assert any(s.labels.get("component") for s in samples["esb_process_resident_memory_bytes"])

    # A subscription consumes everything: its lag is reported, and comes back to 0.
    sub = subscribe(http, stream, webhook_url=receiver.url)
    group = sub["group_id"]
    wait_for(lambda: len(receiver.delivered()) == published, "every event delivered")

    def caught_up() -> dict[str, list[Any]] | None:
        samples = scrape(stack)
        lags = [
            s
            for s in samples.get("esb_consumer_lag", [])
            if s.labels.get("group") == group and s.labels.get("topic") == stream["kafka_topic"]
        ]
        partitions = {s.labels["partition"] for s in lags}
        return samples if partitions == {"0", "1"} and all(s.value == 0 for s in lags) else None

    samples = wait_for(caught_up, "the subscription's lag back to 0", DEADLINE_S)
    delivered = total(
        samples,
        "esb_webhook_deliveries_total",
        subscription=sub["subscription_id"],
        outcome="delivered",
    )
    assert delivered == published

    # The tenant's view: the same figures, JSON by default, Prometheus text when asked.
    answer = http.get("/api/v1/metrics")
    (ARTIFACTS / "tenant-metrics.json").write_text(answer.text)
    view = answer.json()
    assert view["tenant_id"] == TENANT
    mine = {s["stream_id"]: s for s in view["streams"]}[sid]
    assert mine["events_published_total"] == published
    assert mine["publish_latency_ms"]["p50"] is not None
    text = http.get("/api/v1/metrics", params={"format": "prometheus"}).text
    tenants = {
        s.labels.get("tenant")
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert tenants == {TENANT}
    cancel(http, sub)


def test_ws_monitoring_pushes_the_tenant_view_every_second_with_rates(
    stack: Settings, http: httpx.Client, mint: Mint
) -> None:
    base = stack.api_url.replace("http", "ws", 1)
    refused(f"{base}/ws/monitoring", 4401)  # no token
    with connect(f"{base}/ws/monitoring?access_token={mint(TENANT, 'viewer')}") as ws:
        first = orjson.loads(ws.recv(timeout=60))
        second = orjson.loads(ws.recv(timeout=60))
    assert first["tenant_id"] == second["tenant_id"] == TENANT
    assert first["interval_s"] is None and second["interval_s"] > 0  # rates from the second on
    assert {"streams", "consumer_lag", "pipelines", "subscriptions"} <= set(second)
