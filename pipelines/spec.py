"""Pipeline specs: what a pipeline job computes (windowed aggregations, an interval join, or
patterns), as a validated pydantic model.

A spec is written by a data engineer (YAML, JSON or Python) and is the only input a pipeline job
needs besides its stream: it names the payload fields to decode, how to key and window events, how
to treat late ones, what to aggregate and where results go. Every rule is checked up front so a bad
spec is a 422 with a precise message instead of a failing Ray job.

>>> spec = PipelineSpec.from_yaml('''
... pipeline_name: order-totals
... source_stream: orders
... event_types: ["order.*"]
... key: payload.customer
... fields: {customer: str, amount: float}
... window: {type: tumbling, size_ms: 60000}
... allowed_lateness_ms: 5000
... late_policy: update
... aggregations:
...   - {name: orders, op: count}
...   - {name: revenue, op: sum, field: amount}
...   - {name: p95_amount, op: percentile, field: amount, q: 0.95}
... sinks: {kafka_topic: order-totals}
... ''')
>>> spec.window.size_ms, spec.closed_retention_ms
(60000, 60000)
>>> PipelineSpec.from_yaml(spec.to_yaml()) == spec
True

Semantics the operators implement are documented in :mod:`pipelines.windows`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

import polars as pl
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.errors import SpecError
from pipelines.join_spec import JoinSpec
from pipelines.pattern_spec import PatternSpec, check_patterns

__all__ = [
    "POLARS_TYPES",
    "RESERVED_COLUMNS",
    "AggregationOp",
    "AggregationSpec",
    "EmitMode",
    "FieldType",
    "HoppingWindowSpec",
    "JoinSpec",
    "LatePolicy",
    "PatternSpec",
    "PipelineSpec",
    "SessionWindowSpec",
    "SinksSpec",
    "SpecError",
    "TumblingWindowSpec",
    "WindowSpec",
]

FieldType = Literal["int", "float", "str", "bool"]
# How each field type is held in Polars: decoding, windows and Arrow batches agree on it.
POLARS_TYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "str": pl.String(),
    "bool": pl.Boolean(),
}
AggregationOp = Literal[
    "count", "sum", "min", "max", "mean", "count_distinct", "first", "last", "percentile"
]
LatePolicy = Literal["drop", "dead_letter", "update"]
EmitMode = Literal["on_close", "on_update"]

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
_NUMERIC: frozenset[str] = frozenset({"int", "float"})
_NEEDS_NUMERIC: frozenset[str] = frozenset({"sum", "mean", "percentile"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _column_name(name: str, what: str) -> str:
    """`name` if it can be a result column: an identifier, not `__`-prefixed, not reserved."""
    if not _IDENTIFIER.match(name) or name.startswith("__"):
        raise ValueError(
            f"{what} {name!r} must be an identifier (letters, digits, _) not starting with '__'"
        )
    if name in RESERVED_COLUMNS:
        raise ValueError(f"{what} {name!r} is reserved: it clashes with a reserved column name")
    return name


_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_KAFKA_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TumblingWindowSpec(_Model):
    """Fixed, non-overlapping windows ``[k*size_ms, (k+1)*size_ms)``."""

    type: Literal["tumbling"]
    size_ms: int = Field(gt=0)


class HoppingWindowSpec(_Model):
    """Overlapping windows of ``size_ms`` starting every ``slide_ms``."""

    type: Literal["hopping"]
    size_ms: int = Field(gt=0)
    slide_ms: int = Field(gt=0)

    @model_validator(mode="after")
    def _slide_fits(self) -> Self:
        if self.slide_ms > self.size_ms:
            raise ValueError(
                f"slide_ms ({self.slide_ms}) must be <= size_ms ({self.size_ms}); "
                "a larger slide would skip events between windows"
            )
        return self


class SessionWindowSpec(_Model):
    """Per-key activity sessions: events closer than ``gap_ms`` share a session."""

    type: Literal["session"]
    gap_ms: int = Field(gt=0)


WindowSpec = Annotated[
    TumblingWindowSpec | HoppingWindowSpec | SessionWindowSpec, Field(discriminator="type")
]


class AggregationSpec(_Model):
    """One output column: ``op`` applied to payload ``field`` (no field for ``count``)."""

    name: str
    op: AggregationOp
    field: str | None = None
    q: float | None = Field(default=None, ge=0.0, le=1.0)

    @field_validator("name")
    @classmethod
    def _name_is_column(cls, name: str) -> str:
        return _column_name(name, "aggregation name")

    @model_validator(mode="after")
    def _op_arguments(self) -> Self:
        name = repr(self.name)
        if self.op == "count" and self.field is not None:
            raise ValueError(f"{name}: count counts events and takes no field")
        if self.op != "count" and self.field is None:
            raise ValueError(f"{name}: {self.op} needs a field")
        if self.op == "percentile" and self.q is None:
            raise ValueError(f"{name}: percentile needs q between 0 and 1 (e.g. q: 0.95)")
        if self.op != "percentile" and self.q is not None:
            raise ValueError(f"{name}: q is only valid for percentile, not {self.op}")
        return self


class SinksSpec(_Model):
    """Where results go: Redis (pull queries, live updates) and/or a Kafka output topic."""

    redis: bool = True
    kafka_topic: str | None = Field(default=None, pattern=_KAFKA_TOPIC)


class PipelineSpec(_Model):
    """A pipeline: exactly one of ``aggregations`` (with a ``window``), ``join`` or ``patterns``.

    See the module docstring for a windowed example; :mod:`pipelines.join_spec` and
    :mod:`pipelines.pattern_spec` for the other two. ``idle_timeout_ms``: a partition that
    delivers no record for this long (processing time) advances its event time with the clock,
    so windows, join intervals and absence deadlines still fire.

    ``time="processing"`` means the partition owner stamps ``event_time_ms`` with its own clock
    before the window operator sees the batch; the operators themselves only know event time.
    ``retain_closed_ms`` (late_policy "update" only) bounds how long a closed window's state is
    kept for late updates; it defaults to one window length (``size_ms`` or ``gap_ms``).
    """

    pipeline_name: str = Field(pattern=_NAME)
    source_stream: str = Field(min_length=1)
    event_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    fields: dict[str, FieldType] = Field(default_factory=dict)
    key: str = "aggregate_id"
    window: WindowSpec | None = None
    time: Literal["event", "processing"] = "event"
    allowed_lateness_ms: int = Field(default=0, ge=0)
    late_policy: LatePolicy = "drop"
    retain_closed_ms: int | None = Field(default=None, ge=0)
    aggregations: Annotated[list[AggregationSpec], Field(min_length=1)] | None = None
    join: JoinSpec | None = None
    patterns: Annotated[list[PatternSpec], Field(min_length=1)] | None = None
    emit: EmitMode = "on_close"
    sinks: SinksSpec = Field(default_factory=SinksSpec)
    idle_timeout_ms: int = Field(default=10_000, gt=0)

    @field_validator("event_types")
    @classmethod
    def _globs_not_blank(cls, globs: list[str]) -> list[str]:
        for glob in globs:
            if not glob.strip():
                raise ValueError("event type patterns must not be blank")
        return globs

    @field_validator("fields")
    @classmethod
    def _field_names(cls, fields: dict[str, FieldType]) -> dict[str, FieldType]:
        for name in fields:
            _column_name(name, "payload field")
        return fields

    # Cross-field checks run as field validators so each error points at its field; pydantic
    # validates in declaration order, so ``fields`` and ``late_policy`` are already in info.data.

    @field_validator("key")
    @classmethod
    def _key_is_known(cls, key: str, info: ValidationInfo) -> str:
        if key in ("aggregate_id", "correlation_id"):
            return key
        field = key.removeprefix("payload.")
        if field == key or not field:
            raise ValueError(
                f"key must be 'aggregate_id' or 'payload.<field>' (or 'correlation_id'), "
                f"not {key!r}"
            )
        fields = info.data.get("fields")
        if fields is not None and field not in fields:
            raise ValueError(
                f"key {key!r} needs {field!r} declared in fields (e.g. fields: {{{field}: str}})"
            )
        return key

    @field_validator("aggregations")
    @classmethod
    def _aggregations_fit_fields(
        cls, aggs: list[AggregationSpec] | None, info: ValidationInfo
    ) -> list[AggregationSpec] | None:
        if aggs is None:
            return None
        fields: dict[str, str] | None = info.data.get("fields")
        seen: set[str] = set()
        for agg in aggs:
            if agg.name in seen:
                raise ValueError(f"duplicate aggregation name {agg.name!r}")
            seen.add(agg.name)
            if agg.field is None or fields is None:
                continue
            declared = fields.get(agg.field)
            if declared is None:
                raise ValueError(
                    f"{agg.name!r}: field {agg.field!r} is not declared in fields "
                    f"(add e.g. fields: {{{agg.field}: float}})"
                )
            if agg.op in _NEEDS_NUMERIC and declared not in _NUMERIC:
                raise ValueError(
                    f"{agg.name!r}: {agg.op} needs a numeric field (int or float), "
                    f"but {agg.field!r} is {declared}"
                )
        return aggs

    @field_validator("patterns")
    @classmethod
    def _patterns_fit_fields(
        cls, patterns: list[PatternSpec] | None, info: ValidationInfo
    ) -> list[PatternSpec] | None:
        fields = info.data.get("fields")
        return patterns if patterns is None or fields is None else check_patterns(patterns, fields)

    @model_validator(mode="after")
    def _one_computation(self) -> Self:
        given = [n for n in ("aggregations", "join", "patterns") if getattr(self, n) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none of them"
            raise ValueError(
                f"a pipeline computes exactly one of aggregations, join or patterns ({found} given)"
            )
        if self.aggregations is not None and self.window is None:
            raise ValueError(
                "window: Field required: aggregations need a window "
                "(e.g. window: {type: tumbling, size_ms: 60000})"
            )
        if self.aggregations is None and self.window is not None:
            raise ValueError(f"window only applies to aggregations; remove it for {given[0]}")
        if self.aggregations is None and self.late_policy == "update":
            raise ValueError(
                f"late_policy 'update' only applies to aggregations; use drop or dead_letter "
                f"for {given[0]}"
            )
        return self

    @field_validator("retain_closed_ms")
    @classmethod
    def _retention_needs_update(cls, retain: int | None, info: ValidationInfo) -> int | None:
        policy = info.data.get("late_policy")
        if retain is not None and policy is not None and policy != "update":
            raise ValueError(f"only applies with late_policy 'update' (late_policy is {policy!r})")
        return retain

    @property
    def key_field(self) -> str | None:
        """The payload field the key comes from, or None when keyed by aggregate id."""
        if self.key in ("aggregate_id", "correlation_id"):
            return None
        return self.key.removeprefix("payload.")

    @property
    def key_type(self) -> FieldType:
        field = self.key_field
        return "str" if field is None else self.fields[field]

    @property
    def closed_retention_ms(self) -> int:
        """How long closed windows stay updatable: 0 unless late_policy is "update"."""
        if self.late_policy != "update" or self.window is None:
            return 0
        if self.retain_closed_ms is not None:
            return self.retain_closed_ms
        window = self.window
        return window.gap_ms if isinstance(window, SessionWindowSpec) else window.size_ms

    @classmethod
    def from_yaml(cls, text: str) -> PipelineSpec:
        """Parse and validate a YAML (or JSON) spec; :class:`SpecError` lists every problem."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"pipeline spec is not valid YAML: {exc}") from exc
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Any) -> PipelineSpec:
        """Validate already-parsed data (e.g. a JSON body); raises :class:`SpecError`."""
        if not isinstance(data, dict):
            raise SpecError(f"pipeline spec must be a mapping, not {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = [
                {"loc": ".".join(str(p) for p in err["loc"]) or "spec", "msg": _message(err)}
                for err in exc.errors(include_url=False)
            ]
            lines = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
            raise SpecError(f"invalid pipeline spec: {lines}", errors=errors) from exc

    def to_yaml(self) -> str:
        """The spec as YAML, with defaults spelled out (round-trips through :meth:`from_yaml`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
