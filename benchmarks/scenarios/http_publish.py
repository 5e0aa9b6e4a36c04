"""Scenario 3, http-publish: the batch endpoint (1,000 events per request, 8 concurrent clients;
a JSON object, NDJSON and an Arrow IPC body) against a raw producer loop in one process; single
events sustained (closed loop, many clients); and single-event latency at a fixed request rate,
open loop (measured from each request's due time).

CPU for the HTTP path is the Serve proxy and the API replica (Ray actors, found through the Ray
state API) plus the broker and Redis in `extra`; the load generator's own CPU is reported apart.
"""

from __future__ import annotations

import uuid
from typing import Any

from benchmarks.measure import Runs, Sample, Target, percentile, ratio
from benchmarks.pipeline_run import ANALYTIC, create_stream
from benchmarks.procstat import CpuMeter
from benchmarks.scenario import Context, ScenarioResult

RAW, SINGLE, SUSTAINED = "raw producer loop", "HTTP single event", "HTTP single event, sustained"
FORMATS = {"json": "JSON", "ndjson": "NDJSON", "arrow": "Arrow IPC"}


def serve_pids(ctx: Context) -> list[int]:
    """Pids of the Serve proxy and the API replica(s) of this stack."""
    ctx.bench.connect_ray()
    from ray.util.state import list_actors

    actors = list_actors(
        address=ctx.bench.settings.jobs_url, filters=[("state", "=", "ALIVE")], limit=1000
    )
    wanted = ("ProxyActor", "ServeReplica:esb-api")
    return [int(a.pid) for a in actors if a.pid and a.class_name.startswith(wanted)]


def run(ctx: Context) -> ScenarioResult:
    config = ctx.config
    result = ScenarioResult("http-publish", "Publishing over HTTP vs a raw producer")
    batches = {
        kind: Runs(
            f"HTTP batch endpoint ({label})",
            f"POST /api/v1/events/batch, {label} body, {config.batch_size} events/request, "
            f"{config.clients} concurrent clients, no client event ids",
        )
        for kind, label in FORMATS.items()
    }
    raw = Runs(RAW, "one process, confluent-kafka, the product's producer settings")
    single = Runs(SINGLE, f"POST /api/v1/events, open loop at {config.single_rate:.0f} requests/s")
    sustained = Runs(SUSTAINED, f"POST /api/v1/events, {config.single_clients} closed-loop clients")
    result.systems = [*batches.values(), raw, sustained, single]
    stream_id, _topic = create_stream(
        ctx.http, f"publish-{uuid.uuid4().hex[:8]}", config.partitions
    )
    # The raw producer is Kafka's ceiling: its million records a trial are not the bus's to index.
    _raw_id, topic = create_stream(
        ctx.http, f"raw-{uuid.uuid4().hex[:8]}", config.partitions, **ANALYTIC
    )
    pids = serve_pids(ctx)
    url = ctx.bench.settings.api_url
    latencies: list[float] = []
    for trial in range(1, config.trials + 1):
        label = f"trial {trial}/{config.trials}"
        for kind, batch in batches.items():
            ctx.progress(f"{batch.name}, {label} ...")
            _http_trial(ctx, batch, label, batch_load_args(ctx, stream_id, kind), pids)
        ctx.progress(f"{RAW}, {label} ...")
        try:
            sample, report = ctx.runner_sample(
                [
                    "-m",
                    "benchmarks.runners.raw_produce",
                    "--bootstrap",
                    ctx.bench.settings.kafka_bootstrap,
                    "--topic",
                    topic,
                    "--events",
                    str(config.raw_publish_events),
                ],
                config.raw_publish_events,
            )
            raw.add(sample)
            if report.get("failed"):
                raw.failures.append(f"{label}: {report['failed']} records failed")
            ctx.progress(f"{RAW}, {label}: {sample.rate:,.0f} events/s")
        except Exception as exc:
            raw.fail(label, exc, ctx.progress)
        ctx.settle_indexer()
        ctx.progress(f"{SUSTAINED}, {label} ...")
        args = [
            "-m",
            "benchmarks.runners.http_load",
            "closed",
            "--url",
            url,
            "--stream-id",
            stream_id,
            "--clients",
            str(config.single_clients),
            "--seconds",
            str(config.single_seconds),
        ]
        _http_trial(ctx, sustained, label, args, pids)
        ctx.settle_indexer()
        ctx.progress(f"{SINGLE}, {label} ...")
        args = [
            "-m",
            "benchmarks.runners.http_load",
            "single",
            "--url",
            url,
            "--stream-id",
            stream_id,
            "--rate",
            str(config.single_rate),
            "--seconds",
            str(config.single_seconds),
        ]
        single_report = _http_trial(ctx, single, label, args, pids)
        if single_report:
            report = single_report
            latencies += report["latencies_s"]
            trial_ms = [x * 1000 for x in report["latencies_s"]]
            single.samples[-1].extra.update(
                {f"p{int(q * 100)}_ms": percentile(trial_ms, q) for q in (0.5, 0.95, 0.99)}
            )
    result.ratios = {
        f"HTTP batch ({FORMATS[kind]}) / raw producer": ratio(b.median_rate(), raw.median_rate())
        for kind, b in batches.items()
    }
    ms = [x * 1000 for x in latencies]
    key = f"single-event publish at {config.single_rate:.0f}/s"
    result.latencies_ms[key] = {
        "samples": len(ms),
        "p50": percentile(ms, 0.5),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": max(ms) if ms else None,
    }
    result.targets = [
        Target(
            "single-event HTTP publish, sustained",
            ">= 2,000 requests/s",
            sustained.median_rate(),
            2000.0,
            unit="requests/s",
        ),
        *(
            Target(
                f"single-event publish p{q} at {config.single_rate:.0f}/s (open loop)",
                f"<= {limit:.0f} ms",
                result.latencies_ms[key][f"p{q}"],
                limit + 1e-9,
                higher_is_better=False,
                unit="ms",
            )
            for q, limit in (("50", 5.0), ("95", 10.0))
        ),
        *(
            Target(
                f"HTTP batch ({FORMATS[kind]}) / raw producer",
                ">= 0.5x",
                ratio(b.median_rate(), raw.median_rate()),
                0.5,
                unit="x",
            )
            for kind, b in batches.items()
        ),
    ]
    result.extra = {"stream_topic": topic, "serve_pids": pids}
    return result


def batch_load_args(ctx: Context, stream_id: str, kind: str) -> list[str]:
    """benchmarks.runners.http_load's batch load into `stream_id`, in body format `kind`."""
    config = ctx.config
    return [
        "-m",
        "benchmarks.runners.http_load",
        "batch",
        "--url",
        ctx.bench.settings.api_url,
        "--stream-id",
        stream_id,
        "--events",
        str(config.publish_events),
        "--batch",
        str(config.batch_size),
        "--clients",
        str(config.clients),
        "--format",
        kind,
    ]


def _http_trial(
    ctx: Context, runs: Runs, label: str, args: list[str], pids: list[int]
) -> dict[str, Any] | None:
    meter = CpuMeter()
    for pid in pids:
        meter.watch(pid)
    before = ctx.service_cpu()
    try:
        report = ctx.run_runner(args)
    except Exception as exc:
        runs.fail(label, exc, ctx.progress)
        return None
    after = ctx.service_cpu()
    sample = Sample(
        events=int(report["events"]),
        seconds=float(report["seconds"]),
        cpu_s=meter.used(),
        peak_rss_bytes=meter.peak_rss(),
        extra={
            "client_cpu_s": report["cpu_s"],
            "client_peak_rss_bytes": report["peak_rss_bytes"],
            "failed_requests": report.get("failed_requests", 0),
            **{f"{k}_cpu_s": after[k] - before[k] for k in before},
        },
    )
    runs.add(sample)
    if report.get("failed_requests"):
        runs.failures.append(
            f"{label}: {report['failed_requests']} failed requests, e.g. {report['failures'][:2]}"
        )
    ctx.progress(f"{runs.name}, {label}: {sample.rate:,.0f} events/s")
    return report
