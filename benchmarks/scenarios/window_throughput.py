"""Scenario 1, window-throughput: the same 1 s tumbling count and sum per key over the same
pre-loaded topic, by five systems, trial by trial:

- raw ceiling: a bare confluent-kafka consume loop that only touches values;
- bulk decode + Polars: that loop plus pipelines.decode and a Polars group-by, one process;
- Quix Streams: its current release, in-process, in its own venv;
- Bytewax: 0.21, its own Kafka source and fold_window, in-process, one worker, in its own venv;
- our pipeline: submitted over the API as a Ray job with partition-owner actors; the clock runs
  from submit to the last window result in Redis (lag 0 and all results checked after).

Every system's results must equal the oracle computed from the generated events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl

from benchmarks.datagen import Workload, make_workload, normalise, preload
from benchmarks.measure import Runs, Sample, Target, ratio
from benchmarks.pipeline_run import ANALYTIC, create_stream, timed_pipeline_trial
from benchmarks.scenario import ROOT, Context, ScenarioResult

RAW, BULK, QUIX, OURS = "raw consume", "bulk decode + Polars", "Quix Streams", "our pipeline"
BYTEWAX = "Bytewax"
RUNNERS = ROOT / "benchmarks" / "runners"


@dataclass(frozen=True)
class LoadedTopic:
    """The pre-loaded topic that scenarios 1 and 5 (and the profile) read."""

    stream_id: str
    topic: str
    workload: Workload
    expected: pl.DataFrame


def load_topic(ctx: Context) -> LoadedTopic:
    config = ctx.config
    stream_id, topic = create_stream(
        ctx.http, f"window-{uuid.uuid4().hex[:8]}", config.partitions, **ANALYTIC
    )
    workload = make_workload(config.window_events, config.partitions)
    ctx.progress(f"pre-loading {workload.count:,} CloudEvents into {topic} ...")
    seconds = preload(ctx.bench.settings, topic, workload)
    ctx.progress(f"pre-loaded in {seconds:.1f}s ({workload.count / seconds:,.0f} events/s)")
    return LoadedTopic(stream_id, topic, workload, workload.expected())


def run(ctx: Context, loaded: LoadedTopic) -> ScenarioResult:
    config, n = ctx.config, loaded.workload.count
    result = ScenarioResult("window-throughput", "Windowed aggregation over a pre-loaded topic")
    runs = {
        RAW: Runs(RAW, "bare confluent-kafka consume loop touching each value (the ceiling)"),
        BULK: Runs(BULK, "consume + pipelines.decode bulk decode + Polars group-by, no Ray"),
        QUIX: Runs(QUIX, "Quix Streams tumbling_window().agg(Count, Sum).final(), in-process"),
        BYTEWAX: Runs(
            BYTEWAX,
            "Bytewax KafkaSource + fold_window (TumblingWindower, EventClock), in-process, "
            "one worker (2-core machine)",
        ),
        OURS: Runs(
            OURS,
            f"pipeline job, {config.pipeline_owners} partition-owner actors, "
            "submit -> last result in Redis",
        ),
    }
    result.systems = list(runs.values())
    peers = {
        QUIX: (ctx.quix_python, "quix_window.py"),
        BYTEWAX: (ctx.bytewax_python, "bytewax_window.py"),
    }
    for name, (python, _script) in peers.items():
        if python is None:
            runs[name].failures.append(f"{name} venv could not be set up")
    bootstrap = ctx.bench.settings.kafka_bootstrap
    common = ["--bootstrap", bootstrap, "--topic", loaded.topic]
    same = partial(_same_windows, loaded)
    for trial in range(1, config.trials + 1):
        label = f"trial {trial}/{config.trials}"
        ctx.runner_trial(runs[RAW], label, ["-m", "benchmarks.runners.raw_consume", *common], n)
        args = ["-m", "benchmarks.runners.bulk_polars", *common]
        ctx.runner_trial(runs[BULK], label, args, n, check=same)
        for name, (python, script) in peers.items():
            if python is not None:
                args = [str(RUNNERS / script), *common, "--expected", str(loaded.expected.height)]
                ctx.runner_trial(runs[name], label, args, n, python, check=same)
        ctx.progress(f"{OURS}, {label} ...")
        try:
            sample, ok = timed_pipeline_trial(
                ctx.bench,
                ctx.http,
                loaded.stream_id,
                config.pipeline_owners,
                loaded.expected,
                config.partitions,
                n,
                ctx.progress.live,
                ctx.service_cpu,
            )
            runs[OURS].add(sample)
            if not ok:
                runs[OURS].failures.append(f"{label}: results differ from the oracle or lag > 0")
            ctx.progress(f"{OURS}, {label}: {sample.rate:,.0f} events/s")
        except Exception as exc:  # one failed trial must not lose the others
            runs[OURS].fail(label, exc, ctx.progress)
    ours, raw, quix, bytewax = (runs[k].median_rate() for k in (OURS, RAW, QUIX, BYTEWAX))
    processing = runs[OURS].median_extra("processing_events_per_s")
    result.ratios = {
        "ours / Quix Streams": ratio(ours, quix),
        "ours / Bytewax": ratio(ours, bytewax),
        "ours / raw ceiling": ratio(ours, raw),
        "ours / bulk decode + Polars": ratio(ours, runs[BULK].median_rate()),
        "ours (steady state) / raw ceiling": ratio(processing, raw),
        "Quix Streams / raw ceiling": ratio(quix, raw),
        "Bytewax / raw ceiling": ratio(bytewax, raw),
    }
    result.targets = [
        Target(
            "window-throughput vs Quix Streams",
            ">= 10x Quix Streams",
            result.ratios["ours / Quix Streams"],
            10.0,
            unit="x",
        ),
        Target(
            "window-throughput vs raw ceiling",
            ">= 0.5 of the raw consume ceiling",
            result.ratios["ours / raw ceiling"],
            0.5,
            unit="x",
        ),
        Target(
            "pipeline start, submit -> owners running",
            "<= 1 s",
            runs[OURS].median_extra("owners_ready_s"),
            1.0,
            higher_is_better=False,
            unit="s",
        ),
    ]
    result.extra = {
        "events": n,
        "partitions": config.partitions,
        "keys": 1_000,
        "windows": loaded.expected.height,
        "topic": loaded.topic,
        "all_results_equal": all(
            not r.failures and all(s.extra.get("results_equal", True) for s in r.samples)
            for r in (runs[BULK], runs[QUIX], runs[BYTEWAX], runs[OURS])
        ),
    }
    result.notes.append(
        "Throughput = events / wall seconds from start to the last window result. For our "
        "pipeline that includes submitting the Ray job (job driver and actor start-up); its "
        "'steady state' rate counts the records committed after the first commit was seen, "
        "over the time after it. For the one-process systems it counts from the first record."
    )
    result.notes.append(
        "Bytewax windows by event time only (EventClock with its system clock frozen, one "
        "worker): with the default clock the watermark also runs with wall time and in-order "
        "events get dropped as late. Both peers take the event time from the Kafka record "
        "timestamp (equal to the CloudEvent time); our pipeline parses the CloudEvent's."
    )
    return result


def _same_windows(loaded: LoadedTopic, out: Path, sample: Sample) -> str | None:
    equal = normalise(pl.read_ndjson(out)).equals(loaded.expected)
    sample.extra["results_equal"] = equal
    return None if equal else "results differ from the oracle"
