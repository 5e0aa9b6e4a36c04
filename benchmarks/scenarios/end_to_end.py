"""Scenario 4, end-to-end latency: an open-loop publisher through the SDK at a fixed rate (event
time = due send time) into a stream that has a running pipeline (1 s tumbling count and sum,
2 owners) and a live subscriber (the WebSocket live tail). Two latencies, both measured from the
intended time, so publisher stalls are not hidden:

- publish -> delivery at the live subscriber: arrival at the WebSocket client - due send time;
- window close -> result visible, per (window, partition): the moment the owner's Redis commit
  announced that partition's results on the live channel (`esb:pl:<id>:live`, published by the
  same Lua script that stores them) - the window's end. A window can close no earlier than its
  end (when the first later event is due), so this includes publishing, the broker, consume
  batching, decode, the window operator and the commit.

The trials are consecutive publishing runs against one running pipeline (its start-up is not
part of any latency); each trial leaves out its first e2e_warmup_s seconds. p50/p95/p99/max
over all trials.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import orjson
from redis import Redis

from benchmarks.measure import Runs, Sample, Target, percentile
from benchmarks.pipeline_run import PipelineRun, create_stream, window_spec
from benchmarks.scenario import ROOT, Context, ScenarioResult
from pipelines.envelope import partition_for

NAME = "window close -> result visible"
LIVE = "publish -> live subscriber (WebSocket tail)"
OWNERS = 2


class LiveListener:
    """Receives a pipeline's live-channel messages in a thread, stamped on arrival."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self._pubsub = Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel)
        self.messages: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message is not None:
                self.messages.append((time.time(), message["data"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._pubsub.close()


def _key_and_end(item: Any) -> tuple[str, int]:
    """A live-channel item: a result document (or, from older stores, a
    [member, key, start, end, doc] row)."""
    if isinstance(item, dict):
        return str(item["key"]), int(item["window_end_ms"])
    return str(item[1]), int(item[3])


def window_latencies(
    messages: list[tuple[float, bytes]], partitions: int, from_ms: float, to_ms: float
) -> list[float]:
    """Seconds from window end to the first announcement of each (window, partition) whose
    window ends in [from_ms, to_ms]."""
    first: dict[tuple[int, int], float] = {}
    for received, data in messages:
        for item in orjson.loads(data):
            key, end = _key_and_end(item)
            first.setdefault((end, partition_for(key, partitions)), received)
    return [
        received - end / 1000 for (end, _p), received in first.items() if from_ms <= end <= to_ms
    ]


def summarise(ms: list[float]) -> dict[str, float | int | None]:
    return {
        "samples": len(ms),
        "p50": percentile(ms, 0.5),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": max(ms) if ms else None,
    }


def run(ctx: Context) -> ScenarioResult:
    config = ctx.config
    result = ScenarioResult("end-to-end", "Open-loop publish -> live subscriber, window result")
    windows = Runs(
        NAME,
        f"SDK open loop at {config.e2e_rate:,.0f} events/s, 1,000 keys, "
        f"{config.partitions} partitions, {OWNERS} owners, 1 s tumbling windows",
    )
    live = Runs(LIVE, "the same events at a WebSocket live-tail client")
    result.systems = [windows, live]
    window_ms: list[float] = []
    live_ms: list[float] = []
    stream_id, _topic = create_stream(ctx.http, f"e2e-{uuid.uuid4().hex[:8]}", config.partitions)
    pipeline = PipelineRun(ctx.bench, ctx.http, window_spec(stream_id), owners=OWNERS)
    listener = LiveListener(ctx.bench.settings.redis, f"{pipeline.base}:live")
    try:
        wait_owners(pipeline, OWNERS)
        for trial in range(1, config.trials + 1):
            label = f"trial {trial}/{config.trials}"
            ctx.settle_indexer()
            ctx.progress(
                f"end-to-end, {label}: {config.e2e_seconds:.0f}s at "
                f"{config.e2e_rate:,.0f} events/s ..."
            )
            try:
                latencies, sample, tail = _trial(ctx, pipeline, stream_id, listener)
            except Exception as exc:
                windows.fail(label, exc, ctx.progress)
                continue
            windows.add(sample)
            window_ms += [x * 1000 for x in latencies]
            live.add(tail[0])
            live_ms += [x * 1000 for x in tail[1]]
            if tail[0].extra.get("closed"):
                live.failures.append(f"{label}: {tail[0].extra['closed']}")
            ms = [x * 1000 for x in latencies]
            ctx.progress(
                f"end-to-end, {label}: {len(ms)} windows, p95 {percentile(ms, 0.95) or 0:.0f} "
                f"ms; live tail p95 {percentile([x * 1000 for x in tail[1]], 0.95) or 0:.0f} ms"
            )
    finally:
        listener.close()
        left = pipeline.stop()
        if left:
            windows.failures.append(f"owner processes {left} still alive after stopping")
    result.latencies_ms[NAME] = summarise(window_ms)
    result.latencies_ms[LIVE] = summarise(live_ms)
    result.targets = [
        Target(
            "end-to-end p95, window close -> result",
            "< 10 ms",
            result.latencies_ms[NAME]["p95"],
            10.0,
            higher_is_better=False,
            unit="ms",
        ),
        Target(
            "end-to-end p95, publish -> live subscriber",
            "< 10 ms",
            result.latencies_ms[LIVE]["p95"],
            10.0,
            higher_is_better=False,
            unit="ms",
        ),
    ]
    return result


def _trial(
    ctx: Context, pipeline: PipelineRun, stream_id: str, listener: LiveListener
) -> tuple[list[float], Sample, tuple[Sample, list[float]]]:
    config, settings = ctx.config, ctx.bench.settings
    publish_s = config.e2e_seconds + config.e2e_warmup_s
    subscriber = start_subscriber(ctx, stream_id, publish_s + 5.0)
    try:
        cpu_before = pipeline.cpu.used()
        report: dict[str, Any] = ctx.run_runner(
            [
                "-m",
                "benchmarks.runners.open_loop_producer",
                "--bootstrap",
                settings.kafka_bootstrap,
                "--redis",
                settings.redis,
                "--stream-id",
                stream_id,
                "--rate",
                str(config.e2e_rate),
                "--seconds",
                str(publish_s),
            ]
        )
        time.sleep(1.5)  # the last closed windows' commits
        warm_until = float(report["t0_wall"]) + config.e2e_warmup_s
        last_due = float(report["t0_wall"]) + publish_s
        latencies = window_latencies(
            listener.messages, config.partitions, warm_until * 1000, last_due * 1000
        )
        sample = Sample(
            events=int(report["events"]),
            seconds=float(report["seconds"]),
            cpu_s=pipeline.cpu.used() - cpu_before,
            peak_rss_bytes=pipeline.cpu.peak_rss(),
            extra={
                "windows_measured": len(latencies),
                "publisher_behind_max_s": report.get("behind_max_s"),
                "publisher_cpu_s": report["cpu_s"],
            },
        )
        return latencies, sample, subscriber_result(subscriber, report, warm_until)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()


def start_subscriber(ctx: Context, stream_id: str, seconds: float) -> subprocess.Popen[str]:
    """The live-tail client, connected before publishing starts."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.runners.live_tail",
            "--url",
            ctx.bench.settings.api_url,
            "--stream-id",
            stream_id,
            "--seconds",
            str(seconds),
        ],
        cwd=ROOT,
        env=ctx.runner_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        child.kill()
        _out, err = child.communicate()
        raise RuntimeError(f"the live-tail subscriber did not connect: {err[-500:]}")
    return child


def subscriber_result(
    child: subprocess.Popen[str], publisher: dict[str, Any], warm_until: float
) -> tuple[Sample, list[float]]:
    out, err = child.communicate(timeout=60)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the live-tail subscriber reported nothing: {err[-500:]}")
    report = orjson.loads(lines[-1])
    keep = [latency for sent, latency in report["samples"] if sent >= warm_until]
    sample = Sample(
        events=int(report["events"]),
        seconds=float(publisher["seconds"]),
        cpu_s=float(report["cpu_s"]),
        peak_rss_bytes=int(report["peak_rss_bytes"]),
        extra={
            "closed": report["closed"],
            "received": report["events"],
            "published": publisher["events"],
        },
    )
    return sample, keep


def wait_owners(run: PipelineRun, owners: int, deadline_s: float = 120.0) -> None:
    """Until every owner process is up (then a moment for its consumer to be assigned)."""
    end = time.monotonic() + deadline_s
    while len(run.cpu.pids) < owners:
        if time.monotonic() > end:
            raise TimeoutError("the pipeline's owners did not start")
        time.sleep(0.05)
    time.sleep(1.0)
