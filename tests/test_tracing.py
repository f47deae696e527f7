"""When tracing turns on, and what it sends: the standard OTEL_* variables, a real OTLP/HTTP
export to a collector on loopback, and the W3C headers an outgoing webhook carries."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from paytabs_guard import tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def _untraced_afterwards() -> Iterator[None]:
    yield
    tracing.shutdown()


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "shop"}, False),  # a name alone exports nothing
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
    ],
)
def test_the_standard_variables_decide_whether_to_trace(environ: dict[str, str], on: bool) -> None:
    assert tracing.wanted(environ) is on
    assert tracing.configure(environ, exporter=InMemorySpanExporter()) is on
    assert tracing.ENABLED is on


def test_an_exporter_we_do_not_know_leaves_tracing_off() -> None:
    assert not tracing.configure({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert not tracing.ENABLED


def test_off_no_span_is_made_and_no_context_is_stored() -> None:
    assert not tracing.ENABLED
    with tracing.span("work", "server", parent=(PARENT, None)) as span:
        span.set("paytabs.attempt", 1)
        assert span is tracing.NO_SPAN
        tracing.note_payment("pay_1")
        assert tracing.current_context() == (None, None)


def test_a_webhook_passes_on_the_stored_context_when_nothing_is_traced_here() -> None:
    assert tracing.outgoing_headers(PARENT, "shop=1") == {
        "traceparent": PARENT,
        "tracestate": "shop=1",
    }
    assert tracing.outgoing_headers(None, None) == {}


def test_a_traced_span_continues_a_stored_context_and_a_bad_one_starts_afresh() -> None:
    exporter = InMemorySpanExporter()
    assert tracing.configure({"OTEL_TRACES_EXPORTER": "otlp"}, exporter=exporter)
    with tracing.span("deliver", "producer", parent=(PARENT, "shop=1")):
        headers = tracing.outgoing_headers(None, None)
    with tracing.span("deliver", "producer", parent=("00-not-a-traceparent", None)):
        fresh = tracing.current_context()
    continued, restarted = exporter.get_finished_spans()
    assert continued.context is not None
    assert f"{continued.context.trace_id:032x}" == PARENT.split("-")[1]
    assert headers["traceparent"].split("-")[1:3] == [
        PARENT.split("-")[1],
        f"{continued.context.span_id:016x}",
    ]
    assert headers["tracestate"] == "shop=1"
    assert restarted.parent is None
    assert fresh[0] is not None
    assert PARENT.split("-")[1] not in fresh[0]


def test_an_exception_marks_the_span_an_error() -> None:
    exporter = InMemorySpanExporter()
    assert tracing.configure({"OTEL_TRACES_EXPORTER": "otlp"}, exporter=exporter)
    with pytest.raises(LookupError), tracing.span("lookup"):
        raise LookupError("none")
    (failed,) = exporter.get_finished_spans()
    assert not failed.status.is_ok
    assert (failed.attributes or {})["error.type"] == "LookupError"


class _Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # noqa: ARG002 - quiet: no access log
        return None


def test_spans_go_to_the_otlp_endpoint_of_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real exporter, over real HTTP: the SDK reads the endpoint, we read nothing else."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-payments")
        _Collector.received.clear()
        assert tracing.configure()
        with tracing.span("POST /payments/v2/create", "server"):
            tracing.note_payment("pay_123")
        tracing.shutdown()  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()
    ((path, content_type, body),) = _Collector.received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    export = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = export.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "shop-payments"
    (span,) = resource_spans.scope_spans[0].spans
    assert span.name == "POST /payments/v2/create"
    assert {a.key: a.value.string_value for a in span.attributes} == {tracing.PAYMENT_ID: "pay_123"}
