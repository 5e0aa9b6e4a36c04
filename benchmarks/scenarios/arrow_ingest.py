"""Scenario 2, arrow-ingest: the SDK publishing Arrow-batched records (EventPublishingService.
publish_arrow, about 10,000 events per record) into a fresh stream while a pipeline (the
window-throughput spec, 2 owners) is running; events/s from the first publish to the last window
result in Redis, results checked against the oracle. Publishing alone is reported beside it.
"""

from __future__ import annotations

import time
import uuid

from benchmarks.datagen import make_workload
from benchmarks.measure import Runs, Sample, Target, ratio
from benchmarks.pipeline_run import ANALYTIC, PipelineRun, create_stream, window_spec
from benchmarks.scenario import Context, ScenarioResult
from benchmarks.scenarios.end_to_end import wait_owners

THROUGH, PUBLISH = "SDK publish_arrow -> window results", "SDK publish_arrow alone"
EVENTS_PER_RECORD = 10_000


def run(ctx: Context) -> ScenarioResult:
    config = ctx.config
    result = ScenarioResult("arrow-ingest", "SDK Arrow-batched records through to window results")
    through = Runs(
        THROUGH,
        f"publish {config.window_events:,} events in frames of "
        f"{EVENTS_PER_RECORD * config.partitions:,} (~{EVENTS_PER_RECORD:,} "
        "per record), pipeline running with 2 owners",
    )
    alone = Runs(PUBLISH, "the publishing process only (same runs), until the last broker ack")
    result.systems = [through, alone]
    for trial in range(1, config.trials + 1):
        label = f"trial {trial}/{config.trials}"
        ctx.progress(f"arrow-ingest, {label} ...")
        try:
            sample, publish_sample = _trial(ctx)
        except Exception as exc:
            through.fail(label, exc, ctx.progress)
            continue
        through.add(sample)
        alone.add(publish_sample)
        if not sample.extra["results_equal"]:
            through.failures.append(f"{label}: results differ from the oracle")
        ctx.progress(f"arrow-ingest, {label}: {sample.rate:,.0f} events/s through to results")
    result.ratios = {
        "through to results / publishing alone": ratio(through.median_rate(), alone.median_rate())
    }
    result.targets = [
        Target(
            "arrow-ingest",
            ">= 1M events/s on 2 cores (through to results)",
            through.median_rate(),
            1_000_000,
            unit="events/s",
        )
    ]
    return result


def _trial(ctx: Context) -> tuple[Sample, Sample]:
    config, settings = ctx.config, ctx.bench.settings
    stream_id, _topic = create_stream(
        ctx.http, f"arrow-{uuid.uuid4().hex[:8]}", config.partitions, **ANALYTIC
    )
    workload = make_workload(config.window_events, config.partitions)
    expected = workload.expected()
    run = PipelineRun(ctx.bench, ctx.http, window_spec(stream_id), owners=2)
    try:
        wait_owners(run, 2)
        before = ctx.service_cpu()
        report = ctx.run_runner(
            [
                "-m",
                "benchmarks.runners.arrow_publish",
                "--bootstrap",
                settings.kafka_bootstrap,
                "--redis",
                settings.redis,
                "--stream-id",
                stream_id,
                "--events",
                str(workload.count),
                "--partitions",
                str(config.partitions),
                "--base-ms",
                str(workload.base_ms),
                "--frame",
                str(EVENTS_PER_RECORD * config.partitions),
            ]
        )
        run.wait_results(expected.height, config.partitions, ctx.progress.live, workload.count)
        done_wall = time.time()
        after = ctx.service_cpu()
        equal = run.results().equals(expected)
        n = workload.count
        through = Sample(
            n,
            done_wall - report["began_wall"],
            run.cpu.used(),
            run.cpu.peak_rss(),
            {
                "results_equal": equal,
                "lag_at_end": run.lag(),
                "records": report["records"],
                "publisher_cpu_s": report["cpu_s"],
                **{f"{k}_cpu_s": after[k] - before[k] for k in before},
            },
        )
        alone = Sample(n, report["seconds"], report["cpu_s"], report["peak_rss_bytes"])
        return through, alone
    finally:
        left = run.stop()
        if left:
            raise RuntimeError(f"owner processes {left} still alive after stopping")
