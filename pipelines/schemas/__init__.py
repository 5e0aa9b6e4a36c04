"""Schemas, pure: parsing and identity (parsed), compatibility rules for JSON Schema and Avro
(json_compat, avro_compat, compatibility) and compiled payload validators (validation). The
registry that stores them is cluster.services.schemas."""

from pipelines.schemas.compatibility import (
    DEFAULT_COMPATIBILITY,
    MODES,
    Compatibility,
    compatibility_of,
    incompatibilities,
)
from pipelines.schemas.parsed import SCHEMA_TYPES, ParsedSchema, SchemaType, parse_schema
from pipelines.schemas.validation import PayloadValidator, compile_validator

__all__ = [
    "DEFAULT_COMPATIBILITY",
    "MODES",
    "SCHEMA_TYPES",
    "Compatibility",
    "ParsedSchema",
    "PayloadValidator",
    "SchemaType",
    "compatibility_of",
    "compile_validator",
    "incompatibilities",
    "parse_schema",
]
