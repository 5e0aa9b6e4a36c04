"""Scenario 5b, two Ray nodes on this machine: a second node (`ray start --address <head>
--num-cpus 1 --block`, in its own session, stopped by its pid) joins the stack's head; then the
window-throughput pipeline runs with 2 owners and we record which node each owner landed on.

Both nodes share the same 2 cores, so throughput cannot grow here; the question is whether the
work spreads over nodes at all.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.measure import Runs
from benchmarks.pipeline_run import PipelineRun, window_spec
from benchmarks.procstat import CpuMeter
from benchmarks.scenario import Context, ScenarioResult
from benchmarks.scenarios.window_throughput import LoadedTopic
from cluster.stack import processes, ray_head
from cluster.stack.processes import ProcessRecord

OWNERS = 2
JOIN_TIMEOUT_S = 90.0


def start_worker_node(ctx: Context) -> ProcessRecord:
    settings = ctx.bench.settings
    cmd = [
        ray_head.ray_executable(), "start", "--block",
        "--address", str(settings.ray_address),
        "--num-cpus", "1",
        "--object-store-memory", str(256 * 1024 * 1024),
        "--dashboard-agent-listen-port", str(processes.free_port()),
        "--disable-usage-stats",
    ]  # fmt: skip
    return processes.spawn(
        cmd,
        address="worker",
        log_path=ctx.bench.state_dir / "ray" / "worker-node.log",
        env=ray_head.head_env(settings),
    )


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def owner_nodes(ctx: Context, run: PipelineRun) -> dict[str, int]:
    """How many of the run's owners each node ("head" or "worker") holds."""
    from ray.util.state import list_actors

    ray = ctx.bench.connect_ray()
    heads = {
        n["NodeID"] for n in alive_nodes(ray) if "node:__internal_head__" in n.get("Resources", {})
    }
    actors = list_actors(
        address=ctx.bench.settings.jobs_url,
        filters=[("state", "=", "ALIVE"), ("class_name", "=", "PartitionOwnerActor")],
        limit=1000,
    )
    counts: dict[str, int] = {}
    for actor in actors:
        if actor.name and run.pipeline_id in actor.name:
            node = "head" if actor.node_id in heads else "worker"
            counts[node] = counts.get(node, 0) + 1
    return counts


def run(ctx: Context, loaded: LoadedTopic | None) -> ScenarioResult:
    result = ScenarioResult("two-nodes", "Two Ray nodes on one machine: where owners run")
    runs = Runs("2 owners, 2 nodes", "window-throughput pipeline on a head + 1 worker node")
    result.systems = [runs]
    if loaded is None:
        result.status = "not measurable"
        result.notes.append("needs the pre-loaded window-throughput topic")
        return result
    ray = ctx.bench.connect_ray()
    ctx.progress("starting a second Ray node on this machine ...")
    node = start_worker_node(ctx)
    placements: list[dict[str, int]] = []
    try:
        end = time.monotonic() + JOIN_TIMEOUT_S
        while len(alive_nodes(ray)) < 2:
            if time.monotonic() > end or not processes.is_alive(node):
                raise RuntimeError(
                    f"the worker node did not join: {processes.log_tail(node.log_path)}"
                )
            time.sleep(0.5)
        ctx.progress(f"{len(alive_nodes(ray))} Ray nodes alive")
        for trial in range(1, ctx.config.trials + 1):
            label = f"trial {trial}/{ctx.config.trials}"
            ctx.progress(f"two nodes, {label} ...")
            try:
                sample, where = _trial(ctx, loaded)
            except Exception as exc:
                runs.fail(label, exc, ctx.progress)
                continue
            runs.add(sample)
            placements.append(where)
            ctx.progress(
                f"two nodes, {label}: {sample.rate:,.0f} events/s, owners per node {where}"
            )
    finally:
        ctx.progress("stopping the second Ray node ...")
        processes.stop(node, grace_s=20.0)
    spread = [len(p) for p in placements]
    result.extra = {"owner_placements": placements, "nodes_used_per_trial": spread}
    result.notes.append(
        "Owners per node in each trial: "
        + "; ".join(", ".join(f"{k}: {v}" for k, v in p.items()) for p in placements)
        + (
            ". The owners spread over both nodes."
            if spread and min(spread) > 1
            else ". The owners did not spread over both nodes in every trial."
        )
    )
    return result


def _trial(ctx: Context, loaded: LoadedTopic) -> tuple[Any, dict[str, int]]:
    from benchmarks.measure import Sample

    before = ctx.service_cpu()
    run = PipelineRun(ctx.bench, ctx.http, window_spec(loaded.stream_id), OWNERS)
    try:
        seconds, steady = run.wait_results(
            loaded.expected.height, ctx.config.partitions, ctx.progress.live, loaded.workload.count
        )
        where = owner_nodes(ctx, run)
        after = ctx.service_cpu()
        equal = run.results().equals(loaded.expected)
        meter: CpuMeter = run.cpu
        n = loaded.workload.count
        sample = Sample(
            n,
            seconds,
            meter.used(),
            meter.peak_rss(),
            {
                "processing_events_per_s": steady,
                "results_equal": equal,
                "owners_per_node": where,
                **{f"{k}_cpu_s": after[k] - before[k] for k in before},
            },
        )
        return sample, where
    finally:
        run.stop()
