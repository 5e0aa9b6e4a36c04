"""The shared harness: trials of a system, their medians, ratios between systems, and targets.

A `Sample` is one trial of one system; `Runs` holds a system's samples and answers medians of
throughput, CPU-seconds per million events and peak RSS. Scenarios interleave systems trial by
trial (A1 B1 C1 A2 B2 C2 ...), so slow drift of the machine does not favour one of them.

>>> runs = Runs("raw", "one consume loop")
>>> for s in (1.0, 2.0, 4.0):
...     runs.add(Sample(events=1_000_000, seconds=s, cpu_s=s / 2, peak_rss_bytes=10))
>>> runs.median_rate()
500000.0
>>> runs.median_cpu_per_million()
1.0
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Sample:
    """One trial: events processed, wall seconds (start to last result), CPU and peak RSS of the
    system's own processes; `extra` holds the rest (processing-only time, broker CPU, ...)."""

    events: int
    seconds: float
    cpu_s: float
    peak_rss_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "events_per_s": self.rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        return cls(
            data["events"],
            data["seconds"],
            data["cpu_s"],
            data["peak_rss_bytes"],
            dict(data.get("extra", {})),
        )


@dataclass
class Runs:
    """A system's trials in one scenario."""

    name: str
    description: str
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, label: str, error: object, progress: Callable[[str], None]) -> None:
        """Record a failed trial and say so; the other trials go on."""
        self.failures.append(f"{label}: {error}")
        progress(f"{self.name}, {label} FAILED: {error}")

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def median_rate(self) -> float | None:
        return statistics.median(s.rate for s in self.samples) if self.samples else None

    def median_seconds(self) -> float | None:
        return statistics.median(s.seconds for s in self.samples) if self.samples else None

    def median_cpu_per_million(self) -> float | None:
        values = [s.cpu_s / s.events * 1e6 for s in self.samples if s.events]
        return statistics.median(values) if values else None

    def median_peak_rss(self) -> int | None:
        values = [s.peak_rss_bytes for s in self.samples]
        return int(statistics.median(values)) if values else None

    def median_extra(self, key: str) -> float | None:
        values = [s.extra[key] for s in self.samples if s.extra.get(key) is not None]
        return statistics.median(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "trials": len(self.samples),
            "median_events_per_s": self.median_rate(),
            "median_seconds": self.median_seconds(),
            "median_cpu_s_per_million": self.median_cpu_per_million(),
            "median_peak_rss_bytes": self.median_peak_rss(),
            "samples": [s.to_dict() for s in self.samples],
            "failures": self.failures,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Runs:
        return cls(
            data["name"],
            data["description"],
            [Sample.from_dict(s) for s in data["samples"]],
            list(data.get("failures", [])),
            list(data.get("notes", [])),
        )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Target:
    """A goal from the issue, reported (never asserted): met, missed, or not measurable."""

    name: str
    goal: str
    value: float | None
    threshold: float
    higher_is_better: bool = True
    unit: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "not measured"
        ok = self.value >= self.threshold if self.higher_is_better else self.value < self.threshold
        return "met" if ok else "missed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        fields = ("name", "goal", "value", "threshold", "higher_is_better", "unit")
        return cls(**{k: data[k] for k in fields})
