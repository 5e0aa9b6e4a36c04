"""A brute-force window oracle: plain Python over lists of events, one event at a time.

It implements the semantics documented in :mod:`pipelines.windows` as literally as possible
(windows found by scanning candidate starts, sessions by a sort-and-sweep per key, aggregates
recomputed from the full event list of each window) so the vectorised operators can be checked
against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipelines.windows import HoppingWindow, SessionWindow, WindowDefinition
from pipelines.windows.definitions import Aggregation

INT64_MAX = 2**63 - 1
NEG_INF = -math.inf
WindowId = tuple[Any, int, int]


@dataclass(frozen=True)
class Event:
    key: Any
    t: int
    id: str
    values: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str) -> Any:
        return dict(self.values).get(name)


@dataclass
class Window:
    key: Any
    start: int
    end: int
    events: list[Event] = field(default_factory=list)
    emitted: int = 0
    supersedes: list[tuple[int, int]] = field(default_factory=list)
    shown: bool = False  # its own (start, end) is in the sink: emitted since the bounds changed


def aggregate(agg: Aggregation, events: list[Event]) -> Any:
    """One aggregation over a window's events, straight from its definition."""
    if agg.op == "count":
        return len(events)
    assert agg.field is not None
    values = [e.get(agg.field) for e in events]
    present = [v for v in values if v is not None]
    by_time = sorted(events, key=lambda e: (e.t, e.id))
    match agg.op:
        case "sum":
            return sum(present)
        case "min":
            return min(present) if present else None
        case "max":
            return max(present) if present else None
        case "mean":
            return sum(present) / len(present) if present else None
        case "first":
            return by_time[0].get(agg.field)
        case "last":
            return by_time[-1].get(agg.field)
        case "count_distinct":
            return len(set(present))
        case "percentile":
            if not present:
                return None
            ordered = sorted(float(v) for v in present)
            assert agg.q is not None
            pos = agg.q * (len(ordered) - 1)
            lo, hi = math.floor(pos), math.ceil(pos)
            return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
    raise AssertionError(agg.op)


class Oracle:
    """Feed it the same batches as the operator; ``final`` is the sink's view afterwards."""

    def __init__(self, definition: WindowDefinition) -> None:
        self.d = definition
        self.retention = definition.retention_ms
        self.watermark: int | None = None
        self.windows: list[Window] = []
        self.seen: dict[str, int] = {}  # fixed windows: id -> end of the event's last window
        self.final: dict[WindowId, dict[str, Any]] = {}
        self.dead_letters: list[str] = []
        self.counters = dict.fromkeys(
            (
                "events_in",
                "duplicates",
                "late_dropped",
                "late_dead_lettered",
                "late_updated",
                "windows_emitted",
            ),
            0,
        )

    # -- window membership ---------------------------------------------------------------------

    def fixed_windows(self, t: int) -> list[tuple[int, int]]:
        w = self.d.window
        size = w.size_ms  # type: ignore[union-attr]
        slide = w.slide_ms if isinstance(w, HoppingWindow) else size
        starts = range(t - size - slide, t + 1)
        return [(s, s + size) for s in starts if s % slide == 0 and s <= t < s + size]

    def remembered(self, event_id: str, horizon: float) -> bool:
        if isinstance(self.d.window, SessionWindow):
            return any(e.id == event_id for w in self.windows for e in w.events)
        return event_id in self.seen and self.seen[event_id] > horizon

    # -- the batch cycle -----------------------------------------------------------------------

    def process(self, batch: list[Event], seen: int | None = None) -> None:
        """``seen``: the newest event time of records filtered out before the operator."""
        lo = NEG_INF if self.watermark is None else self.watermark
        horizon = lo - self.retention
        fresh: list[Event] = []
        batch_ids: set[str] = set()
        for e in batch:
            self.counters["events_in"] += 1
            if e.id in batch_ids:
                self.counters["duplicates"] += 1
                continue
            batch_ids.add(e.id)
            if self.remembered(e.id, horizon):
                self.counters["duplicates"] += 1
            else:
                fresh.append(e)
        changed: list[Window] = []
        rejected: list[Event] = []
        if isinstance(self.d.window, SessionWindow):
            self.apply_sessions(fresh, lo, horizon, changed, rejected)
        else:
            self.apply_fixed(fresh, lo, horizon, changed, rejected)
        position = {e.id: i for i, e in enumerate(fresh)}
        for e in sorted(rejected, key=lambda e: position[e.id]):  # input order, like the operator
            if self.d.late_policy == "dead_letter":
                self.counters["late_dead_lettered"] += 1
                self.dead_letters.append(e.id)
            else:
                self.counters["late_dropped"] += 1
        new_wm = self.watermark
        times = [e.t for e in fresh] + ([] if seen is None else [seen])
        if times:
            candidate = max(times) - self.d.allowed_lateness_ms
            new_wm = candidate if new_wm is None else max(new_wm, candidate)
        self.close(lo, new_wm, changed)

    def flush(self) -> None:
        lo = NEG_INF if self.watermark is None else self.watermark
        self.close(lo, INT64_MAX, [])

    def apply_fixed(
        self, fresh: list[Event], lo: float, horizon: float, changed: list[Window], rejected: list
    ) -> None:
        for e in fresh:
            windows = self.fixed_windows(e.t)
            last_end = max(end for _, end in windows)
            applied = False
            for start, end in windows:
                if end <= horizon:
                    continue
                window = self.find(e.key, start, end)
                if window is None:
                    window = Window(e.key, start, end)
                    self.windows.append(window)
                window.events.append(e)
                if window not in changed:
                    changed.append(window)
                applied = True
            late = last_end <= lo
            if late and not applied:
                rejected.append(e)
            elif late:
                self.counters["late_updated"] += 1
            if applied:
                self.seen[e.id] = last_end

    def apply_sessions(
        self, fresh: list[Event], lo: float, horizon: float, changed: list[Window], rejected: list
    ) -> None:
        gap = self.d.window.gap_ms  # type: ignore[union-attr]
        for key in {e.key for e in fresh}:
            items: list[tuple[int, int, Any]] = [
                (w.start, w.end, w) for w in self.windows if w.key == key
            ]
            items += [(e.t, e.t + gap, e) for e in fresh if e.key == key]
            items.sort(key=lambda item: item[0])
            groups: list[list[tuple[int, int, Any]]] = []
            for item in items:
                if groups and item[0] < max(end for _, end, _ in groups[-1]):
                    groups[-1].append(item)
                else:
                    groups.append([item])
            for group in groups:
                events = [x for _, _, x in group if isinstance(x, Event)]
                parts = [x for _, _, x in group if isinstance(x, Window)]
                if not events:
                    continue
                start = min(s for s, _, _ in group)
                end = max(e for _, e, _ in group)
                if end <= horizon:
                    assert not parts
                    rejected.extend(events)
                    continue
                if end <= lo:
                    self.counters["late_updated"] += len(events)
                merged = Window(key, start, end, emitted=max((p.emitted for p in parts), default=0))
                for part in parts:
                    merged.events += part.events
                    merged.supersedes += part.supersedes
                    if part.shown and (part.start, part.end) != (start, end):
                        merged.supersedes.append((part.start, part.end))
                    elif part.shown:
                        merged.shown = True
                    self.windows.remove(part)
                merged.events += events
                self.windows.append(merged)
                changed.append(merged)

    def find(self, key: Any, start: int, end: int) -> Window | None:
        for w in self.windows:
            if (w.key, w.start, w.end) == (key, start, end):
                return w
        return None

    def close(self, lo: float, new_wm: int | None, changed: list[Window]) -> None:
        hi = NEG_INF if new_wm is None else new_wm
        for w in self.windows:
            newly_closed = lo < w.end <= hi
            is_changed = any(w is c for c in changed)
            if self.d.emit == "on_close":
                emit = w.end <= hi and (newly_closed or is_changed)
            else:
                emit = is_changed or newly_closed
            if not emit:
                continue
            for start, end in w.supersedes:
                del self.final[(w.key, start, end)]
            w.supersedes = []
            w.shown = True
            row = {agg.name: aggregate(agg, w.events) for agg in self.d.aggregations}
            row["revision"] = w.emitted
            row["closed"] = w.end <= hi
            self.final[(w.key, w.start, w.end)] = row
            w.emitted += 1
            self.counters["windows_emitted"] += 1
        self.windows = [w for w in self.windows if w.end > hi - self.retention]
        self.seen = {i: end for i, end in self.seen.items() if end > hi - self.retention}
        self.watermark = new_wm
