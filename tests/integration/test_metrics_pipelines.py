"""A pipeline's metrics in `GET /metrics` (prometheus-client's parser): records in equal the
records on the topic, windows are emitted once the watermark passes them, and the owners' lag
comes back to 0."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cluster import naming
from cluster.settings import Settings
from tests.integration.conftest import create_stream
from tests.integration.metrics_helpers import scrape, total
from tests.integration.pipeline_helpers import (
    TENANT,
    close_all_windows,
    make_events,
    publish,
    submit,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def test_pipeline_records_windows_and_lag(stack: Settings, http: httpx.Client, unique: str) -> None:
    stream = create_stream(http, TENANT, f"pm-{unique}", partitions=2)
    pipeline_id = submit(http, stream["stream_id"], owners=1)
    publish(http, stream["stream_id"], make_events(300, seed=7))
    close_all_windows(stack, stream["kafka_topic"], 2)
    on_topic = 300 + 2  # and the two sentinels
    labels = {"tenant": TENANT, "pipeline": pipeline_id}

    def counted() -> dict[str, list[Any]] | None:
        samples = scrape(stack)
        records_in = total(samples, "esb_pipeline_records_in_total", **labels)
        windows = total(samples, "esb_pipeline_windows_emitted_total", **labels)
        lags = [
            s.value
            for s in samples.get("esb_consumer_lag", [])
            if s.labels.get("group") == naming.pipeline_group(TENANT, pipeline_id)
        ]
        done = records_in == on_topic and windows > 0 and len(lags) == 2 and not any(lags)
        return samples if done else None

    samples = wait_for(counted, "the pipeline's records, windows and lag 0 in /metrics", 240)
    assert total(samples, "esb_pipeline_records_out_total", **labels) > 0
    assert total(samples, "esb_pipeline_step_duration_seconds_count", **labels) > 0
    http.delete(f"/api/v1/pipelines/{pipeline_id}")
