"""OpenTelemetry traces: one trace per run, from the HTTP request that submitted
it, through the queue, into the worker and each of the run's steps.

    POST /v1/runs                       FastAPI's server span (api/app.py), with the request ID
      run                               the worker's span, one per attempt (engine/worker.py)
        step model model                one per step (engine/runner.py)
          chat <model>                  the model call (engine/react.py)
        step tool calculate
          execute_tool calculate        the tool call

The context crosses the queue as a W3C `traceparent` in the job's payload
(under `PAYLOAD_KEY`), so it survives a crash: a run resumed by another worker
continues the same trace. A job without one (enqueued by `homeo run`, or by a
homeo older than tracing) gets a new root span.

Tracers are passed in, so tests hand each app its own provider; where none is
given the global provider's is used. Only `install`, for the processes `homeo
serve`, `worker` and `run` start (through `Runtime.open`), sets that global
provider, and only when an OTLP endpoint is set. With none, `span` opens nothing: OpenTelemetry's own no-op span costs
about 4 µs to enter and leave, 10 µs a step, where `span` costs well under one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, NoOpTracer, Span, SpanKind, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from homeo import __version__

TRACER_NAME = "homeo"
PAYLOAD_KEY = "trace"  # job payload key holding {"traceparent": ..., "tracestate": ...}
_HEADERS = (b"traceparent", b"tracestate")
_propagator = TraceContextTextMapPropagator()


class TracingUnavailable(RuntimeError):
    """An OTLP endpoint is set but the exporter is not installed."""


def tracer_of(provider: TracerProvider | None = None) -> Tracer:
    """`provider`'s tracer; without one, the global provider's once `install`
    has set one, else a `NoOpTracer`."""
    if provider is None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):  # none set
            return NoOpTracer()
    return provider.get_tracer(TRACER_NAME, __version__)


class _NoSpan(AbstractContextManager[Span]):
    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc_info: object) -> Literal[False]:
        return False


_NO_SPAN = _NoSpan()


def span(
    tracer: Tracer,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
    context: Context | None = None,
) -> AbstractContextManager[Span]:
    """`tracer.start_as_current_span(...)`, or nothing at all for a `NoOpTracer`
    (what it yields then is the invalid span, whose setters do nothing)."""
    if isinstance(tracer, NoOpTracer):
        return _NO_SPAN
    return tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes)


def provider_for(endpoint: str, *, service_name: str = "homeo") -> TracerProvider | None:
    """An SDK provider that batches spans to the OTLP/HTTP `endpoint` (the full
    URL, e.g. http://127.0.0.1:4318/v1/traces), secrets scrubbed from every span
    (homeo.observe.scrubbed_spans); None when `endpoint` is empty."""
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        raise TracingUnavailable(
            "HOMEO_OTLP_ENDPOINT is set but the OTLP exporter is not installed;"
            " run: pip install 'homeo[otlp]'"
        ) from error
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = SdkTracerProvider(
        resource=Resource.create({"service.name": service_name, "service.version": __version__})
    )
    from homeo.observe.scrubbed_spans import ScrubbingExporter

    provider.add_span_processor(
        BatchSpanProcessor(ScrubbingExporter(OTLPSpanExporter(endpoint=endpoint))))
    return provider


def install(endpoint: str) -> TracerProvider | None:
    """Make the process's provider for `endpoint` the global one and return it
    (None when `endpoint` is empty). OpenTelemetry lets a process set its global
    provider once, so a second call returns the provider the first one set."""
    if not endpoint:
        return None
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, SdkTracerProvider):
        return current
    provider = provider_for(endpoint)
    trace.set_tracer_provider(provider)  # type: ignore[arg-type]  # not None: endpoint is set
    return provider


def flush(provider: TracerProvider | None, timeout_millis: int = 5000) -> None:
    """Export the spans still batched (SDK providers only; others keep none)."""
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_millis)


def current_carrier() -> dict[str, str]:
    """The current span's context as W3C headers ({} when no span is current),
    for a job's payload."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def context_from_payload(payload: Mapping[str, Any]) -> Context:
    """The context a job's payload carries; an empty one (so the next span is
    a new root) when it carries none or a malformed one."""
    carrier = payload.get(PAYLOAD_KEY)
    if not isinstance(carrier, dict):
        return Context()
    headers = {key: value for key, value in carrier.items() if isinstance(value, str)}
    return _propagator.extract(headers, context=Context())


def context_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> Context | None:
    """The caller's trace from an ASGI request's headers; None when it sent none."""
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name in _HEADERS
    }
    return _propagator.extract(carrier) if carrier else None
