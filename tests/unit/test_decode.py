"""CloudEvents bulk decoding: round-trips, times, missing fields, poison records, type filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.decode import (
    DecodeError,
    decode_cloudevents,
    decode_cloudevents_lenient,
    filter_event_types,
    glob_to_regex,
    with_window_key,
)

FIELDS: dict[str, Any] = {"amount": "int", "price": "float", "name": "str", "ok": "bool"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def envelope(i: int, time: str = "2026-11-29T16:00:00.123Z", **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"id-{i}",
        "source": "/tenant/cap",
        "type": "user.created",
        "time": time,
        "subject": f"user_{i}",
        "datacontenttype": "application/json",
        "data": data,
        "tenantid": "t",
        "aggregateid": f"user_{i}",
        "aggregatetype": "User",
        "correlationid": None,
        "causationid": None,
        "userid": "u",
        "streamid": "s1",
    }


def encode(event: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps(event, indent=indent).encode()


PAYLOADS = st.fixed_dictionaries(
    {},
    optional={
        "amount": st.integers(-(2**62), 2**62),
        "price": st.floats(allow_nan=False, allow_infinity=False),
        "name": st.text(max_size=12),
        "ok": st.booleans(),
        "other": st.lists(st.integers(), max_size=3),
    },
)
TIMES = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))


def rfc3339(moment: datetime, offset: timedelta, digits: int) -> str:
    local = moment.astimezone(UTC) + offset
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{local.microsecond:06d}"[:digits].ljust(digits, "0")
    if not offset:
        return text + "Z"
    sign, minutes = ("+" if offset >= timedelta(0) else "-"), abs(int(offset.total_seconds())) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def expected_ms(moment: datetime, digits: int) -> int:
    micros = moment.microsecond - moment.microsecond % (10 ** (6 - digits)) if digits else 0
    whole = moment.replace(microsecond=0)
    return int((whole - EPOCH).total_seconds()) * 1000 + micros // 1000


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(PAYLOADS, TIMES, OFFSETS, st.sampled_from([0, 3, 6]), st.booleans()),
        max_size=30,
    )
)
def test_round_trip(rows: list[tuple[dict[str, Any], datetime, timedelta, int, bool]]) -> None:
    values, expected = [], []
    for i, (payload, moment, offset, digits, pretty) in enumerate(rows):
        event = envelope(i, rfc3339(moment, offset, digits), **payload)
        values.append(encode(event, indent=2 if pretty else None))
        expected.append(
            (
                f"id-{i}",
                "user.created",
                f"user_{i}",
                expected_ms(moment, digits),
                *(payload.get(name) for name in FIELDS),
            )
        )
    frame = decode_cloudevents(values, FIELDS)
    assert frame.columns == ["event_id", "event_type", "aggregate_id", "event_time_ms", *FIELDS]
    assert frame.dtypes == [pl.String] * 3 + [pl.Int64, pl.Int64, pl.Float64, pl.String, pl.Boolean]
    assert frame.rows() == expected


def test_empty_input_has_the_schema() -> None:
    frame = decode_cloudevents([], FIELDS)
    assert frame.height == 0
    assert frame.schema == pl.Schema(
        {
            "event_id": pl.String,
            "event_type": pl.String,
            "aggregate_id": pl.String,
            "event_time_ms": pl.Int64,
            "amount": pl.Int64,
            "price": pl.Float64,
            "name": pl.String,
            "ok": pl.Boolean,
        }
    )


def test_missing_and_null_payloads_give_nulls() -> None:
    no_data = envelope(1)
    del no_data["data"]
    null_data = {**envelope(2), "data": None}
    frame = decode_cloudevents([encode(no_data), encode(null_data)], {"amount": "int"})
    assert frame.get_column("amount").to_list() == [None, None]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (b"null", "a bare null (crashes pyarrow's reader)"),
        (b"5", "not an object"),
        (b"", "empty record"),
        (b"{", "truncated JSON"),
        (encode(envelope(9, amount="12")), "int field holding a string"),
        (encode(envelope(9, amount=1.5)), "int field holding a float"),
        (encode(envelope(9, ok="yes")), "bool field holding a string"),
        (encode(envelope(9, time="yesterday")), "unparseable time"),
        (encode(envelope(9, time="2026-11-29T16:00:00")), "time without offset"),
        (encode({k: v for k, v in envelope(9).items() if k != "id"}), "no id"),
        (encode({k: v for k, v in envelope(9).items() if k != "type"}), "no type"),
    ],
)
def test_poison_records_are_isolated(bad: bytes, why: str) -> None:
    good = [encode(envelope(i, amount=i)) for i in range(5)]
    values = [*good[:2], bad, *good[2:]]
    frame, rejected = decode_cloudevents_lenient(values, FIELDS)
    assert rejected == [2], why
    assert frame.get_column("amount").to_list() == [0, 1, 2, 3, 4]
    with pytest.raises(DecodeError) as info:
        decode_cloudevents(values, FIELDS)
    assert info.value.rejected == (2,)
    assert info.value.status == 422


def test_many_bad_records_in_a_large_batch() -> None:
    values = [encode(envelope(i, amount=i)) for i in range(10_000)]
    bad = {3, 4096, 4097, 9999}
    for i in bad:
        values[i] = b"not json"
    frame, rejected = decode_cloudevents_lenient(values, FIELDS)
    assert rejected == sorted(bad)
    assert frame.get_column("amount").to_list() == [i for i in range(10_000) if i not in bad]


def test_reserved_field_names_are_refused() -> None:
    with pytest.raises(ValueError, match="clash"):
        decode_cloudevents([], {"event_id": "str"})


@pytest.mark.parametrize(
    ("globs", "expected"),
    [
        (["*"], ["user.created", "user.profile.updated", "order.placed", "user-x", None]),
        (["user.*"], ["user.created", "user.profile.updated"]),
        (["*.created", "order.placed"], ["user.created", "order.placed"]),
        (["user.?reated"], ["user.created"]),
        (["user-x"], ["user-x"]),
        (["user"], []),
        ([], []),
    ],
)
def test_filter_event_types(globs: list[str], expected: list[str]) -> None:
    types = ["user.created", "user.profile.updated", "order.placed", "user-x", None]
    frame = pl.DataFrame({"event_type": types}, schema={"event_type": pl.String})
    assert filter_event_types(frame, globs).get_column("event_type").to_list() == expected


def test_glob_special_characters_are_literal() -> None:
    assert glob_to_regex("a.b(c)+[d]$") == r"a\.b\(c\)\+\[d\]\$"
    frame = pl.DataFrame({"event_type": ["a.b(c)+[d]$", "aXb(c)+[d]$"]})
    assert filter_event_types(frame, ["a.b(c)+[d]$"]).height == 1


def test_with_window_key() -> None:
    frame = decode_cloudevents([encode(envelope(1, name="bob"))], FIELDS)
    assert with_window_key(frame, "aggregate_id").get_column("key").to_list() == ["user_1"]
    assert with_window_key(frame, "payload.name").get_column("key").to_list() == ["bob"]
    with pytest.raises(ValueError, match="missing"):
        with_window_key(frame, "payload.missing")
