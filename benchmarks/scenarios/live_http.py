"""Scenario live-http: events published over HTTP, one per request, open loop at 200 and at
1,000 events/s (each event's event time is its due send time), received by a live subscriber
on the WebSocket tail (/ws/events/{stream}). Latency is arrival - due send time, so neither a
stalled publisher nor a slow server can hide queueing; the first second of each run is left out.
"""

from __future__ import annotations

import time
import uuid

from benchmarks.measure import Runs, Target
from benchmarks.pipeline_run import create_stream
from benchmarks.scenario import Context, ScenarioResult
from benchmarks.scenarios.end_to_end import start_subscriber, subscriber_result, summarise

WARMUP_S = 1.0


def run(ctx: Context) -> ScenarioResult:
    config = ctx.config
    result = ScenarioResult("live-http", "HTTP publish -> live WebSocket subscriber")
    stream_id, _topic = create_stream(ctx.http, f"live-{uuid.uuid4().hex[:8]}", config.partitions)
    for rate in config.live_rates:
        name = f"HTTP publish -> live subscriber at {rate:.0f}/s"
        runs = Runs(name, f"POST /api/v1/events open loop at {rate:.0f}/s, WebSocket tail")
        result.systems.append(runs)
        latencies: list[float] = []
        for trial in range(1, config.trials + 1):
            label = f"trial {trial}/{config.trials}"
            ctx.settle_indexer()
            ctx.progress(f"{name}, {label} ...")
            try:
                subscriber = start_subscriber(ctx, stream_id, config.live_seconds + 5.0)
                warm_until = time.time() + 0.2 + WARMUP_S
                report = ctx.run_runner(
                    [
                        "-m",
                        "benchmarks.runners.http_load",
                        "single",
                        "--url",
                        ctx.bench.settings.api_url,
                        "--stream-id",
                        stream_id,
                        "--rate",
                        str(rate),
                        "--seconds",
                        str(config.live_seconds),
                        "--stamp",
                    ]
                )
                sample, kept = subscriber_result(subscriber, report, warm_until)
            except Exception as exc:
                runs.fail(label, exc, ctx.progress)
                continue
            runs.add(sample)
            latencies += [x * 1000 for x in kept]
            if report.get("failed_requests"):
                runs.failures.append(f"{label}: {report['failed_requests']} failed requests")
        result.latencies_ms[name] = summarise(latencies)
        result.targets.append(
            Target(
                f"p95 HTTP publish -> live subscriber at {rate:.0f}/s",
                "<= 10 ms",
                result.latencies_ms[name]["p95"],
                10.0 + 1e-9,
                higher_is_better=False,
                unit="ms",
            )
        )
    return result
