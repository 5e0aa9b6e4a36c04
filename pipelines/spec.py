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

Semantics the operators implement are documented in :mod:`pipelines.windows`. The sections live
beside this module: :mod:`pipelines.window_spec` (window, aggregations), :mod:`pipelines.join_spec`,
:mod:`pipelines.pattern_spec`; what they share is :mod:`pipelines.spec_base`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.errors import SpecError
from pipelines.join_spec import JoinSpec
from pipelines.pattern_spec import PatternSpec, check_patterns
from pipelines.spec_base import (
    NAME_PATTERN,
    POLARS_TYPES,
    RESERVED_COLUMNS,
    FieldType,
    SpecModel,
    column_name,
)
from pipelines.window_spec import (
    AggregationOp,
    AggregationSpec,
    HoppingWindowSpec,
    SessionWindowSpec,
    TumblingWindowSpec,
    WindowSpec,
    check_aggregations,
)

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

LatePolicy = Literal["drop", "dead_letter", "update"]
EmitMode = Literal["on_close", "on_update"]
_KAFKA_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class SinksSpec(SpecModel):
    """Where results go: Redis (pull queries, live updates) and/or a Kafka output topic."""

    redis: bool = True
    kafka_topic: str | None = Field(default=None, pattern=_KAFKA_TOPIC)


class PipelineSpec(SpecModel):
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

    pipeline_name: str = Field(pattern=NAME_PATTERN)
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
            column_name(name, "payload field")
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
        return None if aggs is None else check_aggregations(aggs, info.data.get("fields"))

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
