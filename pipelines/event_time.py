"""Event time per partition: the newest event time of every record, and idle advancement.

Every record a partition delivers advances its event time, selected by the pipeline or not, so
a pipeline over ``order.*`` closes windows while only other types arrive: owners pass the newest
time of all decoded records as ``seen_ms`` to the operators.

A quiet partition would hold every window, interval and absence deadline open forever. After
``idle_timeout_ms`` of processing time without a record, :class:`IdleClock` lets event time run
on with the wall clock from the last event time seen (so ten quiet seconds count as ten seconds
of event time); a record arriving later with an older time is then late, as in Flink when a
source is marked idle and its watermark follows processing time.

>>> clock = IdleClock(idle_timeout_ms=1000)
>>> clock.observe(5_000, now_ms=100)
>>> clock.idle_event_time(now_ms=1_000) is None  # quiet for 900 ms: not idle yet
True
>>> clock.idle_event_time(now_ms=1_600)  # idle: 1.5 s of quiet on top of 5 s
6500
"""

from __future__ import annotations

import polars as pl

__all__ = ["IdleClock", "advanced_watermark", "latest", "newest_time"]


def newest_time(frame: pl.DataFrame, column: str = "event_time_ms") -> int | None:
    """The newest event time of a frame (None when it is empty or all null)."""
    value = frame.get_column(column).max()
    return None if value is None else int(value)  # type: ignore[arg-type]


def latest(*times: int | None) -> int | None:
    """The newest of the known times (None when none is known).

    >>> latest(None, 5, 3), latest(None)
    (5, None)
    """
    return max((t for t in times if t is not None), default=None)


def advanced_watermark(watermark: int | None, newest: int | None, lateness_ms: int) -> int | None:
    """The watermark after event time reached ``newest``: ``newest - lateness_ms``, never
    decreasing (unchanged when nothing new is known).

    >>> advanced_watermark(None, 100, 10), advanced_watermark(95, 100, 10)
    (90, 95)
    >>> advanced_watermark(7, None, 0)
    7
    """
    if newest is None:
        return watermark
    candidate = newest - lateness_ms
    return candidate if watermark is None else max(watermark, candidate)


class IdleClock:
    """Per partition: the newest event time seen and when (processing time) it was seen."""

    def __init__(self, idle_timeout_ms: int) -> None:
        self.idle_timeout_ms = idle_timeout_ms
        self._event_ms: int | None = None
        self._wall_ms = 0

    def observe(self, newest_event_ms: int | None, now_ms: int) -> None:
        """A batch of records arrived (``newest_event_ms``: their newest time, if any)."""
        self._wall_ms = now_ms
        if newest_event_ms is not None:
            current = self._event_ms
            self._event_ms = newest_event_ms if current is None else max(current, newest_event_ms)

    def is_idle(self, now_ms: int) -> bool:
        """No record for ``idle_timeout_ms`` (processing time)."""
        return now_ms - self._wall_ms >= self.idle_timeout_ms

    def idle_event_time(self, now_ms: int) -> int | None:
        """The event time a quiet partition has reached, or None while it is not idle (or has
        never seen an event: there is nothing to advance from)."""
        quiet = now_ms - self._wall_ms
        if self._event_ms is None or quiet < self.idle_timeout_ms:
            return None
        return self._event_ms + quiet
