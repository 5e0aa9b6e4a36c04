"""Scenario 5, scaling: the window-throughput pipeline with 1, 2 and 4 partition-owner actors on
the same pre-loaded 4-partition topic (the owners= parameter of submit_pipeline). The point for
scenario 1's owner count is scenario 1's own trials, not run twice.

On this 2-core machine more owners can only help while one owner leaves a core idle; the chart
shows where that stops. Scaling over Ray nodes is in benchmarks/scenarios/ray_nodes.py.
"""

from __future__ import annotations

from benchmarks.measure import Runs, ratio
from benchmarks.pipeline_run import timed_pipeline_trial
from benchmarks.scenario import Context, ScenarioResult
from benchmarks.scenarios.window_throughput import OURS, LoadedTopic


def run(ctx: Context, loaded: LoadedTopic, window: ScenarioResult) -> ScenarioResult:
    config, n = ctx.config, loaded.workload.count
    result = ScenarioResult("scaling", "Partition-owner actors on one node (4 partitions)")
    by_owners: dict[int, Runs] = {}
    for owners in config.scaling_owners:
        name = f"{owners} owner{'s' if owners > 1 else ''}"
        runs = Runs(name, f"pipeline job with owners={owners}")
        reused = window.system(OURS)
        if owners == config.pipeline_owners and reused is not None:
            runs.samples = list(reused.samples)
            runs.failures = list(reused.failures)
            runs.notes.append("the window-throughput scenario's trials")
        by_owners[owners] = runs
    for trial in range(1, config.trials + 1):
        for owners, runs in by_owners.items():
            if owners == config.pipeline_owners and window.system(OURS) is not None:
                continue
            label = f"owners={owners}, trial {trial}/{config.trials}"
            ctx.progress(f"scaling, {label} ...")
            try:
                sample, ok = timed_pipeline_trial(
                    ctx.bench,
                    ctx.http,
                    loaded.stream_id,
                    owners,
                    loaded.expected,
                    config.partitions,
                    n,
                    ctx.progress.live,
                    ctx.service_cpu,
                )
                runs.add(sample)
                if not ok:
                    runs.failures.append(f"{label}: results differ or lag > 0")
                ctx.progress(f"scaling, {label}: {sample.rate:,.0f} events/s")
            except Exception as exc:
                runs.fail(label, exc, ctx.progress)
    result.systems = list(by_owners.values())
    one = by_owners[min(by_owners)]
    for owners, runs in by_owners.items():
        if owners != min(by_owners):
            result.ratios[f"{runs.name} / {one.name}"] = ratio(
                runs.median_rate(), one.median_rate()
            )
            result.ratios[f"{runs.name} / {one.name} (steady state)"] = ratio(
                runs.median_extra("processing_events_per_s"),
                one.median_extra("processing_events_per_s"),
            )
    result.extra = {"events": n, "partitions": config.partitions, "cores": 2}
    return result
