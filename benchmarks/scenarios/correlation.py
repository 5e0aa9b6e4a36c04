"""Scenario correlation: an interval join and a CEP pattern, by our pipeline and by Quix Streams,
on the same pre-loaded topics in the same run, trial by trial (see benchmarks/correlation_data.py
for the workloads and oracles):

- join: order.created (orders topic) with payment.* (payments topic, co-partitioned), a payment
  at most 60 s after its order, inner; Quix Streams ``join_interval`` with the same interval;
- pattern: three login.failed with ip_risk > 0.5 within 60 s per user, skip past the last
  event; Quix Streams with its stateful API (State get/set in RocksDB).

Our pipelines are submitted over the API (Ray job, partition-owner actors); the clock runs from
submit until the owners have committed every record of the topics (results are committed with
the offsets, so they are all in Redis then). Quix's clock runs from its start until it processed
every record. Both sides' results are compared with the brute-force oracles.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.correlation_data import (
    JOIN_AFTER_MS,
    JOIN_LEFT,
    PATTERN,
    Events,
    join_oracle,
    join_workload,
    pattern_oracle,
    pattern_workload,
    preload,
    with_sentinels,
)
from benchmarks.datagen import sentinel_keys
from benchmarks.measure import Runs, Sample, ratio
from benchmarks.pipeline_run import ANALYTIC, PipelineRun, create_stream
from benchmarks.scenario import ROOT, Context, ScenarioResult

QUIX_JOIN, OURS_JOIN = "Quix Streams join_interval", "our join pipeline"
QUIX_PATTERN, OURS_PATTERN = "Quix Streams stateful pattern", "our pattern pipeline"


@dataclass(frozen=True)
class Workload:
    """One half of the scenario: its topics, our spec, the Quix runner's arguments, the oracle."""

    mode: str  # join | pattern
    spec: dict[str, Any]
    quix_args: list[str]
    records: int
    expected: set[tuple[Any, ...]]


def _load(ctx: Context, name: str, events: Events) -> tuple[str, str]:
    stream_id, topic = create_stream(
        ctx.http, f"{name}-{uuid.uuid4().hex[:8]}", ctx.config.partitions, **ANALYTIC
    )
    seconds = preload(ctx.bench.settings, topic, events)
    ctx.progress(f"pre-loaded {events.count:,} events into {topic} in {seconds:.1f}s")
    return stream_id, topic


def load(ctx: Context) -> tuple[Workload, Workload]:
    n, partitions = ctx.config.correlation_events, ctx.config.partitions
    orders, payments = join_workload(n, partitions)
    activity = with_sentinels(
        pattern_workload(n, partitions), partitions, sentinel_keys(partitions)
    )
    orders_id, orders_topic = _load(ctx, "orders", orders)
    payments_id, payments_topic = _load(ctx, "payments", payments)
    activity_id, activity_topic = _load(ctx, "activity", activity)
    began = time.perf_counter()
    pairs, matches = join_oracle(orders, payments), pattern_oracle(activity)
    ctx.progress(
        f"oracles: {len(pairs):,} pairs, {len(matches):,} matches "
        f"({time.perf_counter() - began:.1f}s)"
    )
    bootstrap = ["--bootstrap", ctx.bench.settings.kafka_bootstrap]
    join = Workload(
        "join",
        {
            "pipeline_name": f"bench-join-{uuid.uuid4().hex[:6]}",
            "source_stream": orders_id,
            "fields": {"amount": "int"},
            "join": {
                "left": {"event_types": [JOIN_LEFT]},
                "right": {"event_types": ["payment.*"], "source_stream": payments_id},
                "before_ms": 0,
                "after_ms": JOIN_AFTER_MS,
                "how": "inner",
            },
        },
        ["--mode", "join", *bootstrap, "--topic", orders_topic, "--right-topic", payments_topic],
        orders.count + payments.count,
        set(pairs),
    )
    pattern = Workload(
        "pattern",
        {
            "pipeline_name": f"bench-pattern-{uuid.uuid4().hex[:6]}",
            "source_stream": activity_id,
            "fields": {"ip_risk": "float"},
            "patterns": [PATTERN],
        },
        ["--mode", "pattern", *bootstrap, "--topic", activity_topic],
        activity.count,
        set(matches),
    )
    return join, pattern


def _ours(doc: dict[str, Any], mode: str) -> tuple[Any, ...]:
    if mode == "join":
        return (doc["key"], doc["left_event_id"], doc["right_event_id"])
    return (doc["key"], doc["start_ms"], doc["end_ms"], tuple(doc["events"]["fails"]))


def _quix(doc: dict[str, Any], mode: str) -> tuple[Any, ...]:
    if mode == "join":
        return (doc["key"], doc["left_event_id"], doc["right_event_id"])
    return (doc["key"], doc["start_ms"], doc["end_ms"], tuple(doc["ids"]))


def run(ctx: Context) -> ScenarioResult:
    config = ctx.config
    result = ScenarioResult("correlation", "Interval join and CEP pattern vs Quix Streams")
    owners = config.pipeline_owners
    runs = {
        QUIX_JOIN: Runs(QUIX_JOIN, "join_interval(how='inner', forward_ms=60000), in-process"),
        OURS_JOIN: Runs(OURS_JOIN, f"join pipeline, {owners} owners, submit -> all committed"),
        QUIX_PATTERN: Runs(QUIX_PATTERN, "apply(stateful=True) with State get/set, in-process"),
        OURS_PATTERN: Runs(
            OURS_PATTERN, f"patterns pipeline, {owners} owners, submit -> all committed"
        ),
    }
    result.systems = list(runs.values())
    join, pattern = load(ctx)
    pairs = {(QUIX_JOIN, OURS_JOIN): join, (QUIX_PATTERN, OURS_PATTERN): pattern}
    if ctx.quix_python is None:
        for quix, _ in pairs:
            runs[quix].failures.append("Quix Streams venv could not be set up")
    for trial in range(1, config.trials + 1):
        label = f"trial {trial}/{config.trials}"
        for (quix, ours), work in pairs.items():
            if ctx.quix_python is not None:
                _quix_trial(ctx, runs[quix], label, work)
            _pipeline_trial(ctx, runs[ours], label, work)
    result.ratios = {
        "join: ours / Quix Streams": ratio(
            runs[OURS_JOIN].median_rate(), runs[QUIX_JOIN].median_rate()
        ),
        "pattern: ours / Quix Streams": ratio(
            runs[OURS_PATTERN].median_rate(), runs[QUIX_PATTERN].median_rate()
        ),
        "join (steady state): ours / Quix Streams": ratio(
            runs[OURS_JOIN].median_extra("processing_events_per_s"),
            runs[QUIX_JOIN].median_extra("processing_events_per_s"),
        ),
        "pattern (steady state): ours / Quix Streams": ratio(
            runs[OURS_PATTERN].median_extra("processing_events_per_s"),
            runs[QUIX_PATTERN].median_extra("processing_events_per_s"),
        ),
    }
    result.extra = {
        "join_records": join.records,
        "join_pairs": len(join.expected),
        "pattern_records": pattern.records,
        "pattern_matches": len(pattern.expected),
        "partitions": config.partitions,
        "all_results_equal": all(
            not r.failures and all(s.extra.get("results_equal", True) for s in r.samples)
            for r in runs.values()
        ),
    }
    result.notes.append(
        f"Join: {join.records:,} records on two 4-partition topics (orders with order.viewed "
        f"noise, payments with refund.requested noise), {len(join.expected):,} pairs; some "
        "orders have no payment or one outside the interval. Pattern: "
        f"{pattern.records:,} records of 1,000 users, {len(pattern.expected):,} matches. "
        "Throughput = all records of the topics / wall seconds: for our pipelines from submit "
        "(Ray job and actor start-up included) until every record is committed, for Quix "
        "Streams from its start until it processed the last record; 'steady state' counts "
        "from the first record (Quix) or the first commit seen (ours). The join is inner on "
        "both sides: Quix Streams' how='left' emits an unmatched order at once (a null that a "
        "later payment contradicts), where ours waits for the interval to close."
    )
    return result


def _quix_trial(ctx: Context, runs: Runs, label: str, work: Workload) -> None:
    def check(out: Path, sample: Sample) -> str | None:
        docs = [orjson.loads(line) for line in out.read_bytes().splitlines() if line]
        return _compare(sample, [_quix(d, work.mode) for d in docs], work)

    script = str(ROOT / "benchmarks" / "runners" / "quix_correlation.py")
    args = [script, *work.quix_args]
    ctx.runner_trial(runs, label, args, work.records, ctx.quix_python, check=check)


def _compare(sample: Sample, found: list[tuple[Any, ...]], work: Workload) -> str | None:
    """Results equal the oracle: the same set, and nothing emitted twice; else what differs."""
    distinct = set(found)
    equal = distinct == work.expected and len(found) == len(distinct)
    sample.extra.update(
        results_equal=equal,
        results=len(found),
        missing=len(work.expected - distinct),
        unexpected=len(distinct - work.expected),
        duplicates=len(found) - len(distinct),
    )
    if equal:
        return None
    return (
        f"results differ from the oracle ({len(work.expected - distinct)} missing, "
        f"{len(distinct - work.expected)} unexpected, {len(found) - len(distinct)} twice)"
    )


def _pipeline_trial(ctx: Context, runs: Runs, label: str, work: Workload) -> None:
    ctx.progress(f"{runs.name}, {label} ...")
    try:
        before = ctx.service_cpu()
        pipeline = PipelineRun(ctx.bench, ctx.http, work.spec, ctx.config.pipeline_owners)
        try:
            seconds, steady = pipeline.wait_committed(
                ctx.config.partitions, ctx.progress.live, work.records
            )
            after = ctx.service_cpu()
            sample = Sample(
                work.records,
                seconds,
                pipeline.cpu.used(),
                pipeline.cpu.peak_rss(),
                {
                    "processing_events_per_s": steady,
                    "owners_ready_s": pipeline.owners_ready_s,
                    "owners": ctx.config.pipeline_owners,
                    "lag_at_end": pipeline.lag(),
                    **{f"{k}_cpu_s": after[k] - before[k] for k in before},
                },
            )
            docs = [orjson.loads(v) for v in pipeline.redis.hvals(f"{pipeline.base}:res")]
            problem = _compare(sample, [_ours(d, work.mode) for d in docs], work)
            if problem:
                runs.failures.append(f"{label}: {problem}")
            if sample.extra["lag_at_end"]:
                runs.failures.append(f"{label}: lag {sample.extra['lag_at_end']} at the end")
        finally:
            left = pipeline.stop()
            if left:
                runs.failures.append(f"{label}: owner processes {left} still alive")
        runs.add(sample)
        ctx.progress(f"{runs.name}, {label}: {sample.rate:,.0f} events/s")
    except Exception as exc:  # one failed trial must not lose the others
        runs.fail(label, exc, ctx.progress)
