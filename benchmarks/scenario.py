"""What scenarios share: the run's context (stack, API client, sizes, progress), runner
subprocesses, and the result shape the report, JSON and charts are made from."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.config import Config
from benchmarks.measure import Runs, Sample, Target
from benchmarks.procstat import cpu_seconds
from benchmarks.progress import Progress
from benchmarks.runners.common import AUTH_ENV
from benchmarks.stack import BenchStack
from cluster.services.event_store import EventStoreService
from cluster.services.streaming import EventStreamingService

ROOT = Path(__file__).resolve().parents[1]
RUNNER_TIMEOUT_S = 900


@dataclass
class ScenarioResult:
    key: str  # "window-throughput", ...
    title: str
    status: str = "measured"  # measured | not measurable | failed
    systems: list[Runs] = field(default_factory=list)
    ratios: dict[str, float | None] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    latencies_ms: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def system(self, name: str) -> Runs | None:
        return next((r for r in self.systems if r.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "systems": [r.to_dict() for r in self.systems],
            "ratios": self.ratios,
            "targets": [t.to_dict() for t in self.targets],
            "latencies_ms": self.latencies_ms,
            "notes": self.notes,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        return cls(
            key=data["key"],
            title=data["title"],
            status=data["status"],
            systems=[Runs.from_dict(r) for r in data["systems"]],
            ratios=dict(data["ratios"]),
            targets=[Target.from_dict(t) for t in data["targets"]],
            latencies_ms=dict(data["latencies_ms"]),
            notes=list(data["notes"]),
            extra=dict(data["extra"]),
        )


@dataclass
class Context:
    bench: BenchStack
    http: httpx.Client
    config: Config
    progress: Progress
    work_dir: Path  # scratch files (results of runners), removed with the run
    quix_python: Path | None
    bytewax_python: Path | None = None  # the Bytewax venv's (benchmarks/peers.py)

    def service_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the broker and Redis (shared by every system measured)."""
        found: dict[str, float] = {}
        for name in ("kafka", "redis"):
            pid = self.bench.pid(name)
            value = cpu_seconds(pid) if pid else None
            if value is not None:
                found[name] = value
        return found

    def settle_indexer(self, deadline_s: float = 600.0) -> None:
        """Wait until the event store's indexer has caught up with every stream, so a latency
        trial measures the front door, not the indexing backlog of the trials before it (the
        indexer reads about 10k events/s on this machine; a trial writes up to a million)."""
        started = time.monotonic()

        async def caught_up() -> bool:
            streams = await EventStreamingService(self.bench.settings).list_streams()
            return await EventStoreService(self.bench.settings).wait_indexed(streams, deadline_s)

        done = asyncio.run(caught_up())
        state = "caught up" if done else f"still behind after {deadline_s:.0f}s"
        self.progress(f"event-store indexer {state} ({time.monotonic() - started:.0f}s waited)")

    def runner_env(self) -> dict[str, str]:
        """The environment of runner subprocesses: ours, plus the API token."""
        return {**os.environ, AUTH_ENV: self.http.headers["authorization"]}

    def run_runner(self, args: list[str], python: Path | None = None) -> dict[str, Any]:
        """Run a runner subprocess and parse the JSON line it prints last."""
        cmd = [str(python or sys.executable), *args]
        done = subprocess.run(
            cmd,
            cwd=ROOT,
            env=self.runner_env(),
            capture_output=True,
            text=True,
            timeout=RUNNER_TIMEOUT_S,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed (exit {done.returncode}): {done.stderr[-1500:]}"
            )
        parsed: dict[str, Any] = orjson.loads(lines[-1])
        return parsed

    def runner_sample(
        self, args: list[str], events: int, python: Path | None = None, **extra: Any
    ) -> tuple[Sample, dict[str, Any]]:
        """A runner's report as a Sample (with broker/Redis CPU during it in `extra`)."""
        before = self.service_cpu()
        report = self.run_runner(args, python)
        after = self.service_cpu()
        first = report.get("first_record_s")
        processing = report["seconds"] - first if first is not None else None
        sample = Sample(
            events=events,
            seconds=float(report["seconds"]),
            cpu_s=float(report["cpu_s"]),
            peak_rss_bytes=int(report["peak_rss_bytes"]),
            extra={
                "processing_s": processing,
                "processing_events_per_s": events / processing if processing else None,
                **{f"{k}_cpu_s": after[k] - before[k] for k in before},
                **extra,
            },
        )
        return sample, report

    def runner_trial(
        self,
        runs: Runs,
        label: str,
        args: list[str],
        events: int,
        python: Path | None = None,
        check: Callable[[Path, Sample], str | None] | None = None,
    ) -> None:
        """One trial of a runner into `runs`. With `check`, the runner writes its results to a
        scratch file (--results-out) and `check(file, sample)` answers what is wrong with them
        (None: nothing), noted in `runs.failures`. A failed trial is noted, never raised."""
        self.progress(f"{runs.name}, {label} ...")
        out = self.work_dir / f"{uuid.uuid4().hex}.ndjson"
        try:
            with_out = [*args, "--results-out", str(out)] if check else args
            sample, report = self.runner_sample(with_out, events, python)
            problem = check(out, sample) if check else None
            if problem:
                runs.failures.append(f"{label}: {problem}")
            if report["events"] < events:
                runs.failures.append(f"{label}: read {report['events']} of {events} events")
            runs.add(sample)
            self.progress(f"{runs.name}, {label}: {sample.rate:,.0f} events/s")
        except Exception as exc:
            runs.fail(label, exc, self.progress)
        finally:
            out.unlink(missing_ok=True)
