"""Traces follow a run from its HTTP request through the queue into the worker.

Every test serves a real app on 127.0.0.1 (tests/observe/conftest.py) whose
spans go to the SDK's InMemorySpanExporter, submits runs over HTTP and reads
the spans the request, the worker, the steps and the model and tool calls made.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, ClassVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from homeo.engine.submit import RUN_JOB
from homeo.observe import tracing
from homeo.store.models import NewRun
from tests.api.conftest import SUPPORT

sys.path.insert(0, str(SUPPORT))
from faultserver import error, fault_server  # noqa: E402

if TYPE_CHECKING:
    from conftest import TracedServer  # tests/observe/conftest.py

CALLER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"


def submit(server: TracedServer, agent: str, task: str, **headers: str) -> tuple[str, str]:
    """POST a run; return its id and the request id the server gave it."""
    answer = server.client.post("/v1/runs", json={"agent": agent, "input": task},
                                headers=headers)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"], answer.headers["x-request-id"]


def run_span(spans: list[ReadableSpan], run_id: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == "run" and s.attributes["homeo.run_id"] == run_id]
    return span


def post_span(spans: list[ReadableSpan], request_id: str) -> ReadableSpan:
    [span] = [s for s in spans
              if s.kind == SpanKind.SERVER and s.attributes["homeo.request_id"] == request_id]
    return span


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    found = [s for s in spans if s.parent is not None
             and s.parent.span_id == parent.context.span_id]
    return sorted(found, key=lambda s: s.start_time)


def run_finished(run_id: str) -> Callable[[list[ReadableSpan]], bool]:
    return lambda spans: any(
        s.name == "run" and s.attributes["homeo.run_id"] == run_id for s in spans
    )


@pytest.fixture
def traced(serve_traced: Callable[..., TracedServer]) -> TracedServer:
    return serve_traced()


def test_a_run_is_one_trace_from_the_post_through_the_worker_to_its_steps(
    traced: TracedServer,
) -> None:
    run_id, request_id = submit(traced, "calc", "6*7")
    assert traced.wait_for_run(run_id)["status"] == "succeeded"
    spans = traced.wait_for_spans(run_finished(run_id))

    post = post_span(spans, request_id)
    assert post.name == "POST /v1/runs"
    assert post.parent is None
    assert post.attributes["http.request.method"] == "POST"
    assert post.attributes["http.route"] == "/v1/runs"
    assert post.attributes["http.response.status_code"] == 202

    run = run_span(spans, run_id)
    assert run.kind == SpanKind.CONSUMER
    assert run.context.trace_id == post.context.trace_id
    assert run.parent is not None and run.parent.span_id == post.context.span_id
    tenant = traced.runtime.settings.default_tenant
    assert dict(run.attributes) == {
        "homeo.run_id": run_id, "homeo.tenant_id": tenant, "homeo.agent": "calc",
        "homeo.attempt": 1, "homeo.job_id": run.attributes["homeo.job_id"],
        "homeo.run.claim": 1, "homeo.request_id": request_id, "homeo.run.outcome": "succeeded",
    }
    assert run.status.status_code == StatusCode.UNSET

    steps = children(spans, run)
    assert [s.name for s in steps] == ["step model model", "step tool calculate",
                                       "step model model"]
    assert [s.attributes["homeo.step.seq"] for s in steps] == [0, 1, 2]
    assert {s.attributes["homeo.step.status"] for s in steps} == {"succeeded"}
    assert {s.context.trace_id for s in steps} == {post.context.trace_id}
    assert steps[0].attributes["homeo.step.attempt"] == 1
    assert steps[0].attributes["homeo.step.output_tokens"] > 0

    [chat] = children(spans, steps[0])
    assert chat.name == f"chat {chat.attributes['gen_ai.request.model']}"
    assert chat.kind == SpanKind.CLIENT
    assert chat.attributes["gen_ai.usage.output_tokens"] == (
        steps[0].attributes["homeo.step.output_tokens"]
    )
    [tool] = children(spans, steps[1])
    assert tool.name == "execute_tool calculate"
    assert tool.attributes["gen_ai.tool.name"] == "calculate"


def test_each_run_gets_its_own_trace(traced: TracedServer) -> None:
    first, first_request = submit(traced, "echo", "one")
    second, second_request = submit(traced, "echo", "two")
    for run_id in (first, second):
        assert traced.wait_for_run(run_id)["status"] == "succeeded"
    spans = traced.wait_for_spans(lambda s: run_finished(first)(s) and run_finished(second)(s))
    runs = [run_span(spans, first), run_span(spans, second)]
    posts = [post_span(spans, first_request), post_span(spans, second_request)]
    assert runs[0].context.trace_id != runs[1].context.trace_id
    assert [r.context.trace_id for r in runs] == [p.context.trace_id for p in posts]


def test_a_caller_trace_is_continued(traced: TracedServer) -> None:
    traceparent = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
    run_id, request_id = submit(traced, "echo", "hi", traceparent=traceparent)
    traced.wait_for_run(run_id)
    spans = traced.wait_for_spans(run_finished(run_id))
    post = post_span(spans, request_id)
    assert post.parent is not None and post.parent.span_id == int(CALLER_SPAN_ID, 16)
    assert run_span(spans, run_id).context.trace_id == int(CALLER_TRACE_ID, 16)


def test_the_trace_context_rides_in_the_job_payload(traced: TracedServer) -> None:
    run_id, request_id = submit(traced, "echo", "hi")
    traced.wait_for_run(run_id)
    spans = traced.wait_for_spans(run_finished(run_id))
    post = post_span(spans, request_id)
    job = traced.runtime.backends.queue.find(
        traced.runtime.settings.default_tenant, f"run:{run_id}"
    )
    assert job is not None
    context = post.context
    assert job.payload[tracing.PAYLOAD_KEY] == {
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}"
                       f"-{int(context.trace_flags):02x}"
    }


def test_probes_and_scrapes_are_not_traced(traced: TracedServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert traced.client.get(path).status_code == 200
    run_id, request_id = submit(traced, "echo", "after the probes")
    traced.wait_for_run(run_id)
    spans = traced.wait_for_spans(run_finished(run_id))
    assert post_span(spans, request_id).name == "POST /v1/runs"
    traced_paths = {s.attributes["url.path"] for s in spans if s.kind == SpanKind.SERVER}
    assert "/v1/runs" in traced_paths
    assert traced_paths.isdisjoint({"/healthz", "/readyz", "/metrics"})


def test_a_job_without_a_traceparent_runs_under_a_new_root_span(traced: TracedServer) -> None:
    """A job enqueued by an older homeo, whose payload is only the run id."""
    backends = traced.runtime.backends
    tenant = traced.runtime.settings.default_tenant
    run, _ = backends.store.create_run(NewRun(tenant_id=tenant, agent="echo", input="old"))
    backends.queue.enqueue(tenant, RUN_JOB, {"run_id": run.id}, idempotency_key=f"run:{run.id}")
    assert traced.wait_for_run(run.id)["status"] == "succeeded"
    spans = traced.wait_for_spans(run_finished(run.id))
    root = run_span(spans, run.id)
    assert root.parent is None
    assert "homeo.request_id" not in root.attributes
    [step] = children(spans, root)
    assert step.name == "step model model"
    assert step.context.trace_id == root.context.trace_id
    other_traces = {s.context.trace_id for s in spans if s is not root and s.parent is None}
    assert root.context.trace_id not in other_traces


def test_a_run_resumed_after_a_crash_stays_in_its_request_trace(
    serve_traced: Callable[..., TracedServer],
) -> None:
    traced = serve_traced(with_worker=False)
    run_id, request_id = submit(traced, "echo", "survive")
    backends = traced.runtime.backends
    tenant = traced.runtime.settings.default_tenant
    # A worker claimed the job, began step 0 and died; its lease then expired.
    crashed = backends.queue.claim("crashed-worker", 0.05)
    assert crashed is not None and crashed.payload["run_id"] == run_id
    backends.store.transition_run(tenant, run_id, "running", allowed_from={"queued"})
    backends.store.begin_step(tenant, run_id, 0, "model", "model", None)
    time.sleep(0.1)

    worker = traced.runtime.worker(concurrency=1)
    assert asyncio.run(worker.run_until_idle()) == 1
    assert traced.wait_for_run(run_id)["status"] == "succeeded"
    spans = traced.wait_for_spans(run_finished(run_id))
    post = post_span(spans, request_id)
    run = run_span(spans, run_id)
    assert run.attributes["homeo.attempt"] == 2
    assert run.parent is not None and run.parent.span_id == post.context.span_id
    assert run.context.trace_id == post.context.trace_id
    [step] = children(spans, run)
    assert step.attributes["homeo.step.attempt"] == 2


def test_a_failed_run_marks_its_span_as_an_error(traced: TracedServer) -> None:
    run_id, _ = submit(traced, "broken", "anything")
    assert traced.wait_for_run(run_id)["status"] == "failed"
    spans = traced.wait_for_spans(run_finished(run_id))
    run = run_span(spans, run_id)
    assert run.status.status_code == StatusCode.ERROR
    assert run.attributes["homeo.run.outcome"] == "failed"
    [step] = children(spans, run)
    assert step.status.status_code == StatusCode.ERROR
    assert step.attributes["homeo.step.status"] == "failed"


def test_without_a_provider_no_trace_context_enters_the_payload(
    serve_traced: Callable[..., TracedServer],
) -> None:
    """No OTLP endpoint and no provider: spans are OpenTelemetry's no-ops,
    and jobs carry only the run id, as before tracing."""
    traced = serve_traced(with_provider=False)
    run_id, _ = submit(traced, "echo", "quiet")
    assert traced.wait_for_run(run_id)["status"] == "succeeded"
    job = traced.runtime.backends.queue.find(
        traced.runtime.settings.default_tenant, f"run:{run_id}"
    )
    assert job is not None and job.payload == {"run_id": run_id, "max_attempts": 3}
    assert traced.runtime.tracer_provider is None
    assert tracing.install("") is None


def test_a_malformed_payload_context_starts_a_new_trace() -> None:
    for payload in ({"run_id": "r"}, {tracing.PAYLOAD_KEY: "junk"},
                    {tracing.PAYLOAD_KEY: {"traceparent": "00-zz-zz-01"}},
                    {tracing.PAYLOAD_KEY: {"traceparent": 42}}):
        assert tracing.context_from_payload(payload) == {}


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, str, bytes]]]  # set per receiver by `otlp_receiver`

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.bodies.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet: no line per request on stderr."""


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """An OTLP/HTTP endpoint on 127.0.0.1 that keeps what it is sent."""
    received: list[tuple[str, str, bytes]] = []
    handler = type("Receiver", (_Receiver,), {"bodies": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()
    thread.join()


def test_an_otlp_endpoint_receives_the_spans(
    otlp_receiver: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    endpoint, received = otlp_receiver
    provider = tracing.provider_for(endpoint)
    assert provider is not None
    with tracing.tracer_of(provider).start_as_current_span("run", attributes={"homeo.run_id": "r1"}):
        carrier = tracing.current_carrier()
    tracing.flush(provider)
    provider.shutdown()

    [(path, content_type, body)] = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "homeo"
    [span] = resource_spans.scope_spans[0].spans
    assert span.name == "run"
    assert carrier["traceparent"].split("-")[1] == span.trace_id.hex()
    assert {a.key: a.value.string_value for a in span.attributes} == {"homeo.run_id": "r1"}


def test_each_router_attempt_is_a_span_under_the_chat_request(
    serve_traced: Callable[..., TracedServer],
) -> None:
    with fault_server() as upstream:
        upstream.default = error(500, "upstream down")
        models = {"resilient": [
            {"model": "openai:m", "name": "upstream", "base_url": upstream.base_url},
            {"model": "scripted:scriptkit:echo_model", "weight": 0},
        ]}
        traced = serve_traced(with_worker=False, models=models, router_retries=1,
                              router_backoff_base_seconds=0.0)
        answer = traced.client.post("/v1/chat/completions", json={
            "model": "resilient", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-request-id"]
    spans = traced.wait_for_spans(
        lambda found: any(s.kind == SpanKind.SERVER for s in found))
    attempts = children(spans, post_span(spans, request_id))
    assert [(s.name, s.attributes["homeo.retry"], s.status.status_code) for s in attempts] == [
        ("attempt upstream", 0, StatusCode.ERROR),
        ("attempt upstream", 1, StatusCode.ERROR),
        ("attempt scripted:scriptkit:echo_model", 0, StatusCode.UNSET),
    ]
    assert all(s.attributes["homeo.alias"] == "resilient" for s in attempts)
    assert "500" in attempts[0].status.description
