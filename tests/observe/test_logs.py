"""Log lines carry the trace and span they were written in, with a real SDK provider."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from homeo.observe import logs, tracing


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """homeo's log configuration for one test, writing to the buffer it yields;
    then the configuration the other tests had."""
    before = structlog.get_config()
    buffer = io.StringIO()
    logs.configure("info", json=True, file=buffer)
    yield buffer
    structlog.configure(**before)


def test_a_line_inside_a_span_names_its_trace_and_one_outside_does_not(
    written: io.StringIO,
) -> None:
    log = logs.get_logger("test")
    tracer = tracing.tracer_of(TracerProvider())
    with tracing.span(tracer, "outer") as span:
        log.info("inside")
        context = span.get_span_context()
    log.info("outside")
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    inside, outside = (next(line for line in lines if line["event"] == name)
                       for name in ("inside", "outside"))
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside and "span_id" not in outside
