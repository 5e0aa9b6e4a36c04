"""A schema as the registry holds it: its type, the document, and the canonical text that
decides identity (re-registering the same schema, whitespace and key order aside, answers the
same id).

>>> a = parse_schema("JSON", '{"type": "object",  "properties": {"x": {"type": "string"}}}')
>>> b = parse_schema("JSON", '{"properties": {"x": {"type": "string"}}, "type": "object"}')
>>> a.canonical == b.canonical, a.canonical
(True, '{"properties":{"x":{"type":"string"}},"type":"object"}')
>>> parse_schema("AVRO", '"long"').doc
'long'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import fastavro
import jsonschema_rs
import orjson

from pipelines.errors import SchemaError

SchemaType = Literal["JSON", "AVRO"]
SCHEMA_TYPES: tuple[SchemaType, ...] = ("AVRO", "JSON")


@dataclass(frozen=True)
class ParsedSchema:
    schema_type: SchemaType
    doc: Any  # the schema document (JSON value)
    canonical: str  # sorted keys, no whitespace: what identity is decided on

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.schema_type, self.canonical)


def fingerprint_of(schema_type: str, canonical: str) -> str:
    """What identical schemas share (the registry answers the same id for them)."""
    return hashlib.sha256(f"{schema_type}:{canonical}".encode()).hexdigest()[:32]


def schema_type_of(name: str | None) -> SchemaType:
    """Confluent's `schemaType` (absent means AVRO), or the seed API's `json`/`avro`."""
    kind = (name or "AVRO").upper()
    if kind not in SCHEMA_TYPES:
        raise SchemaError(f"schemaType {name!r} is not supported; use one of {list(SCHEMA_TYPES)}")
    return kind


def parse_schema(schema_type: str | None, text: str | Any) -> ParsedSchema:
    """Parse and check a schema (text, or an already parsed document); SchemaError says why not."""
    kind = schema_type_of(schema_type)
    doc = _load(text)
    if kind == "JSON":
        if not isinstance(doc, dict | bool):
            raise SchemaError("a JSON Schema must be an object (or true/false)")
        try:
            jsonschema_rs.meta.validate(doc) if isinstance(doc, dict) else None
        except jsonschema_rs.ValidationError as exc:
            raise SchemaError(f"invalid JSON Schema: {exc.message}") from None
        try:  # what publishing will compile: an unresolvable $ref fails here, not there
            jsonschema_rs.validator_for(doc, retriever=no_remote_refs) if isinstance(
                doc, dict
            ) else None
        except Exception as exc:  # jsonschema-rs raises ValueError, ReferencingError, ...
            raise SchemaError(f"invalid JSON Schema: {str(exc).splitlines()[0]}") from None
    else:
        try:
            fastavro.parse_schema(doc)
        except Exception as exc:  # fastavro raises SchemaParseException, ValueError, TypeError...
            raise SchemaError(f"invalid Avro schema: {exc}") from None
    canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
    return ParsedSchema(kind, doc, canonical)


def no_remote_refs(uri: str) -> Any:
    """The retriever of compiled validators: a schema is self-contained (no network fetches)."""
    raise ValueError(f"remote $ref {uri} is not fetched: inline it (e.g. under $defs)")


def _load(text: str | Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"the schema is not valid JSON: {exc}") from None
