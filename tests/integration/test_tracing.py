"""One trace across processes, from the publish in the API replica to the webhook delivery in a
dispatcher actor: both export OTLP/HTTP to a receiver this test runs (the session stack has
TRACING_ENABLED with its endpoint, tests/conftest.py), decoded with OpenTelemetry's own protobuf
messages."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from cluster.settings import Settings
from tests.integration.conftest import create_stream
from tests.integration.subscription_helpers import (
    TENANT,
    Receiver,
    cancel,
    events,
    publish,
    subscribe,
)
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


class Collector:
    """An OTLP/HTTP trace receiver: every span it was sent, with its service name."""

    def __init__(self, port: int) -> None:
        self.spans: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        attributes = resource_spans.resource.attributes
                        service = next(
                            (a.value.string_value for a in attributes if a.key == "service.name"),
                            "",
                        )
                        for scope in resource_spans.scope_spans:
                            collector.spans += [(service, span) for span in scope.spans]
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str) -> list[tuple[str, Any]]:
        with self.lock:
            return [(service, span) for service, span in self.spans if span.name == name]


@pytest.fixture(scope="module")
def collector(stack: Settings) -> Iterator[Collector]:
    assert stack.tracing_enabled and stack.otel_exporter_otlp_endpoint
    found = Collector(urlsplit(stack.otel_exporter_otlp_endpoint).port or 4318)
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_one_trace_from_the_publish_to_the_webhook_delivery(
    http: httpx.Client, receiver: Receiver, collector: Collector, unique: str
) -> None:
    stream = create_stream(http, TENANT, f"traced-{unique}", partitions=1)
    sub = subscribe(http, stream, webhook_url=receiver.url)
    publish(http, stream["stream_id"], events(3, f"t{unique}"))
    wait_for(lambda: len(receiver.delivered()) == 3, "the 3 events delivered")

    def publish_span() -> tuple[str, Any] | None:
        for service, span in collector.named("publish"):
            ids = {a.key: a.value.string_value for a in span.attributes}
            if ids.get("esb.stream_id") == stream["stream_id"]:
                return service, span
        return None

    service, published = wait_for(publish_span, "the publish span at the collector", 60)
    assert service == "esb-api"

    def deliveries() -> list[tuple[str, Any]] | None:
        found = [
            (s, span)
            for s, span in collector.named("webhook.deliver")
            if span.trace_id == published.trace_id
        ]
        return found if len(found) == 3 else None

    delivered = wait_for(deliveries, "3 delivery spans in the publish's trace", 60)
    assert {s for s, _ in delivered} == {"esb-dispatcher"}  # another process: the actor
    assert all(span.parent_span_id == published.span_id for _, span in delivered)
    # The CloudEvents distributed-tracing extension: the attribute is in each event itself.
    ids = {tuple(orjson.loads(h.body)["traceparent"].split("-")[1:3]) for h in receiver.hits}
    assert ids == {(published.trace_id.hex(), published.span_id.hex())}  # flags may vary
    cancel(http, sub)
