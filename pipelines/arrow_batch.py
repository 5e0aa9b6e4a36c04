"""The Arrow-batched record form, for high-volume producers: one Kafka record carries many events
of ONE partition as an Arrow IPC stream, marked by the header `esb-format: arrow-batch-v1`.

Events keep their identity (id, type, aggregate, time, tenant, stream, user; payload fields are
columns), land in the partition their key picks for single records too (partition_for: CRC32 of
the key), and partition owners read them with no JSON at all. Any Kafka client can read them
with an Arrow IPC reader.

>>> frame = pl.DataFrame({"event_type": ["a.b"] * 3, "source_capability": ["s"] * 3,
...                       "aggregate_id": ["k1", "k2", "k1"], "aggregate_type": ["T"] * 3,
...                       "event_time": [1000, 2000, 3000], "amount": [1.5, 2.0, 3.0]})
>>> batches = to_batches(frame, tenant_id="t", stream_id="s", user_id="u", partitions=4,
...                      now_ms=0, batch_id="b")
>>> sorted(len(decode_batch(value, {"amount": "float"})) for _, value in batches)
[1, 2]
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import polars as pl

from pipelines.envelope import partition_for, rfc3339_ms
from pipelines.errors import InvalidInput, PayloadTooLarge
from pipelines.spec import POLARS_TYPES, FieldType

FORMAT_HEADER: tuple[str, str | bytes | None] = ("esb-format", b"arrow-batch-v1")
REQUIRED = ("event_type", "source_capability", "aggregate_id", "aggregate_type")
TRACING = ("correlation_id", "causation_id")
OPTIONAL = ("event_id", "event_time", "partition_key", *TRACING)
ENVELOPE = (
    "event_id",
    "event_type",
    "source_capability",
    "aggregate_id",
    "aggregate_type",
    "event_time_ms",
    "partition_key",
    "tenant_id",
    "stream_id",
    "user_id",
    *TRACING,
)


def is_arrow_batch(headers: Any) -> bool:
    """Whether a record's headers (as confluent-kafka gives them) mark an Arrow batch."""
    return isinstance(headers, list) and FORMAT_HEADER in headers


def partition_of(keys: pl.Series, partitions: int) -> pl.Series:
    """pipelines.envelope.partition_for of each key, computed once per distinct key."""
    distinct = keys.unique()
    mapping = pl.DataFrame(
        {"key": distinct, "partition": [partition_for(k, partitions) for k in distinct]},
        schema={"key": pl.String, "partition": pl.Int64},
    )
    joined = keys.to_frame("key").join(mapping, on="key", how="left", maintain_order="left")
    return joined.get_column("partition")


def to_batches(
    frame: pl.DataFrame,
    *,
    tenant_id: str,
    stream_id: str,
    user_id: str,
    partitions: int,
    now_ms: int,
    batch_id: str,
    max_bytes: int = 1_000_000,
) -> list[tuple[int, bytes]]:
    """(partition, Arrow IPC bytes) per partition the events fall into; a partition's events
    take several records, in order, where one would be over `max_bytes`."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InvalidInput(f"an Arrow batch needs the columns {missing}")
    payload = [c for c in frame.columns if c not in (*REQUIRED, *OPTIONAL)]
    clash = sorted(set(payload) & set(ENVELOPE))
    if clash:
        raise InvalidInput(f"payload columns {clash} clash with envelope columns")
    if frame.select(pl.any_horizontal(pl.col(REQUIRED).is_null().any())).item():
        raise InvalidInput(f"the columns {list(REQUIRED)} must not hold nulls")
    ids = (
        pl.col("event_id").cast(pl.String)
        if "event_id" in frame.columns
        else pl.concat_str(pl.lit(f"{batch_id}-"), pl.int_range(pl.len()).cast(pl.String))
    )
    key = pl.col("partition_key") if "partition_key" in frame.columns else pl.col("aggregate_id")
    table = frame.select(
        ids.alias("event_id"),
        *(pl.col(c).cast(pl.String) for c in REQUIRED),
        _event_time(frame, now_ms).alias("event_time_ms"),
        key.cast(pl.String).alias("partition_key"),
        pl.lit(tenant_id).alias("tenant_id"),
        pl.lit(stream_id).alias("stream_id"),
        pl.lit(user_id).alias("user_id"),
        *(pl.col(c).cast(pl.String) for c in TRACING if c in frame.columns),
        *(pl.col(c) for c in payload),
    )
    table = table.with_columns(
        partition_of(table.get_column("partition_key"), partitions).alias("__partition")
    )
    out: list[tuple[int, bytes]] = []
    for (partition,), part in table.partition_by("__partition", as_dict=True).items():
        out.extend((int(partition), value) for value in _ipc(part.drop("__partition"), max_bytes))
    return sorted(out, key=lambda record: record[0])  # stable: a partition's records in order


def _ipc(part: pl.DataFrame, max_bytes: int) -> list[bytes]:
    """`part` as Arrow IPC streams of at most `max_bytes` each. One that does not fit is cut
    once, by its measured bytes per event plus headroom (slices compress a little differently),
    rather than halved level by level, which would write every event again at each level; a
    piece still over is cut again the same way."""
    sink = io.BytesIO()
    part.write_ipc_stream(sink, compression="lz4")
    size = sink.tell()
    if size <= max_bytes:
        return [sink.getvalue()]
    if part.height == 1:
        raise PayloadTooLarge(
            f"an event of this Arrow batch is {size} bytes as a record; "
            f"the limit is {max_bytes} (MAX_EVENT_BYTES)"
        )
    pieces = max(2, math.ceil(size * 1.25 / max_bytes))
    rows = math.ceil(part.height / pieces)  # < part.height: every cut makes progress
    return [
        value
        for start in range(0, part.height, rows)
        for value in _ipc(part.slice(start, rows), max_bytes)
    ]


def _event_time(frame: pl.DataFrame, now_ms: int) -> pl.Expr:
    if "event_time" not in frame.columns:
        return pl.lit(now_ms, pl.Int64)
    dtype = frame.schema["event_time"]
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise InvalidInput("event_time needs a time zone (or epoch milliseconds)")
        return pl.col("event_time").dt.epoch("ms").fill_null(now_ms)
    if dtype.is_integer():
        return pl.col("event_time").cast(pl.Int64).fill_null(now_ms)
    raise InvalidInput("event_time must be epoch milliseconds or a zoned timestamp column")


def read_batch(value: bytes) -> pl.DataFrame:
    return pl.read_ipc_stream(io.BytesIO(value))


def decode_batch(
    value: bytes, fields: Mapping[str, FieldType] | None = None, *, correlation: bool = False
) -> pl.DataFrame:
    """The decoder's frame shape (pipelines.decode) from one Arrow-batched record, plus its
    `partition_key` column (the record key each event was placed by)."""
    frame = read_batch(value)
    if correlation:
        fields = {"correlation_id": "str", **(fields or {})}
    wanted = []
    for name, kind in (fields or {}).items():
        dtype = POLARS_TYPES[kind]
        wanted.append(
            pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        )
    return frame.select(
        "event_id", "event_type", "aggregate_id", "event_time_ms", *wanted, "partition_key"
    )


def to_cloudevents(value: bytes) -> list[dict[str, Any]]:
    """Each event of a batch as the CloudEvent the JSON form would have carried (read-back)."""
    return [event for _, event in keyed_cloudevents(value)]


def keyed_cloudevents(value: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(partition key, CloudEvent) of each event of a batch."""
    rows = read_batch(value).to_dicts()
    payload = [c for c in (rows[0] if rows else {}) if c not in ENVELOPE]
    events = []
    for r in rows:
        event = {
            "specversion": "1.0",
            "id": r["event_id"],
            "source": f"/{r['tenant_id']}/{r['source_capability']}",
            "type": r["event_type"],
            "time": rfc3339_ms(r["event_time_ms"]),
            "subject": r["aggregate_id"],
            "datacontenttype": "application/json",
            "data": {c: r[c] for c in payload},
            "tenantid": r["tenant_id"],
            "streamid": r["stream_id"],
            "aggregateid": r["aggregate_id"],
            "aggregatetype": r["aggregate_type"],
            "userid": r["user_id"],
        }
        for column in TRACING:
            if r.get(column) is not None:
                event[column.replace("_", "")] = r[column]
        events.append((r["partition_key"], event))
    return events
