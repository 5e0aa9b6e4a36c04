"""The pattern operator: buffers events until event time passes them, then runs each pattern's
matcher (:mod:`pipelines.patterns.nfa`) over them in ``(event_time_ms, event_id)`` order per key.

One ``process(batch, seen_ms)`` runs, with ``w0`` the watermark before the batch:

1. Late: events with ``t < w0`` are dropped (counted) or returned for dead-lettering.
2. Duplicates: an id already buffered, or repeated within the batch, is ignored (a processed
   event has ``t < w0``, so its re-delivery is late).
3. Event time: ``w1 = max(w0, max(t of every record, seen_ms) - allowed_lateness_ms)``.
4. Release: buffered events with ``t < w1`` are matched, sorted per key. Step conditions are
   Polars expressions over the released batch; only the rows they select (every row of the key
   for strict patterns, since any event breaks strict contiguity) reach the Python matcher.
5. Absences whose deadline is ``<= w1`` fire.

Results come out in completion order; a match is final when emitted (event time has passed its
last event, so no earlier event can still change it).
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipelines.decode import globs_regex
from pipelines.event_time import advanced_watermark, latest, newest_time
from pipelines.operator_state import WATERMARK_MAX, WATERMARK_MIN, Counters, StatefulOperator
from pipelines.pattern_spec import ConditionSpec, PatternSpec, PatternStepSpec
from pipelines.patterns.definition import PatternDefinition
from pipelines.patterns.nfa import Candidate, CompiledPattern, KeyState, feed, fire_due, tidy
from pipelines.spec import POLARS_TYPES

__all__ = ["PatternCounters", "PatternOperator", "PatternOutput"]

KEY, TIME, ID, TYPE, SEQ = "key", "event_time_ms", "event_id", "event_type", "__seq"
_COMPARE: dict[str, Callable[[pl.Expr, Any], pl.Expr]] = {
    "==": op.eq,
    "!=": op.ne,
    "<": op.lt,
    "<=": op.le,
    ">": op.gt,
    ">=": op.ge,
}


@dataclass
class PatternCounters(Counters):
    events_in: int = 0
    duplicates: int = 0
    late_dropped: int = 0
    late_dead_lettered: int = 0
    matches_emitted: int = 0
    absences_emitted: int = 0


@dataclass(frozen=True)
class PatternOutput:
    """``results``: one dict per match (pattern, key, kind, start_ms, end_ms, events: step name
    -> event ids; an absent step maps to []); ``late``: dead-lettered input rows."""

    results: list[dict[str, Any]]
    late: pl.DataFrame
    counters: PatternCounters = field(default_factory=PatternCounters)


@dataclass
class _Running:
    spec: PatternSpec
    compiled: CompiledPattern
    conditions: list[pl.Expr]  # step j's condition as column ``__c<j>``
    since_seq: int  # events that arrived before the pattern was installed are not its
    keys: dict[Any, KeyState]

    @classmethod
    def of(cls, spec: PatternSpec, since_seq: int, keys: dict[Any, KeyState]) -> _Running:
        """Compiled once per installed pattern, not once per batch."""
        conditions = [step_condition(s).alias(f"__c{j}") for j, s in enumerate(spec.steps)]
        return cls(spec, CompiledPattern.of(spec), conditions, since_seq, keys)


def step_condition(step: PatternStepSpec) -> pl.Expr:
    """Whether an event satisfies a step: its type matches a glob and every ``where`` holds."""
    expr = pl.lit(True)
    if "*" not in step.event_types:
        expr = pl.col(TYPE).str.contains(globs_regex(step.event_types))
    for cond in step.where:
        expr = expr & _compare(cond)
    return expr.fill_null(False)


def _compare(cond: ConditionSpec) -> pl.Expr:
    return _COMPARE[cond.op](pl.col(cond.field), pl.lit(cond.value))


class PatternOperator(StatefulOperator[PatternDefinition, PatternCounters]):
    """Per-partition CEP over Polars batches; build with :meth:`build` (a resumed one runs the
    patterns its snapshot ran, which :meth:`replace_patterns` may then change)."""

    kind, describes, definition_name = "patterns", "pattern", "pattern pipeline"
    counters_type = PatternCounters

    def __init__(self, definition: PatternDefinition) -> None:
        super().__init__(definition)
        self._schema: dict[str, pl.DataType] = {
            KEY: POLARS_TYPES[definition.key_type],
            TIME: pl.Int64(),
            ID: pl.String(),
            TYPE: pl.String(),
            **{n: POLARS_TYPES[t] for n, t in definition.field_types},
        }
        self._buffer = pl.DataFrame(schema={**self._schema, SEQ: pl.Int64()})
        self._seq = 0
        self._running = [_Running.of(p, 0, {}) for p in definition.patterns]

    @property
    def patterns(self) -> tuple[PatternSpec, ...]:
        return tuple(r.spec for r in self._running)

    def empty_input(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self._schema)

    def replace_patterns(self, patterns: Sequence[PatternSpec]) -> None:
        """Run ``patterns`` from now on: an unchanged pattern (same name, same definition) keeps
        its state; removed ones lose theirs; new or changed ones see only events that arrive
        from the next :meth:`process` on."""
        names = [p.name for p in patterns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate pattern names in {names}")
        current = {r.spec.name: r for r in self._running}
        running = []
        for p in patterns:
            old = current.get(p.name)
            if old is not None and old.spec == p:
                running.append(old)
            else:
                running.append(_Running.of(p, self._seq, {}))
        self._running = running

    # -- the batch cycle ------------------------------------------------------------------------

    def process(self, batch: pl.DataFrame, seen_ms: int | None = None) -> PatternOutput:
        batch = self._prepare(batch)
        counters = PatternCounters(events_in=batch.height)
        lo = WATERMARK_MIN if self._watermark is None else self._watermark
        is_late = pl.col(TIME) < lo
        late = batch.filter(is_late)
        fresh = batch.filter(~is_late).unique(subset=[ID], keep="first", maintain_order=True)
        fresh = fresh.filter(~pl.col(ID).is_in(self._buffer.get_column(ID).implode()))
        counters.duplicates = batch.height - late.height - fresh.height
        fresh = fresh.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + self._seq).alias(SEQ))
        self._seq += fresh.height
        self._buffer = pl.concat([self._buffer, fresh])
        newest = latest(newest_time(batch), seen_ms)
        lateness = self.definition.allowed_lateness_ms
        self._watermark = advanced_watermark(self._watermark, newest, lateness)
        if self.definition.late_policy == "dead_letter":
            counters.late_dead_lettered = late.height
        else:
            counters.late_dropped, late = late.height, late.clear()
        return PatternOutput(self._release(counters), late, counters)

    def flush(self) -> PatternOutput:
        """End of input: every buffered event is matched and every absence fires."""
        self._watermark = WATERMARK_MAX
        counters = PatternCounters()
        results = self._release(counters)
        for r in self._running:
            r.keys.clear()
        return PatternOutput(results, self.empty_input(), counters)

    def _release(self, counters: PatternCounters) -> list[dict[str, Any]]:
        hi = WATERMARK_MIN if self._watermark is None else self._watermark
        ready = pl.col(TIME) < hi
        released = self._buffer.filter(ready).sort([KEY, TIME, ID], nulls_last=True)
        self._buffer = self._buffer.filter(~ready)
        results: list[dict[str, Any]] = []
        for r in self._running:
            results += self._match(r, released, hi)
        counters.matches_emitted = sum(1 for x in results if x["kind"] == "match")
        counters.absences_emitted = len(results) - counters.matches_emitted
        self.counters.add(counters)
        return results

    def _match(self, r: _Running, released: pl.DataFrame, hi: int) -> list[dict[str, Any]]:
        rows = released.filter(pl.col(SEQ) >= r.since_seq, pl.col(KEY).is_not_null())
        rows = rows.select(KEY, TIME, ID, *r.conditions)
        if not r.compiled.strict:
            rows = rows.filter(pl.any_horizontal(pl.exclude(KEY, TIME, ID)))
        p, out = r.compiled, []
        keys = r.keys
        for key, t, event_id, *flags in rows.iter_rows():
            st = keys.get(key)
            if st is None:  # setdefault would build a KeyState for every event
                st = keys[key] = KeyState()
            fired, matched = feed(p, st, (t, event_id), tuple(flags))
            if fired:
                out += [self._absence(r.spec, key, d, c) for d, c in fired]
            if matched:
                out += [self._match_doc(r.spec, key, c) for c in matched]
        for key in list(r.keys):
            st = r.keys[key]
            if p.absence:
                out += [self._absence(r.spec, key, d, c) for d, c in fire_due(p, st, hi)]
            if not tidy(p, st, hi):
                del r.keys[key]
        return out

    @staticmethod
    def _events(spec: PatternSpec, candidate: Candidate) -> dict[str, list[str]]:
        names = [s.name for s in spec.steps]
        found = {name: [i for _, i in evs] for name, evs in zip(names, candidate, strict=False)}
        return {name: found.get(name, []) for name in names}

    def _match_doc(self, spec: PatternSpec, key: Any, c: Candidate) -> dict[str, Any]:
        return {
            "pattern": spec.name,
            "key": key,
            "kind": "match",
            "start_ms": c[0][0][0],
            "end_ms": c[-1][-1][0],
            "events": self._events(spec, c),
        }

    def _absence(self, spec: PatternSpec, key: Any, deadline: int, c: Candidate) -> dict[str, Any]:
        doc = self._match_doc(spec, key, c)
        return {**doc, "kind": "absence", "end_ms": deadline}

    def _prepare(self, batch: pl.DataFrame) -> pl.DataFrame:
        missing = [c for c in self._schema if c not in batch.columns]
        if missing:
            raise ValueError(f"pattern operator input is missing columns {missing}")
        batch = batch.select([pl.col(n).cast(t) for n, t in self._schema.items()])
        if batch.get_column(TIME).null_count() or batch.get_column(ID).null_count():
            raise ValueError("event_time_ms and event_id must not be null")
        return batch

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """All state as bytes, including the patterns it runs; :meth:`build` continues exactly."""
        patterns = [
            {
                "spec": r.spec.model_dump(mode="json"),
                "since_seq": r.since_seq,
                "keys": [[k, st.to_json()] for k, st in sorted(r.keys.items(), key=_by_key)],
            }
            for r in self._running
        ]
        return self._pack({"buffer": self._buffer.sort(SEQ)}, seq=self._seq, patterns=patterns)

    def _restore(self, resume_state: bytes) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
        header, frames = super()._restore(resume_state)
        self._seq = header["seq"]
        self._running = []
        for doc in header["patterns"]:
            spec = PatternSpec.model_validate(doc["spec"])
            keys = {k: KeyState.from_json(st) for k, st in doc["keys"]}
            self._running.append(_Running.of(spec, doc["since_seq"], keys))
        schema = {**self._schema, SEQ: pl.Int64()}
        self._buffer = frames["buffer"].select([pl.col(n).cast(t) for n, t in schema.items()])
        return header, frames


def _by_key(item: tuple[Any, KeyState]) -> tuple[str, str]:
    return (type(item[0]).__name__, str(item[0]))
