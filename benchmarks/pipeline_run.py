"""Our pipeline, driven the way a user drives it: streams and pipelines over the HTTP API, then
the clock stops when the last window result is in Redis (what GET .../results serves).

Measured per trial: submit -> last result (the user's view, Ray job start included), first record
-> last result (processing only), CPU seconds and peak RSS of the partition-owner actor processes
(found through Ray, CPU counted from when each is first seen), and the broker's and Redis's CPU.
After the clock stops the trial checks lag 0 over the API and reads every result back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import polars as pl
from redis import Redis

from benchmarks.datagen import TENANT, WINDOW_MS, normalise
from benchmarks.measure import Sample
from benchmarks.procstat import CpuMeter, alive
from benchmarks.stack import BenchStack
from cluster import naming
from cluster.naming import owner_name

POLL_S = 0.02
DEADLINE_S = 600.0
STATUS_EVERY_S = 2.0
ENDED = {"FAILED", "STOPPED", "SUCCEEDED"}


# Streams that only feed pipelines skip the event store's per-event index, as a user's
# high-volume analytic stream would (StreamConfig.event_store); the front-door scenarios keep it.
ANALYTIC = {"event_store": False}


def create_stream(http: httpx.Client, name: str, partitions: int, **config: Any) -> tuple[str, str]:
    """A stream in the bench tenant (more StreamConfig fields in `config`, e.g. `schemas`);
    answers (stream_id, kafka topic)."""
    body = {
        "stream_name": name,
        "topic_name": name,
        "source_capability": "bench",
        "tenant_id": TENANT,
        "partitions": partitions,
        "replication_factor": 1,
        **config,
    }
    answer = http.post("/api/v1/streams", json=body)
    answer.raise_for_status()
    created = answer.json()
    return str(created["stream_id"]), str(created["kafka_topic"])


def window_spec(stream_id: str, size_ms: int = WINDOW_MS) -> dict[str, Any]:
    """Tumbling count and sum per key; every event type (the peers do not filter either)."""
    return {
        "pipeline_name": f"bench-{uuid.uuid4().hex[:6]}",
        "source_stream": stream_id,
        "event_types": ["*"],
        "fields": {"amount": "int"},
        "window": {"type": "tumbling", "size_ms": size_ms},
        "aggregations": [
            {"name": "orders", "op": "count"},
            {"name": "revenue", "op": "sum", "field": "amount"},
        ],
    }


class PipelineRun:
    """One submitted pipeline: its id, owner processes, progress and results."""

    def __init__(self, bench: BenchStack, http: httpx.Client, spec: dict[str, Any], owners: int):
        self.bench, self.http = bench, http
        self.redis = Redis.from_url(bench.settings.redis)
        self.owners = owners
        self.cpu = CpuMeter()
        self.submitted_at = time.perf_counter()
        answer = http.post(
            "/api/v1/pipelines", json={"tenant_id": TENANT, "owners": owners, "spec": spec}
        )
        answer.raise_for_status()
        self.pipeline_id = str(answer.json()["pipeline_id"])
        self.base = naming.pipeline_key(self.pipeline_id)
        self.owners_ready_s: float | None = None
        self._stop = threading.Event()
        self._finder = threading.Thread(target=self._find_owners, daemon=True)
        self._finder.start()

    def _find_owners(self) -> None:
        """Watch each owner's process as soon as Ray knows it (until all are found)."""
        ray = self.bench.connect_ray()
        found: set[int] = set()
        while len(found) < self.owners and not self._stop.is_set():
            for index in set(range(self.owners)) - found:
                try:
                    actor = ray.get_actor(owner_name(self.pipeline_id, index), namespace="esb")
                    self.cpu.watch(int(ray.get(actor.pid.remote(), timeout=30)))
                    found.add(index)
                except Exception:  # not created yet (ValueError) or still starting
                    continue
            time.sleep(POLL_S)

    def records_in(self, partitions: int) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for p in range(partitions):
            pipe.hget(f"{self.base}:progress:{p}", "records_in")
        return sum(int(v or 0) for v in pipe.execute())

    def result_count(self) -> int:
        return int(self.redis.hlen(f"{self.base}:res"))

    def wait_results(
        self, expected: int, partitions: int, live: Callable[[str], None], total_events: int
    ) -> tuple[float, float | None]:
        """Poll until `expected` results exist; answers (seconds since submit, steady-state
        events/s)."""
        return self._wait(partitions, live, total_events, expected)

    def wait_committed(
        self, partitions: int, live: Callable[[str], None], total_events: int
    ) -> tuple[float, float | None]:
        """Poll until the owners committed all `total_events` records (results are committed
        with them); answers (seconds since submit, steady-state events/s)."""
        return self._wait(partitions, live, total_events, None)

    def _wait(
        self,
        partitions: int,
        live: Callable[[str], None],
        total_events: int,
        expected: int | None,
    ) -> tuple[float, float | None]:
        """Until `expected` results exist (None: every record is committed). Progress counters
        move only at commits, so the steady state is measured from the first poll that saw
        records committed: (records after it) / (time after it)."""
        first: float | None = None
        first_count = 0
        end = time.perf_counter() + DEADLINE_S
        next_status = time.perf_counter() + STATUS_EVERY_S
        while time.perf_counter() < end:
            now = time.perf_counter()
            if now >= next_status:
                self._check_running()
                next_status = now + STATUS_EVERY_S
            count = self.result_count() if expected is not None else 0
            consumed = self.records_in(partitions)
            if first is None and consumed:
                first, first_count = now, consumed
            if self.owners_ready_s is None and len(self.cpu.pids) >= self.owners:
                self.owners_ready_s = now - self.submitted_at
            done = consumed >= total_events if expected is None else count >= expected
            if done:
                self.cpu.sample()
                rate = None
                if first is not None and now > first and total_events > first_count:
                    rate = (total_events - first_count) / (now - first)
                return now - self.submitted_at, rate
            progress = f"pipeline {self.pipeline_id}: {consumed:,}/{total_events:,} records"
            live(progress + (f", {count:,}/{expected:,} results" if expected is not None else ""))
            time.sleep(POLL_S)
        raise TimeoutError(f"pipeline {self.pipeline_id}: not done in {DEADLINE_S}s")

    def _check_running(self) -> None:
        """Fail fast when the Ray job ended (a failed job would otherwise wait out DEADLINE_S)."""
        state = self.http.get(f"/api/v1/pipelines/{self.pipeline_id}").json().get("state")
        if state in ENDED:
            raise RuntimeError(f"pipeline {self.pipeline_id}: its Ray job is {state}")

    def lag(self) -> int:
        status = self.http.get(f"/api/v1/pipelines/{self.pipeline_id}").json()
        return int(status["progress"]["lag"])

    def results(self) -> pl.DataFrame:
        docs = [orjson.loads(v) for v in self.redis.hvals(f"{self.base}:res")]
        return normalise(pl.DataFrame(docs).select("key", "window_start_ms", "orders", "revenue"))

    def stop(self, deadline_s: float = 60.0) -> list[int]:
        """Stop the job and wait until its owner processes are gone; answers any left alive."""
        self._stop.set()
        self._finder.join(timeout=5)
        self.http.delete(f"/api/v1/pipelines/{self.pipeline_id}")
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and any(alive(p) for p in self.cpu.pids):
            time.sleep(0.2)
        self.redis.close()
        return [p for p in self.cpu.pids if alive(p)]


def timed_pipeline_trial(
    bench: BenchStack,
    http: httpx.Client,
    stream_id: str,
    owners: int,
    expected: pl.DataFrame,
    partitions: int,
    total_events: int,
    live: Callable[[str], None],
    service_cpu: Callable[[], dict[str, float]],
) -> tuple[Sample, bool]:
    """Submit, wait for the last result, check lag and results; answers (sample, results equal)."""
    before = service_cpu()
    run = PipelineRun(bench, http, window_spec(stream_id), owners)
    try:
        seconds, steady = run.wait_results(expected.height, partitions, live, total_events)
        after = service_cpu()
        cpu, peak = run.cpu.used(), run.cpu.peak_rss()
        lag = run.lag()
        equal = run.results().equals(expected)
        extra = {
            "processing_events_per_s": steady,
            "owners_ready_s": run.owners_ready_s,
            "owners": owners,
            "owner_pids_found": len(run.cpu.pids),
            "lag_at_end": lag,
            "results_equal": equal,
            **{f"{k}_cpu_s": after[k] - before[k] for k in before},
        }
        return Sample(total_events, seconds, cpu, peak, extra), equal and lag == 0
    finally:
        left = run.stop()
        if left:
            raise RuntimeError(f"owner processes {left} still alive after stopping the pipeline")
