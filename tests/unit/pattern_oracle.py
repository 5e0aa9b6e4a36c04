"""A brute-force pattern oracle: every match enumerated straight from the definition in
:mod:`pipelines.patterns` over one key's full event sequence, then the skip strategy applied in
completion order. Used by tests/unit/test_patterns_oracle.py and the integration tests."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.pattern_spec import PatternSpec, PatternStepSpec

OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
Result = tuple[Any, ...]


def brute_force(risk_field: str) -> dict[str, Any]:
    """The brute-force login pattern the tests and the benchmark run: three or more failed
    logins with ``risk_field > 0.5`` within a minute, no overlapping matches."""
    return {
        "name": "brute-force",
        "within_ms": 60_000,
        "skip": "past_last_event",
        "steps": [
            {
                "name": "fails",
                "event_types": ["login.failed"],
                "times": {"min": 3},
                "where": [{"field": risk_field, "op": ">", "value": 0.5}],
            }
        ],
    }


@dataclass(frozen=True)
class Ev:
    key: str | None
    t: int
    id: str
    type: str
    v: int | None
    extra: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str) -> Any:
        return self.v if name == "v" else dict(self.extra).get(name)


def satisfies(step: PatternStepSpec, e: Ev) -> bool:
    if not any(fnmatch.fnmatchcase(e.type, glob) for glob in step.event_types):
        return False
    return all(
        e.get(c.field) is not None and OPS[c.op](e.get(c.field), c.value) for c in step.where
    )


def candidates(p: PatternSpec, seq: list[Ev]) -> Iterator[tuple[tuple[int, ...], ...]]:
    """Every match of the (non-absent) steps, straight from the definition."""
    steps = p.steps[:-1] if p.absence else p.steps
    last = len(steps) - 1

    def grow(groups: list[list[int]], j: int) -> Iterator[tuple[tuple[int, ...], ...]]:
        c, end = len(groups[j]), groups[j][-1]
        low, high = steps[j].times.min, steps[j].times.max
        if j == last and c >= low:
            yield tuple(tuple(g) for g in groups)
        roles = []
        if high is None or c < high:
            roles.append(j)
        if c >= low and j < last:
            roles.append(j + 1)
        for role in roles:
            for k in range(end + 1, len(seq)):
                if seq[k].t - seq[groups[0][0]].t >= p.within_ms:
                    break
                between = range(end + 1, k)
                if p.contiguity == "strict" and k != end + 1:
                    break
                if any(satisfies(steps[role], seq[b]) for b in between):
                    break
                if satisfies(steps[role], seq[k]):
                    grown = [list(g) for g in groups]
                    if role == j:
                        grown[j].append(k)
                    else:
                        grown.append([k])
                    yield from grow(grown, role)

    for i, e in enumerate(seq):
        if satisfies(steps[0], e):
            yield from grow([[i]], 0)


def oracle_results(p: PatternSpec, seq: list[Ev]) -> list[tuple[int, Result]]:
    """(completion time, result) of every emitted result, in completion order."""
    found = set(candidates(p, seq))
    ranked = []
    for c in found:
        flat = tuple(i for g in c for i in g)
        start, end = seq[flat[0]].t, seq[flat[-1]].t
        if p.absence:
            deadline = start + p.within_ms
            later = range(flat[-1] + 1, len(seq))
            if any(seq[k].t < deadline and satisfies(p.steps[-1], seq[k]) for k in later):
                continue
            rank: tuple[Any, ...] = (deadline, flat[0], flat, tuple(map(len, c)))
        else:
            rank = (flat[-1], flat[0], flat, tuple(map(len, c)))
        ranked.append((rank, c))
    ranked.sort()
    marker, out = None, []
    for _rank, c in ranked:
        flat = tuple(i for g in c for i in g)
        if p.skip == "past_last_event":
            if marker is not None and flat[0] <= marker:
                continue
            marker = flat[-1]
        names = [s.name for s in p.steps]
        ids = tuple((n, tuple(seq[i].id for i in g)) for n, g in zip(names, c, strict=False))
        ids += tuple((n, ()) for n in names[len(c) :])
        start = seq[flat[0]].t
        kind = "absence" if p.absence else "match"
        end = start + p.within_ms if p.absence else seq[flat[-1]].t
        due = end if p.absence else end + 1  # released once event time passes the last event
        out.append((due, (p.name, seq[0].key, kind, start, end, ids)))
    return out
