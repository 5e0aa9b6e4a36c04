"""The interval join operator: both sides buffered as Polars frames, pairs found by one hash
join on ``key`` plus an interval filter per batch (no per-event loop).

One ``process(left, right, seen_ms)`` runs, with ``w0`` the watermark before the batch:

1. Late: a left event is late when its interval is closed (``t + after_ms < w0``); a right
   event when every interval it could fall in is closed (``t + before_ms + after_ms < w0``).
   Late events are dropped (counted) or returned for dead-lettering; they never pair.
2. Duplicates: an event id seen before on the same side while that event is buffered (and
   repeats within the batch) is ignored. Once purged, a re-delivery is late anyway.
3. Pairs: new lefts against every buffered and new right, buffered lefts against new rights;
   ``t_left - before_ms <= t_right <= t_left + after_ms``. Each pair is emitted exactly once,
   when its second event arrives.
4. Event time: ``seen_ms[i]`` is the newest event time of *every* record input ``i`` delivered
   (filtered-out ones too); the watermark is ``min over inputs - allowed_lateness_ms``, never
   decreasing.
5. Close: lefts with ``t + after_ms < w1`` are closed; under ``how="left"`` the never-matched
   ones are emitted once with null right columns. Closed lefts are dropped, and rights with
   ``t + before_ms + after_ms < w1`` (no open interval can take them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.event_time import advanced_watermark, latest, newest_time
from pipelines.joins.definition import JoinDefinition
from pipelines.operator_state import WATERMARK_MAX, WATERMARK_MIN, Counters, StatefulOperator
from pipelines.spec import POLARS_TYPES

__all__ = ["JoinCounters", "JoinOperator", "JoinOutput"]

KEY, TIME, ID = "key", "event_time_ms", "event_id"
L_ID, L_TIME, R_ID, R_TIME = "left_event_id", "left_time_ms", "right_event_id", "right_time_ms"
MATCHED = "__matched"


@dataclass
class JoinCounters(Counters):
    events_in: int = 0
    duplicates: int = 0
    late_dropped: int = 0
    late_dead_lettered: int = 0
    pairs_emitted: int = 0
    unmatched_emitted: int = 0


@dataclass(frozen=True)
class JoinOutput:
    """``results``: key, left/right event id and time, ``left.<f>``, ``right.<f>`` per pair (or
    unmatched left); ``late``: dead-lettered input rows with a ``side`` column."""

    results: pl.DataFrame
    late: pl.DataFrame
    counters: JoinCounters


class JoinOperator(StatefulOperator[JoinDefinition, JoinCounters]):
    """Per-partition interval join; build with :meth:`build`."""

    kind = describes = definition_name = "join"
    counters_type = JoinCounters

    def __init__(self, definition: JoinDefinition) -> None:
        super().__init__(definition)
        self._before, self._after = definition.before_ms, definition.after_ms
        self._types = {n: POLARS_TYPES[t] for n, t in definition.field_types}
        key = POLARS_TYPES[definition.key_type]
        self._input_schema: dict[str, pl.DataType] = {
            KEY: key,
            TIME: pl.Int64(),
            ID: pl.String(),
            **self._types,
        }
        self._left_schema = {**self._side_schema("left", L_ID, L_TIME), MATCHED: pl.Boolean()}
        self._right_schema = self._side_schema("right", R_ID, R_TIME)
        self._result_schema = {
            KEY: key,
            L_ID: pl.String(),
            R_ID: pl.String(),
            L_TIME: pl.Int64(),
            R_TIME: pl.Int64(),
            **{f"left.{n}": t for n, t in self._types.items()},
            **{f"right.{n}": t for n, t in self._types.items()},
        }
        self._left = pl.DataFrame(schema=self._left_schema)
        self._right = pl.DataFrame(schema=self._right_schema)
        self._seen: list[int | None] = [None] * definition.inputs

    def _side_schema(self, side: str, id_col: str, time_col: str) -> dict[str, pl.DataType]:
        key = self._input_schema[KEY]
        return {
            KEY: key,
            id_col: pl.String(),
            time_col: pl.Int64(),
            **{f"{side}.{n}": t for n, t in self._types.items()},
        }

    @property
    def buffered(self) -> int:
        """Events held: open lefts plus rights an open interval may still take."""
        return self._left.height + self._right.height

    def empty_input(self) -> pl.DataFrame:
        """A zero-row frame with the columns :meth:`process` expects for either side."""
        return pl.DataFrame(schema=self._input_schema)

    # -- the batch cycle ------------------------------------------------------------------------

    def process(
        self, left: pl.DataFrame, right: pl.DataFrame, seen_ms: Sequence[int | None] = ()
    ) -> JoinOutput:
        left, right = self._prepare(left), self._prepare(right)
        counters = JoinCounters(events_in=left.height + right.height)
        lo = WATERMARK_MIN if self._watermark is None else self._watermark
        t = pl.col(TIME)
        late_left = t + self._after < lo
        late_right = t + (self._before + self._after) < lo
        late = pl.concat(
            [
                left.filter(late_left).with_columns(pl.lit("left").alias("side")),
                right.filter(late_right).with_columns(pl.lit("right").alias("side")),
            ]
        )
        new_left = self._fresh(left.filter(~late_left), self._left.get_column(L_ID))
        new_right = self._fresh(right.filter(~late_right), self._right.get_column(R_ID))
        counters.duplicates = left.height + right.height - late.height
        counters.duplicates -= new_left.height + new_right.height
        new_left = self._as_side(new_left, "left", L_ID, L_TIME).with_columns(
            pl.lit(False).alias(MATCHED)
        )
        new_right = self._as_side(new_right, "right", R_ID, R_TIME)
        pairs = pl.concat(
            [
                self._pairs(new_left, pl.concat([self._right, new_right])),
                self._pairs(self._left, new_right),
            ]
        )
        matched = pairs.get_column(L_ID).implode()
        lefts = pl.concat([self._left, new_left]).with_columns(
            pl.col(MATCHED) | pl.col(L_ID).is_in(matched)
        )
        self._right = pl.concat([self._right, new_right])
        self._observe(seen_ms, left, right)
        if self.definition.late_policy == "dead_letter":
            counters.late_dead_lettered = late.height
        else:
            counters.late_dropped, late = late.height, late.clear()
        return self._close(lefts, pairs, counters, late)

    def flush(self) -> JoinOutput:
        """End of input: every interval closes (unmatched lefts emitted), all state dropped."""
        self._watermark = WATERMARK_MAX
        none = pl.DataFrame(schema=self._result_schema)
        late = self.empty_input().with_columns(pl.lit("left").alias("side"))
        return self._close(self._left, none, JoinCounters(), late)

    def _observe(
        self, seen_ms: Sequence[int | None], left: pl.DataFrame, right: pl.DataFrame
    ) -> None:
        newest = [newest_time(left), newest_time(right)]
        if self.definition.inputs == 1:
            newest = [latest(*newest)]
        for i in range(self.definition.inputs):
            given = seen_ms[i] if i < len(seen_ms) else None
            self._seen[i] = latest(self._seen[i], newest[i], given)
        if all(v is not None for v in self._seen):
            slowest = min(v for v in self._seen if v is not None)
            lateness = self.definition.allowed_lateness_ms
            self._watermark = advanced_watermark(self._watermark, slowest, lateness)

    def _close(
        self, lefts: pl.DataFrame, pairs: pl.DataFrame, counters: JoinCounters, late: pl.DataFrame
    ) -> JoinOutput:
        hi = WATERMARK_MIN if self._watermark is None else self._watermark
        closed = pl.col(L_TIME) + self._after < hi
        unmatched = pl.DataFrame(schema=self._result_schema)
        if self.definition.how == "left":
            unmatched = self._conform(
                lefts.filter(closed & ~pl.col(MATCHED)).drop(MATCHED), self._result_schema
            )
        self._left = self._conform(lefts.filter(~closed), self._left_schema)
        reach = self._before + self._after
        self._right = self._right.filter(pl.col(R_TIME) + reach >= hi)
        counters.pairs_emitted, counters.unmatched_emitted = pairs.height, unmatched.height
        self.counters.add(counters)
        results = pl.concat([self._conform(pairs, self._result_schema), unmatched])
        results = results.sort([KEY, L_TIME, L_ID, R_TIME, R_ID], nulls_last=True)
        return JoinOutput(results=results, late=late, counters=counters)

    # -- helpers --------------------------------------------------------------------------------

    def _prepare(self, batch: pl.DataFrame) -> pl.DataFrame:
        missing = [c for c in self._input_schema if c not in batch.columns]
        if missing:
            raise ValueError(f"join operator input is missing columns {missing}")
        batch = self._conform(batch, self._input_schema)
        if batch.get_column(TIME).null_count() or batch.get_column(ID).null_count():
            raise ValueError("event_time_ms and event_id must not be null")
        return batch

    @staticmethod
    def _fresh(rows: pl.DataFrame, known: pl.Series) -> pl.DataFrame:
        unique = rows.unique(subset=[ID], keep="first", maintain_order=True)
        return unique.filter(~pl.col(ID).is_in(known.implode()))

    def _as_side(self, rows: pl.DataFrame, side: str, id_col: str, time_col: str) -> pl.DataFrame:
        return rows.select(
            KEY,
            pl.col(ID).alias(id_col),
            pl.col(TIME).alias(time_col),
            *(pl.col(n).alias(f"{side}.{n}") for n in self._types),
        )

    def _pairs(self, lefts: pl.DataFrame, rights: pl.DataFrame) -> pl.DataFrame:
        if lefts.is_empty() or rights.is_empty():
            return pl.DataFrame(schema=self._result_schema)
        joined = lefts.drop(MATCHED).join(rights, on=KEY, how="inner")
        lt, rt = pl.col(L_TIME), pl.col(R_TIME)
        inside = (rt >= lt - self._before) & (rt <= lt + self._after)
        return self._conform(joined.filter(inside), self._result_schema)

    @staticmethod
    def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Select and cast to ``schema``; missing columns (an unmatched left's right side) are
        null."""
        have = set(frame.columns)
        return frame.select(
            [(pl.col(n) if n in have else pl.lit(None)).cast(t).alias(n) for n, t in schema.items()]
        )

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """All state as bytes; ``build(definition, resume_state=snapshot)`` continues exactly."""
        left = self._left.sort([KEY, L_TIME, L_ID], nulls_last=True)  # deterministic bytes
        right = self._right.sort([KEY, R_TIME, R_ID], nulls_last=True)
        return self._pack({"left": left, "right": right}, seen_ms=self._seen)

    def _restore(self, resume_state: bytes) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
        header, frames = super()._restore(resume_state)
        self._seen = list(header["seen_ms"])
        self._left = self._conform(frames["left"], self._left_schema)
        self._right = self._conform(frames["right"], self._right_schema)
        return header, frames
