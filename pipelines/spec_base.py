"""What every section of a pipeline spec shares: the payload field types (and how Polars holds
them), the rules for names that become columns, and the strict, frozen model base.

>>> column_name("revenue", "aggregation name")
'revenue'
>>> column_name("key", "payload field")
Traceback (most recent call last):
...
ValueError: payload field 'key' is reserved: it clashes with a reserved column name
"""

from __future__ import annotations

import re
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict

__all__ = [
    "IDENTIFIER",
    "NAME_PATTERN",
    "POLARS_TYPES",
    "RESERVED_COLUMNS",
    "FieldType",
    "SpecModel",
    "column_name",
]

FieldType = Literal["int", "float", "str", "bool"]
# How each field type is held in Polars: decoding, windows and Arrow batches agree on it.
POLARS_TYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "str": pl.String(),
    "bool": pl.Boolean(),
}

# Column names the decoder and the window operators produce; payload fields and aggregation
# outputs must not shadow them.
RESERVED_COLUMNS = frozenset(
    {
        "key",
        "event_id",
        "event_type",
        "aggregate_id",
        "event_time_ms",
        "window_start_ms",
        "window_end_ms",
        "revision",
        "closed",
    }
)
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A pipeline's or a pattern's name.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def column_name(name: str, what: str) -> str:
    """`name` if it can be a result column: an identifier, not `__`-prefixed, not reserved."""
    if not IDENTIFIER.match(name) or name.startswith("__"):
        raise ValueError(
            f"{what} {name!r} must be an identifier (letters, digits, _) not starting with '__'"
        )
    if name in RESERVED_COLUMNS:
        raise ValueError(f"{what} {name!r} is reserved: it clashes with a reserved column name")
    return name


class SpecModel(BaseModel):
    """Unknown keys are errors (a typo must not be ignored); a validated spec never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
