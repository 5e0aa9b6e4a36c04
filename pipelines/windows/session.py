"""Session windows: per key, events closer than ``gap_ms`` share a session ``[first, last + gap)``.

Each batch is merged with the sessions in state as an interval union, all in Polars: every new
event is the interval ``[t, t + gap_ms)``, every held session its ``[start, end)``; sorted per key,
an interval starts a new group when its start is ``>=`` the running max end of the previous ones.
A group is a session after the batch, so one event can bridge (merge) several held sessions.

- A group is applied when its end is after the retention horizon (open, or closed but retained
  under late_policy "update"); its new events are late when its end ``<= w0``. Groups that are not
  applied hold only new events (held sessions are never past the horizon), which are late.
- Closed sessions whose state was dropped (drop/dead_letter policies, or past retention) are never
  reopened: a later event within the gap starts a new session.
- A merged session inherits the highest revision of its parts. Parts whose own bounds are in the
  sink (``__shown``: emitted since their bounds last changed) and that the merge moves are
  recorded and returned in ``WindowOutput.retracted`` when the merged session is next emitted, so
  sinks delete exactly the stale ``(key, start, end)`` rows, never bounds they were not sent.
- Duplicates: event ids live in their session's state (``__ids``) and are forgotten with it.

>>> import polars as pl
>>> from pipelines.windows import Aggregation, SessionWindow, WindowDefinition, WindowOperator
>>> op = WindowOperator.build(WindowDefinition(SessionWindow(5), (Aggregation("n", "count"),)))
>>> batch = pl.DataFrame({"key": ["a"] * 3, "event_time_ms": [1, 4, 20], "event_id": list("xyz")})
>>> op.process(batch).results.rows()
[('a', 1, 9, 2, 0, True)]
"""

from __future__ import annotations

import polars as pl

from pipelines.windows.aggregations import partial_exprs
from pipelines.windows.base import (
    CHANGED,
    EMITTED,
    END,
    ID,
    KEY,
    ROW,
    START,
    TIME,
    WindowOperator,
)
from pipelines.windows.definitions import SessionWindow, WindowDefinition

__all__ = ["SessionWindowOperator", "session_groups"]

IDS, SUPERSEDES, SHOWN = "__ids", "__supersedes", "__shown"
_BOUNDS = pl.Struct({START: pl.Int64(), END: pl.Int64()})


def session_groups(intervals: pl.DataFrame) -> pl.DataFrame:
    """Label overlapping ``[start, end)`` intervals per key with a group id ``__gid``.

    Adds ``__gstart``/``__gend``: the bounds of the merged group.
    """
    prev_end = pl.col(END).cum_max().shift(1).over(KEY)
    new_group = prev_end.is_null() | (pl.col(START) >= prev_end)
    return (
        intervals.sort([KEY, START], nulls_last=True)
        .with_columns(new_group.cum_sum().alias("__gid"))
        .with_columns(
            pl.col(START).min().over("__gid").alias("__gstart"),
            pl.col(END).max().over("__gid").alias("__gend"),
        )
    )


class SessionWindowOperator(WindowOperator):
    """Session windows with merging; see the module docstring for the exact rules."""

    kind = "session"
    window_types = (SessionWindow,)

    def __init__(self, definition: WindowDefinition) -> None:
        super().__init__(definition)
        window = definition.window
        assert isinstance(window, SessionWindow)
        self._gap = window.gap_ms

    def _extra_state_schema(self) -> dict[str, pl.DataType]:
        return {IDS: pl.List(pl.String()), SUPERSEDES: pl.List(_BOUNDS), SHOWN: pl.Boolean()}

    def _known_ids(self) -> pl.DataFrame:
        return self._state.select(pl.col(IDS).alias(ID)).explode(ID).drop_nulls()

    def _apply(self, fresh: pl.DataFrame, w0: int) -> tuple[int, pl.Series]:
        horizon = self._horizon(w0)
        state = self._state.with_row_index("__srow")
        intervals = pl.concat(
            [
                state.select(KEY, START, END, pl.lit(False).alias("__new"), pl.col("__srow")),
                fresh.select(
                    KEY,
                    pl.col(TIME).alias(START),
                    (pl.col(TIME) + self._gap).alias(END),
                    pl.lit(True).alias("__new"),
                    pl.col(ROW).alias("__srow"),
                ),
            ],
        )
        groups = session_groups(intervals)
        events = groups.filter("__new").select(
            pl.col("__srow").alias(ROW), "__gid", "__gstart", "__gend"
        )
        ok, late = pl.col("__gend") > horizon, pl.col("__gend") <= w0
        rejected = events.filter(late & ~ok).get_column(ROW)
        applied_late = events.filter(late & ok).height

        applied = fresh.join(events.filter(ok), on=ROW)
        partials = applied.group_by("__gid").agg(
            pl.col(KEY).first(),
            pl.col(TIME).min().alias(START),
            (pl.col(TIME).max() + self._gap).alias(END),
            *partial_exprs(self._aggs),
            pl.col(ID).alias(IDS),
            pl.lit(0, pl.Int64).alias(EMITTED),
            pl.lit([], dtype=pl.List(_BOUNDS)).alias(SUPERSEDES),
            pl.lit(False).alias(SHOWN),
        )
        held = state.join(
            groups.filter(~pl.col("__new")).select("__srow", "__gid", "__gstart", "__gend"),
            on="__srow",
        )
        changed = pl.col("__gid").is_in(partials.get_column("__gid").implode())
        touched = held.filter(changed)
        rest = held.filter(~changed)
        # A part shown under bounds that the merge changes must be retracted later.
        moved = pl.col(SHOWN) & (
            (pl.col(START) != pl.col("__gstart")) | (pl.col(END) != pl.col("__gend"))
        )
        bounds = pl.struct(pl.col(START), pl.col(END))
        touched = touched.with_columns(
            pl.when(moved)
            .then(pl.concat_list(pl.col(SUPERSEDES), bounds))
            .otherwise(pl.col(SUPERSEDES))
            .alias(SUPERSEDES)
        )
        schema = {"__gid": pl.UInt32(), **self._state_schema}
        rows = pl.concat([self._conform(f, schema) for f in (touched, partials)])
        merged = self._merge_rows(
            rows,
            "__gid",
            pl.col(KEY).first(),
            pl.col(START).min(),
            pl.col(END).max(),
            pl.col(IDS).list.explode(keep_nulls=False, empty_as_null=False),
            pl.col(SUPERSEDES).list.explode(keep_nulls=False, empty_as_null=False),
            # Still shown only when a shown part already had the merged bounds.
            (
                pl.col(SHOWN)
                & (pl.col(START) == pl.col(START).min())
                & (pl.col(END) == pl.col(END).max())
            )
            .any()
            .alias(SHOWN),
        )
        self._state = pl.concat(
            [
                self._conform(rest, self._state_schema).with_columns(pl.lit(False).alias(CHANGED)),
                self._conform(merged, self._state_schema).with_columns(pl.lit(True).alias(CHANGED)),
            ]
        )
        return applied_late, rejected

    def _on_emit(self, state: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        emitting = pl.col("__emit")
        retracted = (
            state.filter(emitting)
            .select(KEY, SUPERSEDES)
            .explode(SUPERSEDES)
            .drop_nulls(SUPERSEDES)
            .unnest(SUPERSEDES)
            .sort([KEY, START, END], nulls_last=True)
        )
        cleared = pl.when(emitting).then(pl.col(SUPERSEDES).list.head(0))
        state = state.with_columns(
            cleared.otherwise(pl.col(SUPERSEDES)).alias(SUPERSEDES),
            (emitting | pl.col(SHOWN)).alias(SHOWN),
        )
        return state, retracted

    def _upgrade_state(self, state: pl.DataFrame) -> pl.DataFrame:
        """Snapshots from before ``__shown``: a session with pending retractions was merged
        since it was last shown; otherwise an emitted one is taken as shown."""
        if SHOWN in state.columns:
            return state
        shown = (pl.col(EMITTED) > 0) & (pl.col(SUPERSEDES).list.len() == 0)
        return state.with_columns(shown.alias(SHOWN))
