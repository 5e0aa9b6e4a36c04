"""Batch bodies: a JSON object or array, NDJSON, or an Arrow IPC stream, into validated events.

>>> body = parse_batch(b'[{"event_type": "a.b", "source_capability": "c", "aggregate_id": "1",'
...                    b' "aggregate_type": "T"}]', "application/json")
>>> [e.event_type for e in validate_events(body.events)]
['a.b']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
from pydantic import TypeAdapter, ValidationError

from cluster.errors import BadRequest, InvalidInput, UnsupportedMediaType
from pipelines.envelope import EventIn

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
ARROW_TYPES = frozenset({"application/vnd.apache.arrow.stream"})
BATCH_TYPES = JSON_TYPES | NDJSON_TYPES | ARROW_TYPES

_EVENTS = TypeAdapter(list[EventIn])


@dataclass
class BatchBody:
    """Events, plus the envelope fields a JSON object body may carry (else: the query string)."""

    events: list[Any]
    envelope: dict[str, Any] = field(default_factory=dict)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def parse_batch(body: bytes, content_type: str | None) -> BatchBody:
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        return _from_json(parse_json(body))
    if kind in NDJSON_TYPES:
        return BatchBody(events=_ndjson(body))
    if kind in ARROW_TYPES:
        return BatchBody(events=_arrow(body))
    raise UnsupportedMediaType(
        f"content type {kind or '(none)'!r} is not accepted here; send one of "
        + ", ".join(sorted(BATCH_TYPES))
    )


def _from_json(doc: Any) -> BatchBody:
    if isinstance(doc, list):
        return BatchBody(events=doc)
    if isinstance(doc, dict):
        events = doc.get("events")
        if not isinstance(events, list):
            raise InvalidInput("a batch object needs an 'events' array")
        return BatchBody(events=events, envelope={k: v for k, v in doc.items() if k != "events"})
    raise InvalidInput("a batch is a JSON object with an 'events' array, or a JSON array")


def _ndjson(body: bytes) -> list[Any]:
    events = []
    for number, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"NDJSON line {number} is not valid JSON: {exc}") from None
    return events


def arrow_table(body: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadRequest(f"body is not a valid Arrow IPC stream: {exc}") from None


def _arrow(body: bytes) -> list[Any]:
    table = arrow_table(body)
    rows = table.to_pylist()
    if "payload" in table.column_names and pa.types.is_string(table.schema.field("payload").type):
        for row in rows:  # payload sent as JSON text
            if isinstance(row.get("payload"), str):
                row["payload"] = parse_json(row["payload"].encode())
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def validate_events(raw: list[Any]) -> list[EventIn]:
    """All or nothing: one bad event rejects the batch, and every problem is listed."""
    try:
        return _EVENTS.validate_python(raw)
    except ValidationError as exc:
        errors = [
            {
                "index": e["loc"][0] if e["loc"] else None,
                "field": ".".join(map(str, e["loc"][1:])),
                "message": e["msg"],
            }
            for e in exc.errors(include_url=False)
        ]
        raise InvalidInput(
            f"{len(errors)} problem(s) in the batch; nothing was published", errors=errors
        ) from None
