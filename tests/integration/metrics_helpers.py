"""Helpers for the metrics tests (test_metrics*.py): `GET /metrics` on METRICS_PORT, read with
prometheus-client's own text parser, and PromQL-like sums over its samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cluster.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def scrape(settings: Settings) -> dict[str, list[Any]]:
    """Samples by sample name, from METRICS_PORT (no token: the scrape convention)."""
    answer = httpx.get(f"http://{settings.api_host}:{settings.metrics_port}/metrics", timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "metrics.txt").write_text(answer.text)  # the last scrape, for a look
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(answer.text):
        assert family.name.startswith("esb_"), family.name
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def total(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    """Summed over what the labels do not fix (nodes, processes), as PromQL's sum() would."""
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )
