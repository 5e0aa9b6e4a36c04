"""PNG charts of a run (matplotlib, Agg backend: no display needed): throughput per system with
the targets drawn in, scaling by owner count, and latency percentiles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.scenario import ScenarioResult


def _bars(result: ScenarioResult, path: Path, title: str, lines: dict[str, float]) -> Path | None:
    """Median events/s per system (start to last result), the steady-state rate beside it
    where there is one, every trial as a dot, and target lines."""
    systems = [r for r in result.systems if r.samples]
    if not systems:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = list(range(len(systems)))
    medians = [r.median_rate() or 0 for r in systems]
    steady = [r.median_extra("processing_events_per_s") or 0 for r in systems]
    width = 0.38 if any(steady) else 0.7
    ax.bar(
        [x - width / 2 if any(steady) else x for x in xs],
        medians,
        width=width,
        color="#4c72b0",
        label="start -> last result (median)",
    )
    if any(steady):
        ax.bar(
            [x + width / 2 for x in xs],
            steady,
            width=width,
            color="#a1c4e8",
            label="steady state (median)",
        )
    for x, r, median in zip(xs, systems, medians, strict=True):
        left = x - width / 2 if any(steady) else x
        ax.scatter(
            [left] * len(r.samples), [s.rate for s in r.samples], color="black", s=10, zorder=3
        )
        ax.annotate(f"{median:,.0f}", (left, median), ha="center", va="bottom", fontsize=7)
    for label, y in lines.items():
        ax.axhline(y, linestyle="--", linewidth=1, color="#c44e52")
        ax.annotate(label, (-0.45, y), ha="left", va="bottom", fontsize=8, color="#c44e52")
    top = max([*medians, *steady, *lines.values(), *(s.rate for r in systems for s in r.samples)])
    ax.set_ylim(0, top * 1.15)
    ax.set_xticks(xs, [r.name for r in systems], fontsize=8)
    ax.set_ylabel("events per second (dots = trials)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency(results: list[ScenarioResult], path: Path) -> Path | None:
    series = {name: v for r in results for name, v in r.latencies_ms.items() if v.get("samples")}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    keys = ["p50", "p95", "p99", "max"]
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [k + i * width for k in range(len(keys))]
        ax.bar(xs, [values.get(k) or 0 for k in keys], width=width, label=name)
    ax.axhline(10, linestyle="--", linewidth=1, color="#c44e52")
    ax.annotate(
        "end-to-end p95 target: 10 ms",
        (-0.4, 10),
        va="top",
        fontsize=8,
        color="#c44e52",
        xytext=(0, -2),
        textcoords="offset points",
    )
    ax.set_xticks([k + width * (len(series) - 1) / 2 for k in range(len(keys))], keys)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log scale)")
    ax.set_title("Latency percentiles")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results: list[ScenarioResult], out_dir: Path, stamp: str) -> list[Path]:
    """Every chart this run has data for; answers the files written."""
    made: list[Path | None] = []
    by_key = {r.key: r for r in results}
    window = by_key.get("window-throughput")
    if window is not None:
        lines: dict[str, float] = {}
        raw, quix = window.system("raw consume"), window.system("Quix Streams")
        if raw and raw.median_rate():
            lines["target: 1/2 raw ceiling"] = (raw.median_rate() or 0) / 2
        if quix and quix.median_rate():
            lines["target: 10x Quix Streams"] = (quix.median_rate() or 0) * 10
        made.append(
            _bars(
                window,
                out_dir / f"{stamp}-window-throughput.png",
                "Window throughput, 1 s tumbling count + sum per key",
                lines,
            )
        )
    if "scaling" in by_key:
        made.append(
            _bars(
                by_key["scaling"],
                out_dir / f"{stamp}-scaling.png",
                "Pipeline throughput by partition-owner actors (one node)",
                {},
            )
        )
    if "http-publish" in by_key:
        publish = by_key["http-publish"]
        subset = ScenarioResult(
            publish.key,
            publish.title,
            systems=[r for r in publish.systems if r.name != "HTTP single event"],
        )
        made.append(
            _bars(subset, out_dir / f"{stamp}-http-publish.png", "Publishing throughput", {})
        )
    if "correlation" in by_key:
        made.append(
            _bars(
                by_key["correlation"],
                out_dir / f"{stamp}-correlation.png",
                "Interval join and CEP pattern vs Quix Streams",
                {},
            )
        )
    made.append(_latency(results, out_dir / f"{stamp}-latency.png"))
    return [p for p in made if p is not None]
