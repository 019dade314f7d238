"""A span exporter that scrubs secrets (homeo.safety.scrub) out of every span
before it leaves the process: attribute values, event attributes (an exception's
message and stack trace) and the status description. `provider_for` wraps the
OTLP exporter in it; tests wrap an in-memory one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from homeo.safety.scrub import scrub, scrub_value


def _attributes(attributes: Any) -> dict[str, Any] | None:
    return None if attributes is None else {key: scrub_value(value)
                                            for key, value in attributes.items()}


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    """A copy of `span` without secrets (a span is immutable once it ended)."""
    status = span.status
    if status.description:
        status = Status(status.status_code, scrub(status.description))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_attributes(span.attributes),
        events=[Event(event.name, _attributes(event.attributes), event.timestamp)
                for event in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingExporter(SpanExporter):
    """Hands `inner` each span scrubbed."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
