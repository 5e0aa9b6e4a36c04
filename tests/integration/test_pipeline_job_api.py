"""Pipelines on the real broker, Redis and Ray, through the CLI and the API: submit, output
topic and live results over the WebSocket; invalid specs are 422."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from websockets.sync.client import connect

from cluster.settings import Settings
from tests.integration.conftest import create_stream, read_topic
from tests.integration.pipeline_helpers import (
    TENANT,
    close_all_windows,
    make_events,
    oracle,
    publish,
    spec_for,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def test_cli_submit_output_topic_and_live_results(
    stack: Settings, http: httpx.Client, unique: str, tmp_path: Path
) -> None:
    stream = create_stream(http, TENANT, f"cli-{unique}", partitions=2)
    spec = {**spec_for(f"cli-{unique}"), "sinks": {"kafka_topic": f"totals-{unique}"}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))  # source stream by name
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "REDIS_URL": stack.redis,
        "RAY_DASHBOARD_URL": stack.jobs_url,
    }

    def esb(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cluster.cli.main", "pipelines", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    pipeline_id = esb("submit", str(tmp_path / "spec.yaml"), "--tenant", TENANT).split()[2]
    wait_for(lambda: "state: RUNNING" in esb("status", pipeline_id), "the job to run")

    ws_url = f"{stack.api_url.replace('http', 'ws')}/ws/pipelines/{pipeline_id}"
    ws_url += f"?access_token={http.headers['authorization'].split()[1]}"  # as browsers send it
    with connect(ws_url, open_timeout=30) as live:
        publish(http, stream["stream_id"], make_events(1_000, seed=8))
        close_all_windows(stack, stream["kafka_topic"], 2)
        expected = oracle(stack, stream["kafka_topic"])
        pushed: dict[tuple[str, int], tuple[int, int]] = {}
        end = time.monotonic() + 180
        while not expected.items() <= pushed.items() and time.monotonic() < end:
            for r in orjson.loads(live.recv(timeout=180)):
                pushed[(r["key"], r["window_start_ms"])] = (r["orders"], r["revenue"])
        assert expected.items() <= pushed.items()

    out = read_topic(stack, f"esb.{TENANT}.totals-{unique}", expected=len(expected))
    latest = {}
    for record in out:
        r = orjson.loads(record.value())
        assert record.key() == f"{r['key']}|{r['window_start_ms']}|{r['window_end_ms']}".encode()
        latest[(r["key"], r["window_start_ms"])] = (r["orders"], r["revenue"])
    assert {w: v for w, v in latest.items() if w[0] != "sentinel"} == expected

    assert pipeline_id in esb("list", "--tenant", TENANT)
    esb("stop", pipeline_id)
    assert "state: STOPPED" in esb("status", pipeline_id)


def test_bad_pipeline_specs_are_422(http: httpx.Client, unique: str) -> None:
    stream = create_stream(http, TENANT, f"spec-{unique}")
    bad = spec_for(stream["stream_id"], aggregations=[{"name": "s", "op": "sum"}])
    answer = http.post("/api/v1/pipelines", json={"tenant_id": TENANT, "spec": bad})
    assert answer.status_code == 422 and "sum needs a field" in answer.text
    unknown = spec_for("no-such-stream")
    answer = http.post("/api/v1/pipelines", json={"tenant_id": TENANT, "spec": unknown})
    assert answer.status_code == 404
    assert http.get("/api/v1/pipelines/nope").status_code == 404
    assert http.get("/api/v1/pipelines/nope/results").status_code == 404
