"""Publish-time validation: a stream binds event types to schema ids (StreamRecord.schemas);
each event of a bound type is checked against its schema's compiled validator (cached per id
in this process, so a warm publish costs no Redis call). One invalid event refuses the whole
batch with a SchemaViolation (422) naming every invalid event, its field and why.

Event types the stream does not bind are published unchecked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from cluster.errors import SchemaViolation
from cluster.models.streams import StreamRecord
from cluster.services.schemas import SchemaRegistryService
from pipelines.arrow_batch import OPTIONAL, REQUIRED
from pipelines.envelope import EventIn

ENVELOPE_COLUMNS = frozenset({*REQUIRED, *OPTIONAL})  # the rest of a frame is payload
MAX_LISTED = 20  # problems listed in one answer: enough to fix a batch, not a 10 MB error


class PayloadChecker:
    def __init__(self, registry: SchemaRegistryService) -> None:
        self._registry = registry

    async def check_events(self, stream: StreamRecord, events: Sequence[EventIn]) -> None:
        """SchemaViolation unless every event of a bound type matches its schema."""
        found = await self.violations(stream, events)
        _raise([p for problems in found.values() for p in problems], len(events))

    async def violations(
        self, stream: StreamRecord, events: Sequence[EventIn]
    ) -> dict[int, list[dict[str, Any]]]:
        """Per invalid event (by index): which field is wrong and why ({} when all are valid)."""
        if not stream.schemas:
            return {}
        bound = {i: e for i, e in enumerate(events) if e.event_type in stream.schemas}
        if not bound:
            return {}
        checks = await self._registry.validators(stream.tenant_id, _ids(stream))
        found: dict[int, list[dict[str, Any]]] = {}
        for index, event in bound.items():
            schema_id = stream.schemas[event.event_type]
            problems = checks[schema_id].problems(event.payload)
            if problems:
                where = {"index": index, "event_type": event.event_type, "schema_id": schema_id}
                found[index] = [where | p for p in problems]
        return found

    @staticmethod
    def single(problems: list[dict[str, Any]]) -> SchemaViolation:
        """The error for one event published alone (a coalesced single publish)."""
        return _violation([p | {"index": 0} for p in problems], 1)

    async def check_frame(self, stream: StreamRecord, frame: pl.DataFrame) -> None:
        """The same for an Arrow frame: each row's payload columns (nulls read as absent)."""
        if not stream.schemas or "event_type" not in frame.columns:
            return
        payload_columns = [c for c in frame.columns if c not in ENVELOPE_COLUMNS]
        types = frame.get_column("event_type")
        bound = [t for t in types.unique().to_list() if t in stream.schemas]
        if not bound:
            return
        checks = await self._registry.validators(stream.tenant_id, _ids(stream))
        problems: list[dict[str, Any]] = []
        indexed = frame.with_row_index("__row")
        for event_type in bound:
            rows = indexed.filter(pl.col("event_type") == event_type)
            schema_id = stream.schemas[event_type]
            check = checks[schema_id]
            payloads = rows.select(payload_columns).to_dicts()
            for row, payload in zip(rows.get_column("__row").to_list(), payloads, strict=True):
                present = {k: v for k, v in payload.items() if v is not None}
                for problem in check.problems(present):
                    problems.append(
                        {"index": row, "event_type": event_type, "schema_id": schema_id} | problem
                    )
                if len(problems) >= MAX_LISTED:
                    break
        _raise(sorted(problems, key=lambda p: p["index"]), frame.height)


def _ids(stream: StreamRecord) -> list[int]:
    return sorted(set(stream.schemas.values()))


def _raise(problems: list[dict[str, Any]], total: int) -> None:
    if problems:
        raise _violation(problems, total)


def _violation(problems: list[dict[str, Any]], total: int) -> SchemaViolation:
    listed = problems[:MAX_LISTED]
    detail = "; ".join(
        f"event {p['index']} ({p['event_type']}, schema {p['schema_id']}): "
        f"{p['field'] or '/'}: {p['message']}"
        for p in listed
    )
    return SchemaViolation(
        f"{len({p['index'] for p in problems})} of {total} event(s) do not match their "
        f"schema; nothing was published: {detail}",
        errors=listed,
    )
