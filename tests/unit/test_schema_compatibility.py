"""Compatibility rules per mode against a table of schema pairs (old -> new), for JSON Schema
(open and closed content models) and Avro: what Confluent Schema Registry decides for each."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.errors import SchemaError
from pipelines.schemas import MODES, compile_validator, incompatibilities, parse_schema


def obj(
    props: dict[str, Any], required: tuple[str, ...] = (), closed: bool = False
) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        doc["required"] = list(required)
    if closed:
        doc["additionalProperties"] = False
    return doc


STR, INT, NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}

# name: (old, new, backward compatible?, forward compatible?)
JSON_CASES: dict[str, tuple[Any, Any, bool, bool]] = {
    "identical": (obj({"a": STR}), obj({"a": STR}), True, True),
    "open: add optional property": (obj({"a": STR}), obj({"a": STR, "b": INT}), False, True),
    "closed: add optional property": (
        obj({"a": STR}, closed=True),
        obj({"a": STR, "b": INT}, closed=True),
        True,
        False,
    ),
    "open: remove optional property": (obj({"a": STR, "b": INT}), obj({"a": STR}), True, False),
    "closed: remove optional property": (
        obj({"a": STR, "b": INT}, closed=True),
        obj({"a": STR}, closed=True),
        False,
        True,
    ),
    "closed: add required property": (
        obj({"a": STR}, closed=True),
        obj({"a": STR, "b": INT}, ("b",), closed=True),
        False,
        False,
    ),
    "remove a required property (open)": (
        obj({"a": STR, "b": INT}, ("b",)),
        obj({"a": STR}),
        True,
        False,
    ),
    "make optional required": (obj({"a": STR}), obj({"a": STR}, ("a",)), False, True),
    "widen integer to number": (obj({"n": INT}), obj({"n": NUM}), True, False),
    "narrow number to integer": (obj({"n": NUM}), obj({"n": INT}), False, True),
    "change type": (obj({"n": STR}), obj({"n": INT}), False, False),
    "enum: add a value": (
        obj({"c": {"enum": ["EUR"]}}),
        obj({"c": {"enum": ["EUR", "USD"]}}),
        True,
        False,
    ),
    "enum: remove a value": (
        obj({"c": {"enum": ["EUR", "USD"]}}),
        obj({"c": {"enum": ["EUR"]}}),
        False,
        True,
    ),
    "open to closed": (obj({"a": STR}), obj({"a": STR}, closed=True), False, True),
    "closed to open": (obj({"a": STR}, closed=True), obj({"a": STR}), True, False),
    "tighter maxLength": (
        obj({"a": {"type": "string", "maxLength": 10}}),
        obj({"a": {"type": "string", "maxLength": 5}}),
        False,
        True,
    ),
    "array items widened": (
        obj({"xs": {"type": "array", "items": INT}}),
        obj({"xs": {"type": "array", "items": NUM}}),
        True,
        False,
    ),
}


def rec(*fields: dict[str, Any], name: str = "Order") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "shop", "fields": list(fields)}


ID = {"name": "id", "type": "string"}
QTY = {"name": "qty", "type": "int"}
QTY_D = {"name": "qty", "type": "int", "default": 1}


def cur(*symbols: str, default: str | None = None) -> dict[str, Any]:
    enum: dict[str, Any] = {"type": "enum", "name": "Currency", "symbols": list(symbols)}
    if default:
        enum["default"] = default
    return {"name": "currency", "type": enum}


AVRO_CASES: dict[str, tuple[Any, Any, bool, bool]] = {
    "identical": (rec(ID), rec(ID), True, True),
    "add field with default": (rec(ID), rec(ID, QTY_D), True, True),
    "add field without default": (rec(ID), rec(ID, QTY), False, True),
    "remove field with default": (rec(ID, QTY_D), rec(ID), True, True),
    "remove field without default": (rec(ID, QTY), rec(ID), True, False),
    "widen int to long": (rec(ID, QTY), rec(ID, {"name": "qty", "type": "long"}), True, False),
    "int to double": (rec(ID, QTY), rec(ID, {"name": "qty", "type": "double"}), True, False),
    "string to int": (rec(ID), rec({"name": "id", "type": "int"}), False, False),
    "string and bytes": (rec(ID), rec({"name": "id", "type": "bytes"}), True, True),
    "enum: add a symbol": (rec(cur("EUR")), rec(cur("EUR", "USD")), True, False),
    "enum: add a symbol, default": (
        rec(cur("EUR", default="EUR")),
        rec(cur("EUR", "USD", default="EUR")),
        True,
        True,
    ),
    "optional via union with default": (
        rec(ID),
        rec(ID, {"name": "note", "type": ["null", "string"], "default": None}),
        True,
        True,
    ),
    "type into union": (rec(ID), rec({"name": "id", "type": ["null", "string"]}), True, False),
    "renamed record": (rec(ID), rec(ID, name="Purchase"), False, False),
    "renamed record with alias": (
        rec(ID),
        {**rec(ID, name="Purchase"), "aliases": ["Order"]},
        True,
        False,
    ),
}


def _expect(backward: bool, forward: bool) -> dict[str, bool]:
    both = backward and forward
    return {
        "BACKWARD": backward,
        "BACKWARD_TRANSITIVE": backward,
        "FORWARD": forward,
        "FORWARD_TRANSITIVE": forward,
        "FULL": both,
        "FULL_TRANSITIVE": both,
        "NONE": True,
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "case"),
    [("JSON", c) for c in JSON_CASES] + [("AVRO", c) for c in AVRO_CASES],
)
def test_pair_per_mode(kind: str, case: str, mode: str) -> None:
    old, new, backward, forward = (JSON_CASES if kind == "JSON" else AVRO_CASES)[case]
    problems = incompatibilities(mode, parse_schema(kind, new), [parse_schema(kind, old)])  # type: ignore[arg-type]
    assert (not problems) is _expect(backward, forward)[mode], problems


def test_transitive_modes_check_every_version() -> None:
    # v1 -> v2 drops the field (with a default), v3 brings it back without one: fine against
    # v2 (the latest), not against v1 under BACKWARD_TRANSITIVE.
    v1 = parse_schema("AVRO", rec(ID, {"name": "qty", "type": "string", "default": "1"}))
    v2 = parse_schema("AVRO", rec(ID))
    v3 = parse_schema("AVRO", rec(ID, {"name": "qty", "type": "int", "default": 1}))
    assert incompatibilities("BACKWARD", v3, [v1, v2]) == []
    assert incompatibilities("BACKWARD_TRANSITIVE", v3, [v1, v2]) == [
        "backward: shop.Order.qty: the writer's string cannot be read as int"
    ]


def test_messages_say_which_field_and_why() -> None:
    old, new = obj({"a": STR}, closed=True), obj({"a": STR, "b": INT}, ("b",), closed=True)
    assert incompatibilities(
        "BACKWARD", parse_schema("JSON", new), [parse_schema("JSON", old)]
    ) == ["backward: #/properties/b: required by the reader, optional for the writer"]


def test_schema_type_change_is_incompatible() -> None:
    problems = incompatibilities(
        "BACKWARD", parse_schema("AVRO", '"string"'), [parse_schema("JSON", STR)]
    )
    assert problems == ["backward: the schema type changed from JSON to AVRO"]


@pytest.mark.parametrize(
    ("kind", "text", "why"),
    [
        ("JSON", "{not json", "not valid JSON"),
        ("JSON", '{"type": 12}', "invalid JSON Schema"),
        ("JSON", '{"$ref": "#/$defs/missing"}', "does not exist"),
        ("JSON", '{"$ref": "https://example.com/s.json"}', "remote \\$ref .* is not fetched"),
        ("AVRO", '{"type": "recrod", "name": "X"}', "invalid Avro schema"),
        ("PROTOBUF", "{}", "not supported"),
    ],
)
def test_invalid_schemas_are_refused_with_a_reason(kind: str, text: str, why: str) -> None:
    with pytest.raises(SchemaError, match=why):
        parse_schema(kind, text)


def test_compiled_validators_name_the_field() -> None:
    json_check = compile_validator(parse_schema("JSON", obj({"n": INT}, ("n",), closed=True)))
    assert json_check.problems({"n": 3}) == []
    assert json_check.problems({}) == [{"field": "/", "message": '"n" is a required property'}]
    avro_check = compile_validator(parse_schema("AVRO", rec(ID, QTY)))
    assert avro_check.problems({"id": "o1", "qty": 2}) == []
    assert avro_check.problems({"id": "o1", "qty": "two"}) == [
        {"field": "shop.Order.qty", "message": "'two' is not a valid int"}
    ]
