"""OpenTelemetry traces (TRACING_ENABLED): a span per publish, whose W3C `traceparent` rides with
every record of the publish twice: in the event, as the CloudEvents distributed-tracing
extension attribute, and as a Kafka header of that name (owners and dispatchers read it there,
without parsing the event; Arrow-batched records carry the header only), and spans in
the partition owners and dispatchers that continue it, so one trace runs from the HTTP request
to the webhook delivery.

Spans go to OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over HTTP, e.g. http://collector:4318), or to
JAEGER_ENDPOINT, which is taken as an OTLP endpoint (Jaeger >= 1.35 takes OTLP on 4318).
Without TRACING_ENABLED nothing is recorded and no header is added: the hot path pays one
boolean test.

>>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
>>> spans = InMemorySpanExporter()
>>> use_exporter(spans)
>>> published = start_publish("acme", "s1", 3)
>>> published.end()
>>> start_continued("deliver", published.headers).end()
>>> [s.name for s in spans.get_finished_spans()]
['publish', 'deliver']
>>> len({s.context.trace_id for s in spans.get_finished_spans()})
1
>>> use_exporter(None)
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cluster.settings import Settings

TRACEPARENT = "traceparent"
Headers = list[tuple[str, bytes]]
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def _install(provider: TracerProvider | None) -> None:
    global _provider
    _provider = provider


def configure(settings: Settings, component: str) -> None:
    """This process's exporter, from the settings (a no-op unless TRACING_ENABLED)."""
    endpoint = settings.otel_exporter_otlp_endpoint or settings.jaeger_endpoint
    if not settings.tracing_enabled or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,  # imported only when tracing is on: it pulls in requests
    )

    url = None
    if endpoint:
        url = (
            endpoint
            if endpoint.rstrip("/").endswith("/v1/traces")
            else f"{endpoint.rstrip('/')}/v1/traces"
        )
    provider = TracerProvider(resource=Resource.create({"service.name": f"esb-{component}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    _install(provider)


def use_exporter(exporter: SpanExporter | None) -> None:
    """Tests: record every span to `exporter` (e.g. an InMemorySpanExporter); None turns off."""
    if exporter is None:
        _install(None)
        return
    provider = TracerProvider(resource=Resource.create({"service.name": "esb-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _install(provider)


def enabled() -> bool:
    return _provider is not None


def _tracer() -> trace.Tracer:
    assert _provider is not None
    return _provider.get_tracer("event_streaming_bus")


class TraceSpan:
    """A started span: `traceparent` and `headers` (a Kafka record's) carry it on, `end()` ends it.
    Not a context manager on purpose: the hot paths start and end it around code they keep
    as it is."""

    def __init__(self, span: trace.Span | None = None) -> None:
        self.span = span
        self.traceparent: str | None = None  # what the CloudEvent's attribute carries
        if span is not None:
            carrier: dict[str, str] = {}
            _propagator.inject(carrier, context=trace.set_span_in_context(span))
            self.traceparent = carrier.get(TRACEPARENT)
        self.headers: Headers = (
            [] if self.traceparent is None else [(TRACEPARENT, self.traceparent.encode())]
        )

    def end(self, error: str | None = None) -> None:
        if self.span is not None:
            if error is not None:
                self.span.set_status(trace.Status(trace.StatusCode.ERROR, error))
            self.span.end()


_OFF = TraceSpan()


def start_publish(tenant: str, stream: str, events: int) -> TraceSpan:
    """The span of one publish (a root span: the HTTP request starts the trace)."""
    if _provider is None:
        return _OFF
    attributes: dict[str, str | int] = {
        "esb.tenant_id": tenant,
        "esb.stream_id": stream,
        "esb.events": events,
    }
    return TraceSpan(
        _tracer().start_span("publish", kind=trace.SpanKind.PRODUCER, attributes=attributes)
    )


def traceparent_of(headers: Any) -> str | None:
    """The `traceparent` of a record's headers (confluent-kafka's list of pairs, or a dict)."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    for key, value in pairs:
        if key == TRACEPARENT and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def start_continued(name: str, headers: Any, **attributes: Any) -> TraceSpan:
    """A consumer-side span (an owner's step, a delivery) in the trace of the record's publish;
    nothing when tracing is off (checked first: no header scan) or the record carries no trace."""
    if _provider is None:
        return _OFF
    parent = traceparent_of(headers)
    if parent is None:
        return _OFF
    context = _propagator.extract({TRACEPARENT: parent})
    return TraceSpan(
        _tracer().start_span(
            name, context=context, kind=trace.SpanKind.CONSUMER, attributes=attributes
        )
    )
