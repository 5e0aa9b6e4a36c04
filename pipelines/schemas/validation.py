"""Compiled payload validators, one per schema: JSON Schema through jsonschema-rs (Rust, draft
2020-12 unless the schema names another), Avro through fastavro. `problems` answers per
payload what is wrong, as {"field", "message"}; valid payloads cost one call each.

>>> from pipelines.schemas.parsed import parse_schema
>>> check = compile_validator(parse_schema("JSON", {"type": "object", "required": ["n"],
...                                     "properties": {"n": {"type": "integer"}}}))
>>> check.problems({"n": 1}), check.problems({"n": "one"})
([], [{'field': '/n', 'message': '"one" is not of type "integer"'}])
"""

from __future__ import annotations

from typing import Any, Protocol

import fastavro
import jsonschema_rs
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate as avro_validate

from pipelines.schemas.parsed import ParsedSchema, no_remote_refs


class PayloadValidator(Protocol):
    def problems(self, payload: Any) -> list[dict[str, str]]: ...


class JsonValidator:
    def __init__(self, doc: Any) -> None:
        has_draft = isinstance(doc, dict) and "$schema" in doc
        self._validator = (
            jsonschema_rs.validator_for(doc, retriever=no_remote_refs)
            if has_draft
            else jsonschema_rs.Draft202012Validator(doc, retriever=no_remote_refs)
        )

    def problems(self, payload: Any) -> list[dict[str, str]]:
        if self._validator.is_valid(payload):
            return []
        return [
            {"field": "/" + "/".join(str(p) for p in error.instance_path), "message": error.message}
            for error in self._validator.iter_errors(payload)
        ]


class AvroValidator:
    def __init__(self, doc: Any) -> None:
        self._schema = fastavro.parse_schema(doc)

    def problems(self, payload: Any) -> list[dict[str, str]]:
        try:
            avro_validate(payload, self._schema, raise_errors=True)
        except AvroValidationError as exc:
            return [
                {"field": e.field or "", "message": f"{e.datum!r} is not a valid {e.schema}"}
                for e in exc.errors
            ]
        return []


def compile_validator(schema: ParsedSchema) -> PayloadValidator:
    if schema.schema_type == "JSON":
        return JsonValidator(schema.doc)
    return AvroValidator(schema.doc)
