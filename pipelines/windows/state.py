"""The window operator's outputs and counters (the snapshot format is
:mod:`pipelines.operator_state`'s, shared with joins and patterns)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from pipelines.errors import SnapshotError
from pipelines.operator_state import Counters

__all__ = ["SnapshotError", "WindowCounters", "WindowOutput"]


@dataclass
class WindowCounters(Counters):
    """Event accounting; every input event lands in exactly one bucket besides events_in.

    ``events_in = duplicates + late_dropped + late_dead_lettered + (events applied)``, where
    applied events include ``late_updated``.
    """

    events_in: int = 0
    duplicates: int = 0
    late_dropped: int = 0
    late_dead_lettered: int = 0
    late_updated: int = 0
    windows_emitted: int = 0


@dataclass(frozen=True)
class WindowOutput:
    """What one ``process()`` or ``flush()`` call produced.

    ``results``: key, window_start_ms, window_end_ms, <aggregations>, revision, closed.
    ``late``: dead-lettered input rows (late_policy "dead_letter"), with the input's columns.
    ``retracted``: key, window_start_ms, window_end_ms of previously emitted session windows that
    a merge replaced; sinks delete them before writing ``results``. Always empty for fixed windows.
    """

    results: pl.DataFrame
    late: pl.DataFrame
    retracted: pl.DataFrame
    counters: WindowCounters = field(default_factory=WindowCounters)
