"""Tumbling and hopping windows: fixed boundaries, so assignment is pure arithmetic.

Tumbling: ``start = floor(t / size_ms) * size_ms`` (one window per event).
Hopping: every ``start = k * slide_ms`` with ``start <= t < start + size_ms``, i.e.
``k`` from ``floor((t - size_ms) / slide_ms) + 1`` to ``floor(t / slide_ms)``; the events are
exploded into (event, window) pairs with ``int_ranges``, all in Polars.

Duplicates: an applied event's id is remembered with the end of its last window and forgotten when
that window's state is purged (``end <= watermark - retention``); from then on a re-delivery is
late for every window anyway and follows the late policy instead of counting as a duplicate.

>>> import polars as pl
>>> from pipelines.windows import Aggregation, TumblingWindow, WindowDefinition, WindowOperator
>>> op = WindowOperator.build(WindowDefinition(TumblingWindow(10), (Aggregation("n", "count"),)))
>>> batch = pl.DataFrame(
...     {"key": ["a", "a", "a"], "event_time_ms": [1, 5, 12], "event_id": list("xyz")}
... )
>>> op.process(batch).results.rows()
[('a', 0, 10, 2, 0, True)]
"""

from __future__ import annotations

import polars as pl

from pipelines.windows.aggregations import partial_exprs
from pipelines.windows.base import (
    CHANGED,
    EMITTED,
    END,
    ID,
    ROW,
    START,
    TIME,
    WINDOW_KEYS,
    WindowOperator,
)
from pipelines.windows.definitions import HoppingWindow, TumblingWindow, WindowDefinition

__all__ = ["FixedWindowOperator", "assign_fixed_windows"]

_SEEN_SCHEMA: dict[str, pl.DataType] = {ID: pl.String(), "expire_ms": pl.Int64()}


def assign_fixed_windows(events: pl.DataFrame, size_ms: int, slide_ms: int) -> pl.DataFrame:
    """One row per (event, window) with ``window_start_ms`` and ``window_end_ms`` added."""
    t = pl.col(TIME)
    if slide_ms == size_ms:
        start = (t // size_ms) * size_ms
        return events.with_columns(start.alias(START), (start + size_ms).alias(END))
    ks = pl.int_ranges((t - size_ms) // slide_ms + 1, t // slide_ms + 1)
    pairs = events.with_columns(ks.alias(START)).explode(START)
    start = pl.col(START) * slide_ms
    return pairs.with_columns(start.alias(START), (start + size_ms).alias(END))


class FixedWindowOperator(WindowOperator):
    """Tumbling or hopping windows, keyed by ``(key, window_start_ms)``."""

    kind = "fixed"
    window_types = (TumblingWindow, HoppingWindow)

    def __init__(self, definition: WindowDefinition) -> None:
        super().__init__(definition)
        window = definition.window
        assert isinstance(window, TumblingWindow | HoppingWindow)
        self._size = window.size_ms
        self._slide = window.slide_ms if isinstance(window, HoppingWindow) else window.size_ms
        self._seen = pl.DataFrame(schema=_SEEN_SCHEMA)

    def _known_ids(self) -> pl.DataFrame:
        return self._seen.select(ID)

    def _apply(self, fresh: pl.DataFrame, w0: int) -> tuple[int, pl.Series]:
        horizon = self._horizon(w0)
        pairs = assign_fixed_windows(fresh, self._size, self._slide)
        pairs = pairs.with_columns((pl.col(END) > horizon).alias("__ok"))
        if self._slide == self._size:
            per_event = pairs.select(ROW, pl.col(END).alias("__last_end"), "__ok")
        else:
            per_event = pairs.group_by(ROW).agg(
                pl.col(END).max().alias("__last_end"), pl.col("__ok").any()
            )
        late = pl.col("__last_end") <= w0
        rejected = per_event.filter(late & ~pl.col("__ok")).get_column(ROW)
        applied_late = per_event.filter(late & pl.col("__ok")).height

        applied = fresh.join(per_event.filter("__ok"), on=ROW).select(
            ID, pl.col("__last_end").alias("expire_ms")
        )
        self._seen = pl.concat([self._seen, applied])

        partials = (
            pairs.filter("__ok")
            .group_by(WINDOW_KEYS)
            .agg(partial_exprs(self._aggs))
            .with_columns(pl.lit(0, pl.Int64).alias(EMITTED))
        )
        index = partials.select(WINDOW_KEYS)
        touched = self._state.join(index, on=WINDOW_KEYS, how="semi", nulls_equal=True)
        rest = self._state.join(index, on=WINDOW_KEYS, how="anti", nulls_equal=True)
        rows = pl.concat([self._conform(f, self._state_schema) for f in (touched, partials)])
        merged = self._merge_rows(rows, WINDOW_KEYS)
        self._state = pl.concat(
            [
                rest.with_columns(pl.lit(False).alias(CHANGED)),
                merged.with_columns(pl.lit(True).alias(CHANGED)),
            ],
            how="diagonal_relaxed",
        )
        return applied_late, rejected

    def _purge(self, horizon: int) -> None:
        self._seen = self._seen.filter(pl.col("expire_ms") > horizon)

    def _extra_frames(self) -> dict[str, pl.DataFrame]:
        return {"seen": self._seen}

    def _restore_extra(self, frames: dict[str, pl.DataFrame]) -> None:
        self._seen = self._conform(frames["seen"], _SEEN_SCHEMA)
