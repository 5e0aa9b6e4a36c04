"""The runtime window operator: shared batch cycle, emission, purging and snapshots.

One operator per (pipeline, partition). Each ``process(batch)`` runs, in order:

1. Deduplicate: drop rows whose ``event_id`` repeats within the batch (first kept) or is still
   remembered from earlier batches (see "Duplicates" in :mod:`pipelines.windows`).
2. Classify and apply against the watermark *before* the batch (``w0``): an (event, window) pair
   is applied when the window is open (``end > w0``) or, under late_policy "update", still
   retained (``end > w0 - retain_closed_ms``). An event is late when all its windows are closed.
3. Advance the watermark: ``w1 = max(w0, max(event time of new events, seen_ms) -
   allowed_lateness_ms)``; ``seen_ms`` covers the records the pipeline filtered out.
4. Emit: "on_close" emits a window when it closes (``w0 < end <= w1``) and again whenever a late
   event changes it after closing; "on_update" also emits every window the batch changed.
   ``revision`` counts a window's earlier emissions.
5. Purge: drop window state with ``end <= w1 - retention`` (retention is 0 unless "update").

Watermark granularity is the batch: lateness depends on where batches are cut, which is what the
oracle tests reproduce. Subclasses only assign events to windows (fixed or session).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import polars as pl

from pipelines.event_time import advanced_watermark, latest, newest_time
from pipelines.operator_state import WATERMARK_MAX, WATERMARK_MIN, StatefulOperator
from pipelines.windows.aggregations import (
    POLARS_TYPES,
    final_exprs,
    final_schema,
    merge_exprs,
    partial_schema,
)
from pipelines.windows.definitions import WindowDefinition
from pipelines.windows.state import WindowCounters, WindowOutput

__all__ = ["WindowOperator"]

KEY, START, END, TIME, ID = "key", "window_start_ms", "window_end_ms", "event_time_ms", "event_id"
ROW, EMITTED, CHANGED = "__row", "__emitted", "__changed"
WINDOW_KEYS = [KEY, START, END]


class WindowOperator(StatefulOperator[WindowDefinition, WindowCounters], ABC):
    """Per-partition windowed aggregation over Polars batches; build with :meth:`build`."""

    definition_name = "window"
    counters_type = WindowCounters
    window_types: ClassVar[tuple[type, ...]] = ()  # the window definitions this class runs
    _by_window: ClassVar[dict[type, type[WindowOperator]]] = {}

    def __init__(self, definition: WindowDefinition) -> None:
        super().__init__(definition)
        self._aggs = definition.aggregations
        self._used = definition.used_fields
        self._key_dtype = POLARS_TYPES[definition.key_type]
        self._retention = definition.retention_ms
        types = dict(definition.field_types)
        self._state_schema: dict[str, pl.DataType] = {
            KEY: self._key_dtype,
            START: pl.Int64(),
            END: pl.Int64(),
            EMITTED: pl.Int64(),
            **partial_schema(self._aggs, types),
            **self._extra_state_schema(),
        }
        self._result_schema: dict[str, pl.DataType] = {
            KEY: self._key_dtype,
            START: pl.Int64(),
            END: pl.Int64(),
            **final_schema(self._aggs, types),
            "revision": pl.Int64(),
            "closed": pl.Boolean(),
        }
        self._state = pl.DataFrame(schema=self._state_schema)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each operator registers the window kinds it runs (pipelines.windows imports them all).
        super().__init_subclass__(**kwargs)
        for kind in cls.window_types:
            WindowOperator._by_window[kind] = cls
        if "kind" in cls.__dict__:
            cls.describes = f"{cls.kind} window"

    @classmethod
    def _class_for(cls, definition: WindowDefinition) -> type[WindowOperator]:
        return WindowOperator._by_window[type(definition.window)]

    @property
    def open_windows(self) -> int:
        """Windows currently held (open ones plus closed ones retained for late updates)."""
        return self._state.height

    # -- the batch cycle ------------------------------------------------------------------------

    def process(self, batch: pl.DataFrame, seen_ms: int | None = None) -> WindowOutput:
        """Fold one batch into the windows; returns what to emit, dead letters and counters.

        ``seen_ms``: the newest event time of every record the partition delivered with this
        batch, including those the pipeline filtered out; it advances the watermark too.
        """
        batch = self._prepare(batch)
        counters = WindowCounters(events_in=batch.height)
        w0 = self._watermark
        fresh = self._deduplicate(batch)
        counters.duplicates = batch.height - fresh.height
        applied_late, rejected = self._apply(fresh, WATERMARK_MIN if w0 is None else w0)
        policy = self.definition.late_policy
        counters.late_updated = applied_late
        late = batch.filter(pl.col(ROW).is_in(rejected.implode())).drop(ROW)
        if policy == "dead_letter":
            counters.late_dead_lettered = late.height
        else:
            counters.late_dropped = late.height
            late = late.clear()
        newest = latest(newest_time(fresh), seen_ms)
        w1 = advanced_watermark(w0, newest, self.definition.allowed_lateness_ms)
        return self._close(w0, w1, counters, late)

    def flush(self) -> WindowOutput:
        """End of input: close and emit every open window, drop all state.

        The watermark becomes int64 max, so later events are late (dropped or dead-lettered).
        """
        self._state = self._state.with_columns(pl.lit(False).alias(CHANGED))
        empty = pl.DataFrame(schema={KEY: self._key_dtype, TIME: pl.Int64(), ID: pl.String()})
        return self._close(self._watermark, WATERMARK_MAX, WindowCounters(), empty)

    def _prepare(self, batch: pl.DataFrame) -> pl.DataFrame:
        missing = [c for c in (KEY, TIME, ID, *self._used) if c not in batch.columns]
        if missing:
            raise ValueError(f"window operator input is missing columns {missing}")
        casts = [pl.col(KEY).cast(self._key_dtype), pl.col(TIME).cast(pl.Int64)]
        casts.append(pl.col(ID).cast(pl.String))
        casts += [pl.col(name).cast(POLARS_TYPES[t]) for name, t in self._used.items()]
        batch = batch.with_columns(casts)
        if batch.get_column(TIME).null_count() or batch.get_column(ID).null_count():
            raise ValueError("event_time_ms and event_id must not be null")
        return batch.with_row_index(ROW)

    def _deduplicate(self, batch: pl.DataFrame) -> pl.DataFrame:
        columns = [ROW, KEY, TIME, ID, *self._used]
        unique = batch.select(columns).unique(subset=[ID], keep="first", maintain_order=True)
        return unique.join(self._known_ids(), on=ID, how="anti")

    def _close(
        self,
        w0: int | None,
        w1: int | None,
        counters: WindowCounters,
        late: pl.DataFrame,
    ) -> WindowOutput:
        lo = WATERMARK_MIN if w0 is None else w0
        hi = WATERMARK_MIN if w1 is None else w1
        end, changed = pl.col(END), pl.col(CHANGED)
        newly_closed = (end > lo) & (end <= hi)
        if self.definition.emit == "on_close":
            emit = (end <= hi) & (newly_closed | changed)
        else:
            emit = changed | newly_closed
        state = self._state.with_columns(emit.alias("__emit"))
        emitted = state.filter(pl.col("__emit"))
        results = emitted.select(
            *WINDOW_KEYS,
            *final_exprs(self._aggs),
            pl.col(EMITTED).alias("revision"),
            (end <= hi).alias("closed"),
        )
        results = self._conform(results, self._result_schema).sort(WINDOW_KEYS, nulls_last=True)
        state, retracted = self._on_emit(state)
        state = state.with_columns(pl.col(EMITTED) + pl.col("__emit").cast(pl.Int64))
        horizon = self._horizon(hi)
        self._state = self._conform(state.filter(end > horizon), self._state_schema)
        self._purge(horizon)
        self._watermark = w1
        counters.windows_emitted = results.height
        self.counters.add(counters)
        return WindowOutput(results=results, late=late, retracted=retracted, counters=counters)

    # -- helpers for subclasses -----------------------------------------------------------------

    @staticmethod
    def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Select and cast to ``schema`` so concatenations and snapshots stay type-stable."""
        return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])

    def _horizon(self, watermark: int) -> int:
        """Windows with ``end <= horizon`` are gone: closed and past retention."""
        return max(watermark - self._retention, WATERMARK_MIN)

    def _merge_rows(self, rows: pl.DataFrame, by: str | list[str], *extra: pl.Expr) -> pl.DataFrame:
        """Merge partial-state rows per window (``by``); ``extra`` merges subclass columns."""
        return rows.group_by(by).agg(*merge_exprs(self._aggs), pl.col(EMITTED).max(), *extra)

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """All state as bytes; ``build(definition, resume_state=snapshot)`` continues exactly."""
        state = self._state.sort(WINDOW_KEYS, nulls_last=True)  # deterministic bytes
        return self._pack({"state": state, **self._extra_frames()})

    def _restore(self, resume_state: bytes) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
        header, frames = super()._restore(resume_state)
        self._state = self._conform(self._upgrade_state(frames["state"]), self._state_schema)
        self._restore_extra(frames)
        return header, frames

    # -- what subclasses provide ----------------------------------------------------------------

    def _extra_state_schema(self) -> dict[str, pl.DataType]:
        return {}

    def _extra_frames(self) -> dict[str, pl.DataFrame]:
        return {}

    def _restore_extra(self, frames: dict[str, pl.DataFrame]) -> None:
        return None

    def _upgrade_state(self, state: pl.DataFrame) -> pl.DataFrame:
        """A restored state frame with columns older snapshots lack filled in."""
        return state

    def _purge(self, horizon: int) -> None:
        """Drop subclass bookkeeping for windows with ``end <= horizon``."""
        return None

    def _on_emit(self, state: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Hook run on the state flagged with ``__emit``; returns (state, retracted windows)."""
        retracted = pl.DataFrame(schema={KEY: self._key_dtype, START: pl.Int64(), END: pl.Int64()})
        return state, retracted

    @abstractmethod
    def _known_ids(self) -> pl.DataFrame:
        """Event ids still remembered for deduplication (one ``event_id`` column)."""

    @abstractmethod
    def _apply(self, fresh: pl.DataFrame, w0: int) -> tuple[int, pl.Series]:
        """Fold new events into ``self._state`` (adding a ``__changed`` flag column).

        Returns the number of late events applied (update policy) and the ``__row`` ids of late
        events that were not applied (dropped or dead-lettered by the caller).
        """
