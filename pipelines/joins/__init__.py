"""Interval joins (Kafka Streams ``JoinWindows`` semantics) over Polars batches.

Build a :class:`JoinDefinition` (from a spec or by hand), then one operator per partition with
``JoinOperator.build(definition, resume_state=None)``; feed it each batch's left and right rows
(columns ``key``, ``event_time_ms``, ``event_id`` and the spec's payload fields) with the newest
event time every input delivered. The cycle is documented in :mod:`pipelines.joins.operator`;
tests/unit/test_joins_oracle.py checks it against a brute-force oracle.

Where this differs from Kafka Streams: an unmatched left row (``how="left"``) is emitted once,
when its interval has closed by event time, never eagerly with a null that a later pair
contradicts; late records are dropped (or dead-lettered) by the same interval rule on both
sides; a duplicate event id on one side is ignored instead of joining twice.

>>> import polars as pl
>>> from pipelines.joins import JoinDefinition, JoinOperator
>>> op = JoinOperator.build(JoinDefinition(before_ms=0, after_ms=10, how="left"))
>>> rows = lambda keys, times, ids: pl.DataFrame(
...     {"key": keys, "event_time_ms": times, "event_id": ids})
>>> out = op.process(rows(["a", "b"], [0, 1], ["o1", "o2"]), rows(["a"], [5], ["p1"]))
>>> out.results.select("key", "left_event_id", "right_event_id").rows()
[('a', 'o1', 'p1')]
>>> op.process(rows([], [], []), rows([], [], []), seen_ms=[30]).results.select(
...     "key", "left_event_id", "right_event_id").rows()  # b's interval [1, 11] closed
[('b', 'o2', None)]
"""

from pipelines.joins.definition import JoinDefinition
from pipelines.joins.operator import JoinCounters, JoinOperator, JoinOutput

__all__ = ["JoinCounters", "JoinDefinition", "JoinOperator", "JoinOutput"]
