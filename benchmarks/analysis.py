"""Why targets are missed, computed from a run's JSON: where the pipeline's wall time goes, how
its CPU per event compares, what the profile and the consume-wait probe show, and what would
close each gap (the product changes, by file and function)."""

from __future__ import annotations

import statistics
from typing import Any


def _system(doc: dict[str, Any], scenario: str, name: str) -> dict[str, Any] | None:
    for s in doc["scenarios"]:
        if s["key"] == scenario:
            return next((r for r in s["systems"] if r["name"] == name), None)
    return None


def _median_extra(system: dict[str, Any] | None, key: str) -> float | None:
    values = [s["extra"][key] for s in (system or {}).get("samples", []) if s["extra"].get(key)]
    return statistics.median(values) if values else None


def _window_lines(doc: dict[str, Any]) -> list[str]:
    ours = _system(doc, "window-throughput", "our pipeline")
    quix = _system(doc, "window-throughput", "Quix Streams")
    raw = _system(doc, "window-throughput", "raw consume")
    if not ours or not ours["samples"]:
        return []
    lines = []
    total = ours["median_seconds"]
    ready = _median_extra(ours, "owners_ready_s")
    steady = _median_extra(ours, "processing_events_per_s")
    raw_steady = _median_extra(raw, "processing_events_per_s")
    if total and ready:
        lines.append(
            f"Window throughput: of the pipeline's {total:.1f} s from submit to the last result, "
            f"{ready:.1f} s ({ready / total:.0%}) pass before its partition-owner actors are "
            "running (Ray job driver with the project as working_dir, then one actor process "
            "per owner importing Ray, Polars and confluent-kafka). After that it runs at "
            f"{steady or 0:,.0f} events/s (steady state), against {raw_steady or 0:,.0f} for "
            f"the raw loop and {(_median_extra(quix, 'processing_events_per_s') or 0):,.0f} "
            "for Quix Streams."
        )
    if steady and raw_steady and steady > raw_steady:
        lines.append(
            f"The raw ceiling is one consumer process; the pipeline ran {_owners(ours)} owner "
            "processes, and its steady state above the ceiling shows that one Python consumer, "
            "not the broker, bounds the raw loop: the >= 1/2 ceiling target is the easier one."
        )
    ours_cpu = ours["median_cpu_s_per_million"]
    quix_cpu = (quix or {}).get("median_cpu_s_per_million")
    if ours_cpu and quix_cpu:
        lines.append(
            f"Per event the pipeline's owners use {ours_cpu:.2f} CPU-s per million events, Quix "
            f"Streams {quix_cpu:.2f} ({quix_cpu / ours_cpu:.1f}x more): the bulk path does what "
            "it should."
        )
    quix_rate = (quix or {}).get("median_events_per_s")
    broker = _median_per_million(ours, "kafka_cpu_s")
    if quix_rate and ours_cpu and ready:
        goal = 10 * quix_rate
        events = ours["samples"][0]["events"]
        lines.append(
            f"10x Quix Streams is {goal:,.0f} events/s: {events:,} events in "
            f"{events / goal:.1f} s, while {ready:.1f} s pass between submit and running owners; "
            f"and at {ours_cpu:.2f} CPU-s per million events the owners would need "
            f"{goal * ours_cpu / 1e6:.1f} cores (the broker another "
            f"{goal * (broker or 0) / 1e6:.1f}) of the machine's 2: within reach only with "
            "start-up gone and every owner busy all the time (no waits in consume)."
        )
    return lines


def _owners(system: dict[str, Any]) -> int:
    return int(system["samples"][0]["extra"].get("owners", 0)) if system["samples"] else 0


def _median_per_million(system: dict[str, Any] | None, key: str) -> float | None:
    values = [
        s["extra"][key] / s["events"] * 1e6
        for s in (system or {}).get("samples", [])
        if s["extra"].get(key) is not None and s["events"]
    ]
    return statistics.median(values) if values else None


def _arrow_lines(doc: dict[str, Any]) -> list[str]:
    through = _system(doc, "arrow-ingest", "SDK publish_arrow -> window results")
    alone = _system(doc, "arrow-ingest", "SDK publish_arrow alone")
    json_path = _system(doc, "window-throughput", "our pipeline")
    if not through or not through["samples"] or not alone:
        return []
    line = (
        f"Arrow ingest: publishing alone reaches {alone['median_events_per_s']:,.0f} events/s; "
        f"with the pipeline consuming on the same 2 cores, {through['median_events_per_s']:,.0f} "
        f"through to results ({through['median_seconds']:.1f} s per run, of which up to 0.5 s is "
        "the owners' last consume waiting out its timeout)."
    )
    wall, cpu = alone.get("median_seconds"), alone.get("median_cpu_s_per_million")
    if wall and cpu:
        busy = cpu * through["samples"][0]["events"] / 1e6
        line += (
            f" The publisher was busy {busy:.1f} CPU-s of its {wall:.1f} s: each publish_arrow "
            "call waits for the broker's acks (acks=all, linger 5 ms) before the next frame goes; "
            "overlapping calls would lift it."
        )
    if json_path and json_path["median_cpu_s_per_million"]:
        arrow_cpu = through["median_cpu_s_per_million"]
        line += (
            f" The owners spend {arrow_cpu:.2f} CPU-s per million Arrow events against "
            f"{json_path['median_cpu_s_per_million']:.2f} for JSON CloudEvents."
        )
    return [line]


def _profile_lines(doc: dict[str, Any]) -> list[str]:
    profile = doc.get("profile")
    if not profile:
        return []
    stages = sorted(profile["stages"].items(), key=lambda kv: -kv[1]["seconds"])
    parts = ", ".join(f"{name.split(' (')[0]} {v['share']:.0%}" for name, v in stages[:5])
    return [
        f"The owner's hot path in one process (cProfile, {profile['events_per_s']:,.0f} "
        f"events/s): {parts} of the profiled time. Consume time is mostly waiting on the "
        "broker's fetches, which shares the same 2 cores."
    ]


def _latency_lines(doc: dict[str, Any]) -> list[str]:
    profile = doc.get("profile") or {}
    wait = profile.get("consume_wait")
    lines = []
    if wait:
        lines.append(
            "Latency: owners and the live tail wait for one record, then take what librdkafka "
            f"already fetched (`consume(1, t)` + `consume(N - 1, 0)`: "
            f"{wait['first_then_drain_s'] * 1000:.1f} ms with 100 records waiting, against "
            f"{wait['batch_wait_s'] * 1000:.0f} ms for one `consume(20000, 0.5)`, the form used "
            "before this run). What remains is not profiled yet: the consumers' fetch waits "
            "(librdkafka `fetch.wait.max.ms`, 500 ms by default, when a fetch finds too little), "
            "the producer's linger, and one Redis commit per step."
        )
    return lines


RECOMMENDATIONS = [
    "Latency: tune the latency-sensitive consumers (owners, live tails, dispatchers) with a "
    "small `fetch.wait.max.ms` and measure again; profile a single event from publish to "
    "result with timestamps at each hop.",
    "Pipeline start-up: keep warm partition-owner actors (a detached pool per node that "
    "pipelines are assigned to) or at least cache the job's working_dir package; every submit "
    "now pays a Ray job driver plus one new actor process per owner.",
    "Arrow ingest: let `publish_arrow` callers overlap frames (several in flight) instead of "
    "waiting for each frame's acks before sending the next.",
    "HTTP batch publishing: build records column-wise, encode receipts with orjson, and count "
    "deliveries per batch rather than one Python callback per record.",
]


def analysis_markdown(doc: dict[str, Any]) -> str:
    missed = [t for t in doc.get("targets", []) if t["status"] == "missed"]
    if not missed:
        return ""
    found = _window_lines(doc) + _arrow_lines(doc) + _profile_lines(doc) + _latency_lines(doc)
    bullets = "\n".join(f"- {line}" for line in found)
    fixes = "\n".join(f"- {line}" for line in RECOMMENDATIONS)
    return (
        "#### Where the time goes (missed targets)\n\n"
        + (bullets + "\n\n" if bullets else "")
        + "What would close the gaps (product changes, not made by the suite):\n\n"
        + fixes
    )
