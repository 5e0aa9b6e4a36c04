"""Compatibility modes, as Confluent Schema Registry defines them:

    BACKWARD             the new schema reads data written with the latest one (the default)
    BACKWARD_TRANSITIVE  ... with every earlier version
    FORWARD              the latest schema reads data written with the new one
    FORWARD_TRANSITIVE   every earlier version reads data written with the new one
    FULL(_TRANSITIVE)    both, against the latest (every) version
    NONE                 no check

>>> from pipelines.schemas.parsed import parse_schema
>>> v1 = parse_schema("JSON", {"type": "object", "properties": {"n": {"type": "integer"}}})
>>> v2 = parse_schema("JSON", {"type": "object", "properties": {"n": {"type": "number"}}})
>>> incompatibilities("BACKWARD", v2, [v1]), incompatibilities("FORWARD", v2, [v1])
([], ["forward: #/properties/n: the writer's type ['number'] is not accepted by the reader"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from pipelines.errors import SchemaError
from pipelines.schemas import avro_compat, json_compat
from pipelines.schemas.parsed import ParsedSchema

Compatibility = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]
MODES: tuple[Compatibility, ...] = get_args(Compatibility)
DEFAULT_COMPATIBILITY: Compatibility = "BACKWARD"


def compatibility_of(name: str) -> Compatibility:
    level = name.upper()
    if level not in MODES:
        raise SchemaError(f"compatibility {name!r} is not one of {list(MODES)}")
    return level


def reader_accepts(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    """Why data written with `writer` may not be readable with `reader` ([] when it is)."""
    if reader.schema_type != writer.schema_type:
        return [f"the schema type changed from {writer.schema_type} to {reader.schema_type}"]
    if reader.schema_type == "JSON":
        return json_compat.reader_accepts(reader.doc, writer.doc)
    return avro_compat.reader_accepts(reader.doc, writer.doc)


def incompatibilities(
    mode: Compatibility, new: ParsedSchema, existing: Sequence[ParsedSchema]
) -> list[str]:
    """Why `new` may not follow `existing` (oldest first) under `mode`; [] when it may."""
    if mode == "NONE" or not existing:
        return []
    against = existing if mode.endswith("_TRANSITIVE") else existing[-1:]
    backward = mode.startswith(("BACKWARD", "FULL"))
    forward = mode.startswith(("FORWARD", "FULL"))
    problems: list[str] = []
    for old in against:
        if backward:
            problems += [f"backward: {p}" for p in reader_accepts(new, old)]
        if forward:
            problems += [f"forward: {p}" for p in reader_accepts(old, new)]
    return list(dict.fromkeys(problems))  # one line per problem, in order
