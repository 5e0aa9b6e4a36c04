"""The per-key matcher: partial matches and pending absences of one pattern for one key.

Plain Python over the few events a pattern's conditions select (the conditions themselves are
evaluated column-wise in Polars by the operator). Events arrive in ``(event_time_ms, event_id)``
order; an event is an ``EventRef = (t, id)``. State is JSON-able for snapshots.

A partial match sits in step ``step`` with ``count`` events taken there. Under relaxed
contiguity it waits for two things at most: the next event satisfying its own step (to take one
more, while ``count < max``) and the next event satisfying the following step (to move on, once
``count >= min``). Each is taken by the *first* such event (skip-till-next): the partial forks a
copy that took it and stops waiting for that role; with nothing left to wait for, it is dropped.
Under strict contiguity every event either extends a partial (forks) or ends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.pattern_spec import PatternSpec

__all__ = ["Candidate", "CompiledPattern", "KeyState", "Partial", "feed", "fire_due", "tidy"]

EventRef = tuple[int, str]
Candidate = tuple[tuple[EventRef, ...], ...]  # events per non-absent step


@dataclass(frozen=True)
class CompiledPattern:
    name: str
    within_ms: int
    strict: bool
    skip_past: bool
    absence: bool
    bounds: tuple[tuple[int, int | None], ...]  # (min, max) of each non-absent step

    @classmethod
    def of(cls, spec: PatternSpec) -> CompiledPattern:
        steps = spec.steps[:-1] if spec.absence else spec.steps
        return cls(
            name=spec.name,
            within_ms=spec.within_ms,
            strict=spec.contiguity == "strict",
            skip_past=spec.skip == "past_last_event",
            absence=spec.absence,
            bounds=tuple((s.times.min, s.times.max) for s in steps),
        )


@dataclass
class Partial:
    step: int
    count: int
    events: list[list[EventRef]]
    can_continue: bool = True
    can_advance: bool = False

    @property
    def start(self) -> EventRef:
        return self.events[0][0]

    def took(self, step: int, ev: EventRef, p: CompiledPattern) -> Partial:
        """A copy that took ``ev`` in ``step`` (this one's step, or the next)."""
        events = [list(e) for e in self.events]
        if step == self.step:
            events[step].append(ev)
            count = self.count + 1
        else:
            events.append([ev])
            count = 1
        return _flags(Partial(step, count, events), p)


def _flags(q: Partial, p: CompiledPattern) -> Partial:
    low, high = p.bounds[q.step]
    q.can_continue = high is None or q.count < high
    q.can_advance = q.count >= low and q.step < len(p.bounds) - 1
    return q


@dataclass
class KeyState:
    partials: list[Partial] = field(default_factory=list)
    pending: list[tuple[int, Candidate]] = field(default_factory=list)  # (deadline, prefix)
    marker: EventRef | None = None  # past_last_event: last event of the last accepted match

    def to_json(self) -> dict[str, Any]:
        return {
            "partials": [
                [q.step, q.count, q.events, q.can_continue, q.can_advance] for q in self.partials
            ],
            "pending": [[d, c] for d, c in self.pending],
            "marker": self.marker,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> KeyState:
        def refs(events: list[list[Any]]) -> list[list[EventRef]]:
            return [[(int(t), str(i)) for t, i in step] for step in events]

        return cls(
            partials=[Partial(s, c, refs(e), cc, ca) for s, c, e, cc, ca in doc["partials"]],
            pending=[(int(d), tuple(tuple(s) for s in refs(c))) for d, c in doc["pending"]],
            marker=None if doc["marker"] is None else (int(doc["marker"][0]), doc["marker"][1]),
        )


def order(candidate: Candidate) -> tuple[Any, ...]:
    """How results completing at the same point are ranked: earliest start, then events."""
    flat = tuple(ev for step in candidate for ev in step)
    return (flat[0], flat, tuple(len(step) for step in candidate))


def _accept(p: CompiledPattern, st: KeyState, candidate: Candidate) -> bool:
    """The skip strategy: past_last_event refuses matches starting at or before the last
    accepted match's last event, and drops the partial matches that could only produce those."""
    if not p.skip_past:
        return True
    if st.marker is not None and candidate[0][0] <= st.marker:
        return False
    marker = st.marker = candidate[-1][-1]
    st.partials = [q for q in st.partials if q.start > marker]
    st.pending = [(d, c) for d, c in st.pending if c[0][0] > marker]
    return True


def fire_due(p: CompiledPattern, st: KeyState, until_ms: int) -> list[tuple[int, Candidate]]:
    """Absences whose deadline is ``<= until_ms`` (no event before it can still come)."""
    due = sorted((x for x in st.pending if x[0] <= until_ms), key=lambda x: (x[0], order(x[1])))
    if not due:
        return []
    st.pending = [x for x in st.pending if x[0] > until_ms]
    return [x for x in due if _accept(p, st, x[1])]


def feed(
    p: CompiledPattern, st: KeyState, ev: EventRef, conds: tuple[bool, ...]
) -> tuple[list[tuple[int, Candidate]], list[Candidate]]:
    """One event (``conds[j]``: it satisfies step j; last entry: the absent step, if any).

    Answers (absences fired before it, matches completed by it), each accepted by the skip
    strategy, in the order they complete.
    """
    fired = fire_due(p, st, ev[0]) if p.absence else []
    if p.absence and conds[-1]:
        st.pending = []  # every pending prefix ended before ev, and its deadline is after it
    t, last = ev[0], len(p.bounds) - 1
    new: list[Partial] = []
    keep: list[Partial] = []
    for q in st.partials:
        if t - q.start[0] >= p.within_ms:
            continue
        take_own = q.can_continue and conds[q.step]
        take_next = q.can_advance and conds[q.step + 1]
        if take_own:
            new.append(q.took(q.step, ev, p))
        if take_next:
            new.append(q.took(q.step + 1, ev, p))
        if p.strict:
            continue
        q.can_continue &= not take_own
        q.can_advance &= not take_next
        if q.can_continue or q.can_advance:
            keep.append(q)
    if conds[0]:
        new.append(_flags(Partial(0, 1, [[ev]]), p))
    completed: list[Candidate] = []
    for q in new:
        if q.step == last and q.count >= p.bounds[last][0]:
            candidate = tuple(tuple(s) for s in q.events)
            if p.absence:
                st.pending.append((q.start[0] + p.within_ms, candidate))
            else:
                completed.append(candidate)
        if q.can_continue or q.can_advance:
            keep.append(q)
    st.partials = keep
    completed.sort(key=order)
    return fired, [c for c in completed if _accept(p, st, c)]


def tidy(p: CompiledPattern, st: KeyState, watermark_ms: int) -> bool:
    """Drop partials no future event (all at ``>= watermark_ms``) can extend; answers whether
    anything is left (an empty state is forgotten: its marker cannot matter any more, since every
    later partial starts after it)."""
    st.partials = [q for q in st.partials if watermark_ms - q.start[0] < p.within_ms]
    return bool(st.partials or st.pending)
