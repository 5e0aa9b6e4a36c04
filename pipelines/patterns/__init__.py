"""Complex event processing: patterns per key on event time, over Polars batches.

Build a :class:`PatternDefinition` (from a spec or by hand), then one operator per partition
with ``PatternOperator.build(definition, resume_state=None)``; feed it batches with columns
``key``, ``event_time_ms``, ``event_id``, ``event_type`` and the spec's payload fields, plus the
newest event time of every record the partition delivered. The batch cycle is documented in
:mod:`pipelines.patterns.operator`, the matcher in :mod:`pipelines.patterns.nfa`;
tests/unit/test_patterns_oracle.py checks both against a brute-force oracle.

Semantics. Per key, the events are taken in ``(event_time_ms, event_id)`` order. A match assigns
``min..max`` consecutive-in-the-match events to each step in turn, each satisfying its step
(type globs and every ``where``), spanning ``last - first < within_ms``, and:

- ``strict``: the matched events are adjacent in the key's sequence (Flink ``next()``);
- ``relaxed``: the event in each role is the *first* one after the previous matched event that
  satisfies that role's step (Flink ``followedBy``, skip-till-next), for steps and repetitions
  alike (Flink's default inner contiguity of ``times``);
- an ``absent`` last step turns the match into an *absence*: a match of the steps before it with
  no event of the absent step after it before ``start + within_ms`` (the deadline); it is
  emitted when event time reaches the deadline (Flink ``notFollowedBy`` + ``within``);
- ``skip``: ``no_skip`` emits every match; ``past_last_event`` emits, in completion order (last
  event, or deadline), only matches starting after the last emitted match's last event.

A match with a repeated last step is emitted on reaching ``min`` and again with every further
event up to ``max`` (Flink's non-greedy default). ``kind`` is ``match`` or ``absence``;
``start_ms`` is the first event's time, ``end_ms`` the last's (the deadline for an absence).

Where we differ from Flink CEP, on purpose:

- Ties in event time are ordered by event id, not arrival, so results never depend on how Kafka
  records were batched. Late events (``t < watermark``) are dropped or dead-lettered, never
  matched.
- Relaxed contiguity is skip-till-next *per role*: when an event could either repeat a step or
  start the next, both continuations are kept, and identical matches reached two ways are one.
  There is no ``followedByAny`` (skip-till-any), no ``optional()``/``times.min == 0``, no
  ``greedy()``, no ``until()``, and no other skip strategy (``skip_to_first``/``skip_to_next``).
- ``absent`` is only supported on the last step (no ``notNext`` in the middle of a sequence),
  and it ignores contiguity: any event of the absent step before the deadline cancels it.
- ``within_ms`` bounds ``last - first`` strictly (as Flink's timeout does), per pattern only.
- Absences are results of their own (``kind: absence``), not a timeout side output.

Cost: step conditions are vectorised; the matcher is a Python loop over the rows they select
(all rows of the key for strict patterns), so throughput scales with *selected* events.

>>> import polars as pl
>>> from pipelines.pattern_spec import PatternSpec
>>> unpaid = PatternSpec.model_validate({"name": "unpaid", "within_ms": 100, "steps": [
...     {"name": "created", "event_types": ["order.created"]},
...     {"name": "paid", "event_types": ["order.paid"], "absent": True}]})
>>> op = PatternOperator.build(PatternDefinition((unpaid,)))
>>> events = pl.DataFrame({"key": ["o1", "o2", "o1"], "event_time_ms": [0, 10, 50],
...     "event_id": ["e1", "e2", "e3"], "event_type": ["order.created", "order.created",
...     "order.paid"]})
>>> op.process(events).results
[]
>>> [(r["key"], r["kind"], r["end_ms"]) for r in op.process(events.clear(), seen_ms=200).results]
[('o2', 'absence', 110)]
"""

from pipelines.patterns.definition import PatternDefinition
from pipelines.patterns.operator import PatternCounters, PatternOperator, PatternOutput

__all__ = ["PatternCounters", "PatternDefinition", "PatternOperator", "PatternOutput"]
