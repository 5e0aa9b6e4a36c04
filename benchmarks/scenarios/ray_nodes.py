"""Scenario 5b, Ray nodes on this machine: the window-throughput pipeline with 4 owners on the
head alone, then with 1 and 2 worker nodes joined (cluster.stack.ray_worker: `ray start
--address <head> --num-cpus 1 --block`, each in its own session, stopped by its pid).

Every node shares the same 2 cores, so the ratio to one node shows what spreading over nodes
costs (cross-process scheduling, one consumer per owner on each node), not more CPU; each trial
records how the job's coordinator spread the owners (its `placement`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from benchmarks.measure import Runs, Sample, ratio
from benchmarks.pipeline_run import PipelineRun, window_spec
from benchmarks.scenario import Context, ScenarioResult
from benchmarks.scenarios.window_throughput import LoadedTopic
from cluster.stack import ray_worker
from cluster.stack.processes import ProcessRecord

NODES = (1, 2, 3)
OWNERS = 4
TITLE = "Window throughput on 1, 2 and 3 Ray nodes of one machine"


def run(ctx: Context, loaded: LoadedTopic | None) -> ScenarioResult:
    result = ScenarioResult("ray-nodes", TITLE)
    by_nodes = {
        n: Runs(f"{n} node{'s' if n > 1 else ''}", f"{OWNERS} owners, head + {n - 1} worker(s)")
        for n in NODES
    }
    result.systems = list(by_nodes.values())
    if loaded is None:
        result.status = "not measurable"
        result.notes.append("needs the pre-loaded window-throughput topic")
        return result
    workers: list[ProcessRecord] = []
    spreads: dict[int, list[list[int]]] = {n: [] for n in NODES}
    try:
        for n, runs in by_nodes.items():
            while len(workers) < n - 1:
                workers.append(_join(ctx, len(workers) + 1))
            for trial in range(1, ctx.config.trials + 1):
                label = f"{runs.name}, trial {trial}/{ctx.config.trials}"
                ctx.progress(f"ray-nodes, {label} ...")
                try:
                    sample, spread = _trial(ctx, loaded)
                except Exception as exc:
                    runs.fail(label, exc, ctx.progress)
                    continue
                runs.add(sample)
                spreads[n].append(spread)
                ctx.progress(
                    f"ray-nodes, {label}: {sample.rate:,.0f} events/s, owners per node {spread}"
                )
    finally:
        for worker in workers:
            ray_worker.stop(worker)
    one = by_nodes[1]
    for n, runs in by_nodes.items():
        if n > 1:
            result.ratios[f"{runs.name} / {one.name}"] = ratio(
                runs.median_rate(), one.median_rate()
            )
    result.extra = {"owners_per_node": {str(n): s for n, s in spreads.items()}}
    result.notes.append(
        "Owners per node in each trial: "
        + "; ".join(f"{n} node(s): {s}" for n, s in spreads.items() if s)
        + ". Every node shares the same 2 cores: more nodes add no CPU here."
    )
    return result


def _join(ctx: Context, index: int) -> ProcessRecord:
    settings = ctx.bench.settings
    return ray_worker.join(settings, str(settings.ray_address), index, progress=ctx.progress)


def _trial(ctx: Context, loaded: LoadedTopic) -> tuple[Sample, list[int]]:
    before = ctx.service_cpu()
    run = PipelineRun(ctx.bench, ctx.http, window_spec(loaded.stream_id), OWNERS)
    try:
        seconds, steady = run.wait_results(
            loaded.expected.height, ctx.config.partitions, ctx.progress.live, loaded.workload.count
        )
        spread = _spread(ctx, run.pipeline_id)
        after = ctx.service_cpu()
        sample = Sample(
            loaded.workload.count,
            seconds,
            run.cpu.used(),
            run.cpu.peak_rss(),
            {
                "processing_events_per_s": steady,
                "results_equal": run.results().equals(loaded.expected),
                "owners_per_node": spread,
                **{f"{k}_cpu_s": after[k] - before[k] for k in before},
            },
        )
        return sample, spread
    finally:
        run.stop()


def _spread(ctx: Context, pipeline_id: str) -> list[int]:
    """Owners per node, most first, from the pipeline's placement (GET /api/v1/pipelines/{id})."""
    status: dict[str, Any] = ctx.http.get(f"/api/v1/pipelines/{pipeline_id}").json()
    return sorted(Counter(o["node_id"] for o in status["placement"]).values(), reverse=True)
