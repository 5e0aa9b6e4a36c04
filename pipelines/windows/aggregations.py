"""Aggregations as mergeable partial states, expressed as Polars expressions.

Each aggregation keeps a few hidden ``__<name>__<part>`` columns per window so that a batch can be
aggregated on its own (``partial_exprs`` in a ``group_by`` over events) and then folded into the
running state (``merge_exprs`` in a ``group_by`` over partial rows); ``final_exprs`` turns the parts
into the output column. Definitions, all over the window's events:

- count: number of events; sum: sum of non-null values (0 if none), Int64 for int fields;
- min/max: over non-null values (null if none); mean: sum / count of non-null values;
- first/last: value of the event with the smallest/largest ``(event_time_ms, event_id)``, even if
  that value is null;
- count_distinct: number of distinct non-null values (values are kept per window);
- percentile: linear interpolation between closest ranks over non-null values (numpy's default),
  values kept per window.

>>> import polars as pl
>>> from pipelines.windows.definitions import Aggregation
>>> aggs = (Aggregation("n", "count"), Aggregation("s", "sum", "x"))
>>> events = pl.DataFrame(
...     {"k": [1, 1], "event_time_ms": [0, 1], "event_id": ["a", "b"], "x": [2, 3]}
... )
>>> parts = events.group_by("k").agg(partial_exprs(aggs))
>>> pl.concat([parts, parts]).group_by("k").agg(merge_exprs(aggs)).select(final_exprs(aggs)).row(0)
(4, 10)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

from pipelines.spec import POLARS_TYPES, FieldType
from pipelines.windows.definitions import Aggregation

__all__ = [
    "POLARS_TYPES",
    "final_exprs",
    "final_schema",
    "merge_exprs",
    "partial_exprs",
    "partial_schema",
]

_TIME = "event_time_ms"
_ID = "event_id"


def _part(agg: Aggregation, part: str) -> str:
    return f"__{agg.name}__{part}"


def _field(agg: Aggregation) -> str:
    if agg.field is None:  # only count has no field, and count never asks
        raise ValueError(f"{agg.name}: {agg.op} needs a field")
    return agg.field


def partial_schema(
    aggs: Iterable[Aggregation], field_types: Mapping[str, FieldType]
) -> dict[str, pl.DataType]:
    """Hidden state columns and their dtypes (used for empty states and to align concats)."""
    schema: dict[str, pl.DataType] = {}
    for agg in aggs:
        dtype = POLARS_TYPES[field_types[agg.field]] if agg.field is not None else pl.Int64()
        match agg.op:
            case "count":
                schema[_part(agg, "n")] = pl.Int64()
            case "sum" | "min" | "max":
                schema[_part(agg, "v")] = dtype
            case "mean":
                schema[_part(agg, "s")] = dtype
                schema[_part(agg, "c")] = pl.Int64()
            case "first" | "last":
                schema[_part(agg, "v")] = dtype
                schema[_part(agg, "t")] = pl.Int64()
                schema[_part(agg, "id")] = pl.String()
            case "count_distinct":
                schema[_part(agg, "u")] = pl.List(dtype)
            case "percentile":
                schema[_part(agg, "vals")] = pl.List(pl.Float64())
    return schema


def final_schema(
    aggs: Iterable[Aggregation], field_types: Mapping[str, FieldType]
) -> dict[str, pl.DataType]:
    """Output columns and their dtypes."""
    schema: dict[str, pl.DataType] = {}
    for agg in aggs:
        if agg.op in ("count", "count_distinct"):
            schema[agg.name] = pl.Int64()
        elif agg.op in ("mean", "percentile"):
            schema[agg.name] = pl.Float64()
        else:
            schema[agg.name] = POLARS_TYPES[field_types[_field(agg)]]
    return schema


def partial_exprs(aggs: Iterable[Aggregation]) -> list[pl.Expr]:
    """Per-group partial state of raw events (``event_time_ms``, ``event_id``, payload fields)."""
    exprs: list[pl.Expr] = []
    order = [pl.col(_TIME), pl.col(_ID)]
    for agg in aggs:
        if agg.op == "count":
            exprs.append(pl.len().cast(pl.Int64).alias(_part(agg, "n")))
            continue
        col = pl.col(_field(agg))
        match agg.op:
            case "sum":
                exprs.append(col.sum().alias(_part(agg, "v")))
            case "min":
                exprs.append(col.min().alias(_part(agg, "v")))
            case "max":
                exprs.append(col.max().alias(_part(agg, "v")))
            case "mean":
                exprs.append(col.sum().alias(_part(agg, "s")))
                exprs.append(col.count().cast(pl.Int64).alias(_part(agg, "c")))
            case "first" | "last":
                pick = "first" if agg.op == "first" else "last"
                for part, source in (("v", col), ("t", pl.col(_TIME)), ("id", pl.col(_ID))):
                    exprs.append(getattr(source.sort_by(order), pick)().alias(_part(agg, part)))
            case "count_distinct":
                exprs.append(col.drop_nulls().unique().alias(_part(agg, "u")))
            case "percentile":
                exprs.append(col.cast(pl.Float64).drop_nulls().alias(_part(agg, "vals")))
    return exprs


def merge_exprs(aggs: Iterable[Aggregation]) -> list[pl.Expr]:
    """Per-group merge of partial rows (the state of one window and a batch's contribution)."""
    exprs: list[pl.Expr] = []
    for agg in aggs:
        match agg.op:
            case "count":
                exprs.append(pl.col(_part(agg, "n")).sum())
            case "sum":
                exprs.append(pl.col(_part(agg, "v")).sum())
            case "min":
                exprs.append(pl.col(_part(agg, "v")).min())
            case "max":
                exprs.append(pl.col(_part(agg, "v")).max())
            case "mean":
                exprs.append(pl.col(_part(agg, "s")).sum())
                exprs.append(pl.col(_part(agg, "c")).sum())
            case "first" | "last":
                order = [pl.col(_part(agg, "t")), pl.col(_part(agg, "id"))]
                pick = "first" if agg.op == "first" else "last"
                for part in ("v", "t", "id"):
                    col = pl.col(_part(agg, part)).sort_by(order)
                    exprs.append(getattr(col, pick)())
            case "count_distinct":
                values = pl.col(_part(agg, "u")).list.explode(keep_nulls=False, empty_as_null=False)
                exprs.append(values.unique())
            case "percentile":
                values = pl.col(_part(agg, "vals"))
                exprs.append(values.list.explode(keep_nulls=False, empty_as_null=False))
    return exprs


def final_exprs(aggs: Iterable[Aggregation]) -> list[pl.Expr]:
    """Output columns computed from a window's merged partial state."""
    exprs: list[pl.Expr] = []
    for agg in aggs:
        match agg.op:
            case "count":
                expr = pl.col(_part(agg, "n"))
            case "sum" | "min" | "max" | "first" | "last":
                expr = pl.col(_part(agg, "v"))
            case "mean":
                count = pl.col(_part(agg, "c"))
                total = pl.col(_part(agg, "s")).cast(pl.Float64)
                expr = pl.when(count > 0).then(total / count).otherwise(None)
            case "count_distinct":
                expr = pl.col(_part(agg, "u")).list.len().cast(pl.Int64)
            case "percentile":
                q = agg.q if agg.q is not None else 0.5
                quantile = pl.element().quantile(q, interpolation="linear")
                expr = pl.col(_part(agg, "vals")).list.eval(quantile).list.first()
        exprs.append(expr.alias(agg.name))
    return exprs
