"""Where the time goes when a target is missed: runs benchmarks/runners/profile_owner.py (the
partition owner's hot path in one process, no Ray, under cProfile) on the pre-loaded topic and
turns its stages into the report's explanation."""

from __future__ import annotations

import uuid
from typing import Any

from benchmarks.pipeline_run import ANALYTIC, create_stream
from benchmarks.scenario import Context
from benchmarks.scenarios.window_throughput import LoadedTopic


def run(ctx: Context, loaded: LoadedTopic) -> dict[str, Any]:
    ctx.progress("profiling the partition owner's hot path in-process (cProfile, no Ray) ...")
    _stream, scratch = create_stream(ctx.http, f"scratch-{uuid.uuid4().hex[:8]}", 4, **ANALYTIC)
    settings = ctx.bench.settings
    report = ctx.run_runner(
        [
            "-m",
            "benchmarks.runners.profile_owner",
            "--bootstrap",
            settings.kafka_bootstrap,
            "--redis",
            settings.redis,
            "--topic",
            loaded.topic,
            "--scratch-topic",
            scratch,
            "--partitions",
            str(ctx.config.partitions),
            "--windows",
            str(loaded.expected.height),
        ]
    )
    profiled = float(report["profiled_s"]) or 1.0
    stages = {k: {"seconds": v, "share": v / profiled} for k, v in report["stages_s"].items()}
    events = loaded.workload.count
    return {
        "what": "PartitionOwner.step in one process (all partitions, no Ray), cProfile",
        "events": events,
        "seconds": report["wall_s"],
        "events_per_s": events / report["wall_s"],
        "cpu_s": report["cpu_s"],
        "profiled_s": profiled,
        "stages": stages,
        "top_self_time": report["top_self_time"],
        "consume_wait": report["consume_wait"],
        "max_batch": report["max_batch"],
    }
