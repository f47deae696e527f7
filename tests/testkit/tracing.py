"""Tracing switched on for a test, its spans kept in memory."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from paytabs_guard import tracing


@contextmanager
def spans_exported(environ: Mapping[str, str]) -> Iterator[InMemorySpanExporter]:
    """Tracing on as ``environ`` turns it on (OTEL_EXPORTER_OTLP_ENDPOINT...), exporting to
    memory until the block ends."""
    exporter = InMemorySpanExporter()
    assert tracing.configure(environ, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()
