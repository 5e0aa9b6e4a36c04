"""Kafka records of a stream as the event store's replay frame: one row per event, envelope
columns (FRAME_SCHEMA) plus `data`, a struct of the payload fields. Pure: no I/O.

JSON records are parsed in one `pl.read_ndjson` call per batch and Arrow-batched records are
read as the Arrow IPC they are; only when a batch does not parse in bulk (another client's
record, payloads whose field types clash) do its JSON records go through orjson one by one.
Records that are no CloudEvent (not an object, no string `id`) are left out, as the indexer
leaves them out.

>>> value = (b'{"specversion":"1.0","id":"e1","type":"order.placed",'
...          b'"time":"2026-11-29T16:00:00.123Z","aggregateid":"o1","aggregatetype":"Order",'
...          b'"data":{"amount":9.5}}')
>>> frame = records_frame([RawRecord(0, 7, 0, value, arrow=False)], "s1")
>>> frame.select("event_id", "type", "aggregate_id", "offset").rows()
[('e1', 'order.placed', 'o1', 7)]
>>> frame.get_column("data").struct.field("amount").to_list()
[9.5]
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
import polars as pl

from pipelines.arrow_batch import ENVELOPE, read_batch

VERSION_ATTRIBUTE = "esbversion"  # an aggregate event's version (a CloudEvents extension attribute)

FRAME_SCHEMA: dict[str, Any] = {
    "event_id": pl.String,
    "type": pl.String,
    "time": pl.Datetime("ms", "UTC"),
    "aggregate_type": pl.String,
    "aggregate_id": pl.String,
    "version": pl.Int64,
    "correlation_id": pl.String,
    "user_id": pl.String,
    "stream_id": pl.String,
    "partition": pl.Int64,
    "offset": pl.Int64,
}
# CloudEvents attribute of each envelope column a JSON record fills.
_ATTRIBUTES = {
    "event_id": "id",
    "type": "type",
    "aggregate_type": "aggregatetype",
    "aggregate_id": "aggregateid",
    "version": VERSION_ATTRIBUTE,
    "correlation_id": "correlationid",
    "user_id": "userid",
}


_ROWS = "__rows"


class RawRecord(NamedTuple):
    """One Kafka record as read (its value already decrypted on an encrypted stream)."""

    partition: int
    offset: int
    timestamp_ms: int
    value: bytes
    arrow: bool  # an Arrow-batched record (header esb-format: arrow-batch-v1)


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema={**FRAME_SCHEMA, "data": pl.Struct([])})


def records_frame(records: Sequence[RawRecord], stream_id: str) -> pl.DataFrame:
    """Every event of `records` in (partition, offset, index in record) order."""
    parts: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    plain = [r for r in records if not r.arrow]
    if plain:
        parts.append(_json_part(plain, stream_id))
    parts.extend(_arrow_part(r, stream_id) for r in records if r.arrow)
    if not parts:
        return empty_frame()
    return _assemble(parts).sort("partition", "offset", maintain_order=True)


def concat_frames(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Replay frames as one: `data` holds every frame's payload fields (pl.concat cannot join
    structs whose fields differ)."""
    frames = [f for f in frames if f.height]
    if not frames:
        return empty_frame()
    return _assemble([(f.drop("data"), f.get_column("data").struct.unnest()) for f in frames])


def _assemble(parts: Sequence[tuple[pl.DataFrame, pl.DataFrame]]) -> pl.DataFrame:
    """(envelope, payload columns) pairs as one frame; payload fields sorted by name, and
    fields whose types cannot be reconciled given as JSON text."""
    envelope = pl.concat([e for e, _ in parts], how="vertical")
    # A placeholder column: diagonal concat drops the rows of frames with no columns.
    payloads = [p.with_columns(pl.lit(0, pl.Int8).alias(_ROWS)) for _, p in parts]
    try:
        payload = pl.concat(payloads, how="diagonal_relaxed")
    except pl.exceptions.PolarsError:
        payload = _text_payloads([row for _, p in parts for row in p.to_dicts()])
    payload = payload.select(sorted(c for c in payload.columns if c != _ROWS))
    if payload.width == 0:
        data = pl.Series("data", [{}] * envelope.height, dtype=pl.Struct([]))
    else:
        data = payload.to_struct("data")
    return envelope.with_columns(data)


def _json_part(records: Sequence[RawRecord], stream_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    values = [r.value for r in records]
    buffer = b"\n".join(values)
    if buffer.count(b"\n") != len(values) - 1:  # raw newlines can only be JSON whitespace
        buffer = b"\n".join(v.replace(b"\n", b" ") for v in values)
    try:
        raw = pl.read_ndjson(io.BytesIO(buffer), infer_schema_length=None)
        bulk = raw.height == len(records) and _bulk_ok(raw)
    except pl.exceptions.PolarsError:
        bulk = False
    if not bulk:
        raw = _one_by_one(records)
    else:
        raw = raw.with_columns(
            pl.Series("__partition", [r.partition for r in records], pl.Int64),
            pl.Series("__offset", [r.offset for r in records], pl.Int64),
        )
    raw = raw.filter(pl.col("id").is_not_null())
    envelope = raw.select(
        *(_attribute(raw, column, source) for column, source in _ATTRIBUTES.items()),
        pl.lit(stream_id, pl.String).alias("stream_id"),
        pl.col("__partition").alias("partition"),
        pl.col("__offset").alias("offset"),
        _time(raw).alias("time"),
    ).select(list(FRAME_SCHEMA))
    data = raw.schema.get("data")
    if isinstance(data, pl.Struct):
        payload = raw.get_column("data").struct.unnest()
    else:
        payload = pl.DataFrame(height=raw.height)
    return envelope, payload


def _bulk_ok(raw: pl.DataFrame) -> bool:
    """Whether the inferred frame reads like CloudEvents (a string id; data objects or absent)."""
    schema = raw.schema
    data = schema.get("data", pl.Null())
    return schema.get("id") == pl.String and isinstance(data, pl.Struct | pl.Null)


def _attribute(raw: pl.DataFrame, column: str, source: str) -> pl.Expr:
    dtype = FRAME_SCHEMA[column]
    if source not in raw.columns:
        return pl.lit(None, dtype).alias(column)
    return pl.col(source).cast(dtype, strict=False).alias(column)


def _time(raw: pl.DataFrame) -> pl.Expr:
    if "time" not in raw.columns or raw.schema["time"] != pl.String:
        return pl.lit(None, FRAME_SCHEMA["time"])
    return pl.col("time").str.to_datetime(
        format="%+", time_unit="ms", time_zone="UTC", strict=False
    )


def _one_by_one(records: Sequence[RawRecord]) -> pl.DataFrame:
    """The slow path: each record through orjson; the envelope attributes as strings."""
    rows: list[dict[str, Any]] = []
    payloads: list[dict[str, Any]] = []
    for r in records:
        try:
            event = orjson.loads(r.value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            continue
        row: dict[str, Any] = {
            source: event.get(source) for source in (*_ATTRIBUTES.values(), "time")
        }
        rows.append(row | {"__partition": r.partition, "__offset": r.offset})
        data = event.get("data")
        payloads.append(data if isinstance(data, dict) else {})
    strings = {source: pl.String for source in (*_ATTRIBUTES.values(), "time")}
    schema = {**strings, VERSION_ATTRIBUTE: pl.Int64, "__partition": pl.Int64, "__offset": pl.Int64}
    for row in rows:  # attributes of the wrong JSON type are null, as in the bulk path
        for source, dtype in schema.items():
            wanted = int if dtype == pl.Int64 else str
            if not isinstance(row[source], wanted) or isinstance(row[source], bool):
                row[source] = None
    frame = pl.DataFrame(rows, schema=schema)
    try:
        payload = pl.from_dicts(payloads, infer_schema_length=None) if any(payloads) else None
    except pl.exceptions.PolarsError:
        payload = _text_payloads(payloads)
    if payload is None or payload.width == 0:
        return frame
    return frame.with_columns(payload.to_struct("data"))


def _text_payloads(payloads: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Payloads whose fields disagree on types: every non-string value as its JSON text."""
    texts = [
        {
            k: v if isinstance(v, str) or v is None else orjson.dumps(v).decode()
            for k, v in p.items()
        }
        for p in payloads
    ]
    fields = sorted({k for p in texts for k in p})
    return pl.DataFrame(
        {f: [p.get(f) for p in texts] for f in fields},
        schema={f: pl.String for f in fields},
        height=len(texts),
    )


def _arrow_part(record: RawRecord, stream_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = read_batch(record.value)
    columns = set(frame.columns)

    def column(name: str, dtype: Any) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in columns else pl.lit(None, dtype)

    envelope = frame.select(
        column("event_id", pl.String).alias("event_id"),
        column("event_type", pl.String).alias("type"),
        column("event_time_ms", pl.Int64).cast(FRAME_SCHEMA["time"]).alias("time"),
        column("aggregate_type", pl.String).alias("aggregate_type"),
        column("aggregate_id", pl.String).alias("aggregate_id"),
        pl.lit(None, pl.Int64).alias("version"),
        column("correlation_id", pl.String).alias("correlation_id"),
        column("user_id", pl.String).alias("user_id"),
        pl.lit(stream_id, pl.String).alias("stream_id"),
        pl.lit(record.partition, pl.Int64).alias("partition"),
        pl.lit(record.offset, pl.Int64).alias("offset"),
    )
    payload = frame.select([c for c in frame.columns if c not in ENVELOPE])
    return envelope, payload


def frame_of(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows (one dict per event: FRAME_SCHEMA's columns, `time` as RFC 3339 text, `data` the
    payload) as a DataFrame; payloads of any shape become one `data` struct column."""
    if not rows:
        return empty_frame()
    schema: dict[str, Any] = {k: v for k, v in FRAME_SCHEMA.items() if k != "time"}
    envelope = pl.DataFrame(
        [{k: v for k, v in r.items() if k not in ("data", "time")} for r in rows], schema=schema
    )
    times = pl.Series("time", [r["time"] for r in rows]).str.to_datetime(
        time_unit="ms", time_zone="UTC"
    )
    payloads = [r["data"] for r in rows]
    if any(payloads):  # every payload's fields, however they differ between event types
        data = pl.from_dicts(payloads, infer_schema_length=None).to_struct("data")
    else:
        data = pl.Series("data", [None] * len(rows), dtype=pl.Struct({"_": pl.Null}))
    return envelope.insert_column(2, times).with_columns(data)
