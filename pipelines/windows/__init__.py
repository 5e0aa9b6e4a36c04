"""Windowed aggregation over Polars batches: definitions, runtime operators, outputs.

Build a picklable :class:`WindowDefinition` (from a spec or by hand), then one operator per
partition with ``WindowOperator.build(definition, resume_state=None)``; feed it batches with
columns ``key``, ``event_time_ms``, ``event_id`` and the payload fields the aggregations read.

Semantics (exact; the oracle tests in tests/unit/test_windows_oracle.py check them):

- Watermark = max event time seen - ``allowed_lateness_ms``, where "seen" includes the
  ``seen_ms`` of records the pipeline filtered out, advanced once per batch after the
  batch is applied; a window ``[start, end)`` closes when ``end <= watermark``.
- Late events: an event is late when every window it belongs to was closed before its batch.
  "drop" counts and discards it, "dead_letter" returns it in ``WindowOutput.late``, "update"
  applies it to windows still retained (``end > watermark - retain_closed_ms``) and re-emits them
  with ``revision + 1``; older ones are dropped (counted in ``late_dropped``). Within a hopping
  event's windows, closed ones are skipped (or updated under "update") while open ones apply.
- Duplicates: an event whose ``event_id`` was applied before is ignored while the state of a
  window it contributed to is held (open, or retained for updates); memory is therefore bounded
  by the held windows. Re-deliveries after that are late and follow the late policy.
- Emission: "on_close" emits a window once when it closes and again after each late update;
  "on_update" emits after every batch that changes a window, and when it closes.
  ``revision`` is 0 for the first emission of a window and +1 for each later one.
- ``flush()`` closes everything (watermark = int64 max) and drops all state.
- ``snapshot()`` returns bytes; ``WindowOperator.build(definition, snapshot)`` continues exactly
  as the original operator would have.

>>> import polars as pl
>>> from pipelines.windows import Aggregation, HoppingWindow, WindowDefinition, WindowOperator
>>> definition = WindowDefinition(
...     HoppingWindow(size_ms=10, slide_ms=5),
...     (Aggregation("n", "count"), Aggregation("total", "sum", "amount")),
...     field_types=(("amount", "int"),),
... )
>>> op = WindowOperator.build(definition)
>>> batch = pl.DataFrame(
...     {"key": ["a", "a"], "event_time_ms": [3, 7], "event_id": ["e1", "e2"], "amount": [1, 2]}
... )
>>> op.process(batch).results.select("window_start_ms", "n", "total").rows()  # [-5, 5) closed
[(-5, 1, 1)]
>>> op.watermark_ms
7
>>> op.flush().results.select("window_start_ms", "n", "total").rows()
[(0, 2, 3), (5, 1, 2)]
>>> resumed = WindowOperator.build(definition, resume_state=op.snapshot())
"""

# fixed and session register their window kinds with WindowOperator.build on import
from pipelines.windows import fixed, session  # noqa: F401
from pipelines.windows.base import WindowOperator
from pipelines.windows.definitions import (
    Aggregation,
    HoppingWindow,
    SessionWindow,
    TumblingWindow,
    WindowDefinition,
    WindowKind,
)
from pipelines.windows.state import SnapshotError, WindowCounters, WindowOutput

__all__ = [
    "Aggregation",
    "HoppingWindow",
    "SessionWindow",
    "SnapshotError",
    "TumblingWindow",
    "WindowCounters",
    "WindowDefinition",
    "WindowKind",
    "WindowOperator",
    "WindowOutput",
]
