"""The run's report: Markdown tables (printed, and the README section), and the JSON document.

Tables are Markdown with padded columns, so the terminal and README show the same thing.
"""

from __future__ import annotations

from typing import Any

from benchmarks.analysis import analysis_markdown
from benchmarks.measure import Runs, Target
from benchmarks.scenario import ScenarioResult


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def number(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def mb(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.0f}"


def _equal(runs: Runs) -> str:
    flags = [s.extra["results_equal"] for s in runs.samples if "results_equal" in s.extra]
    if not flags:
        return "n/a"
    return "yes" if all(flags) else f"NO ({flags.count(False)}/{len(flags)})"


def throughput_table(result: ScenarioResult, reference: str | None) -> str:
    ref = result.system(reference) if reference else None
    ref_rate = ref.median_rate() if ref else None
    rows = []
    for r in result.systems:
        rate = r.median_rate()
        versus = [number(rate / ref_rate, 2, "x") if rate and ref_rate else "—"] if ref else []
        rows.append(
            [
                r.name,
                number(rate),
                *versus,
                number(r.median_extra("processing_events_per_s")),
                number(r.median_cpu_per_million(), 2),
                mb(r.median_peak_rss()),
                f"{len(r.samples)}" + (f" ({len(r.failures)} failed)" if r.failures else ""),
                _equal(r),
            ]
        )
    headers = [
        "system",
        "events/s",
        *([f"vs {reference}"] if ref else []),
        "steady-state events/s",
        "CPU-s / M events",
        "peak RSS MB",
        "trials",
        "results = oracle",
    ]
    return table(headers, rows)


def latency_table(result: ScenarioResult) -> str:
    rows = [
        [
            name,
            str(v.get("samples", "—")),
            *(number(v.get(k), 1) for k in ("p50", "p95", "p99", "max")),
        ]
        for name, v in result.latencies_ms.items()
    ]
    return table(["latency (ms)", "samples", "p50", "p95", "p99", "max"], rows)


def ratios_table(result: ScenarioResult) -> str:
    return table(
        ["ratio (medians)", "value"], [[k, number(v, 2, "x")] for k, v in result.ratios.items()]
    )


def targets_table(targets: list[Target]) -> str:
    rows = []
    for t in targets:
        digits = {"x": 2, "ms": 1, "s": 1}.get(t.unit, 0)
        value = number(t.value, digits, f" {t.unit}".rstrip())
        rows.append([t.name, t.goal, value if t.value is not None else "—", t.status])
    return table(["target", "goal", "measured", "status"], rows)


REFERENCES = {
    "window-throughput": "raw consume",
    "http-publish": "raw producer loop",
    "scaling": "1 owner",
}


def scenario_markdown(result: ScenarioResult) -> str:
    parts = [f"### {result.key}: {result.title}"]
    if result.status != "measured":
        parts.append(f"**{result.status}.** " + " ".join(result.notes))
        return "\n\n".join(parts)
    if any(r.samples for r in result.systems if r.name not in result.latencies_ms):
        parts.append(throughput_table(result, REFERENCES.get(result.key)))
    if result.ratios:
        parts.append(ratios_table(result))
    if result.latencies_ms:
        parts.append(latency_table(result))
    failures = [f"- {r.name}: {f}" for r in result.systems for f in r.failures]
    if failures:
        parts.append("Failures:\n" + "\n".join(failures))
    parts += [f"_{note}_" for note in result.notes]
    return "\n\n".join(parts)


def profile_markdown(profile: dict[str, Any] | None) -> str:
    if not profile:
        return ""
    rows = [
        [stage, number(v["seconds"], 2), number(v["share"] * 100, 0, " %")]
        for stage, v in sorted(profile["stages"].items(), key=lambda kv: -kv[1]["seconds"])
    ]
    top = [
        [t["function"], number(t["self_s"], 2), number(t["cum_s"], 2)]
        for t in profile["top_self_time"][:8]
    ]
    return "\n\n".join(
        [
            f"### Where the time goes: {profile['what']}",
            f"{profile['events']:,} events in {profile['seconds']:.2f} s "
            f"({profile['events_per_s']:,.0f} events/s, {profile['cpu_s']:.2f} CPU-s) "
            "under cProfile.",
            table(["stage (cumulative)", "seconds", "share of profiled time"], rows),
            table(["top functions by self time", "self s", "cumulative s"], top),
            _consume_note(profile),
        ]
    )


def _consume_note(profile: dict[str, Any]) -> str:
    wait = profile["consume_wait"]
    return (
        f"With 100 records waiting, the owner's `consume({profile['max_batch']:,}, timeout=0.5)` "
        f"took {wait['batch_wait_s'] * 1000:.0f} ms for {wait['batch_wait_records']:.0f} records "
        "(librdkafka waits for a full batch or the timeout), while `consume(1, 0.5)` then "
        f"`consume({profile['max_batch'] - 1:,}, 0)` took {wait['first_then_drain_s'] * 1000:.1f} "
        f"ms for {wait['first_then_drain_records']:.0f}: below the batch size, every step waits "
        "out its timeout, which bounds the pipeline's latency."
    )


def full_markdown(doc: dict[str, Any]) -> str:
    """The README results section, from a run's JSON document alone."""
    results = [ScenarioResult.from_dict(s) for s in doc["scenarios"]]
    machine = doc["machine"]
    header = [
        f"Run `{doc['config']['name']}` of {doc['started_at']} on {machine['cpu']} "
        f"({machine['cores']} cores, {machine['memory_gib']:.0f} GiB), {machine['os']}; "
        + ", ".join(f"{k} {v}" for k, v in doc["versions"].items())
        + ".",
        f"Reproduce: `{doc['reproduce']}`. Medians of {doc['config']['trials']} trials; "
        "JSON and charts in `benchmarks/results/`.",
    ]
    targets = [t for r in results for t in r.targets]
    body = ["#### Targets\n\n" + targets_table(targets)]
    body += [scenario_markdown(r) for r in results]
    body.append(profile_markdown(doc.get("profile")))
    body.append(analysis_markdown(doc))
    if doc.get("not_measured"):
        body.append("#### Not measured\n\n" + "\n".join(f"- {x}" for x in doc["not_measured"]))
    return "\n\n".join([*header, *[b for b in body if b]]) + "\n"
