"""Structured JSON logs. The request ID, run ID and tenant are bound as context
variables, so every line logged while serving a request or running a run
carries them without being passed around; a line logged inside a recorded
trace span (homeo.observe.tracing) also carries its `trace_id` and `span_id`,
so logs and traces can be joined. Every line is scrubbed of secrets
(homeo.safety.scrub) just before it is rendered, tracebacks included."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from opentelemetry import trace

from homeo.safety.scrub import scrub_value

bind = structlog.contextvars.bind_contextvars
unbind = structlog.contextvars.unbind_contextvars
clear = structlog.contextvars.clear_contextvars


def _trace_ids(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


# Fields homeo fills with its own ids and times: nothing secret, and skipping
# them keeps the scrub off most of a line.
_OWN_FIELDS = frozenset({"timestamp", "level", "request_id", "trace_id", "span_id", "run_id",
                         "job_id", "worker_id", "tenant_id", "method", "status", "ms"})


def _scrub(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    return {key: value if key in _OWN_FIELDS else scrub_value(value)
            for key, value in event.items()}


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written: a command run inside a
    test runner or a CLI runner swaps it, and may close the one it swapped in."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", json: bool = True, file: TextIO | None = None) -> None:
    """Log lines at `level` and above, as JSON or for people, to `file` (stderr)."""
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=file or _CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
