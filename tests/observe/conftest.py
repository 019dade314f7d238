"""A real homeo app on 127.0.0.1 whose spans go to the SDK's in-memory exporter.

`serve_traced(with_worker=True)` starts one with tests/api/conftest.py's
`Servers` (uvicorn in a thread, a fresh SQLite data dir, scriptkit's agents,
an API key), with its own TracerProvider handed to the runtime and the app, so no span
reaches OpenTelemetry's global provider or another test.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from homeo.runtime import Runtime
from tests.api.conftest import SUPPORT, Servers

DEADLINE_SECONDS = 30.0


@dataclass
class TracedServer:
    url: str
    runtime: Runtime
    client: httpx.Client
    exporter: InMemorySpanExporter

    def wait_for_spans(self, ready: Callable[[list[ReadableSpan]], bool]) -> list[ReadableSpan]:
        """The finished spans, once `ready(spans)` holds: a span ends just after
        the response or the run's last write that a test can see."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            spans = list(self.exporter.get_finished_spans())
            if ready(spans):
                return spans
            assert time.monotonic() < deadline, f"spans never got ready: {spans_named(spans)}"
            time.sleep(0.01)

    def wait_for_run(self, run_id: str) -> dict:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            run = self.client.get(f"/v1/runs/{run_id}").json()
            if run["status"] in ("succeeded", "failed", "cancelled"):
                return run
            assert time.monotonic() < deadline, f"run {run_id} stuck as {run['status']}"
            time.sleep(0.02)


def spans_named(spans: list[ReadableSpan]) -> list[str]:
    return [span.name for span in spans]


class TracedServers:
    def __init__(self, folder: Path) -> None:
        self.servers = Servers(folder)

    def start(self, with_worker: bool = True, with_provider: bool = True, **overrides: Any
              ) -> TracedServer:
        """`with_provider=False`: no provider, as `homeo serve` with no OTLP endpoint;
        `overrides` are settings."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        served = self.servers.start(with_worker, provider if with_provider else None,
                                    **overrides)
        return TracedServer(served.url, served.runtime, served.client, exporter)

    def close(self) -> None:
        self.servers.close()


@pytest.fixture
def serve_traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TracedServer]]:
    monkeypatch.syspath_prepend(str(SUPPORT))
    servers = TracedServers(tmp_path)
    yield servers.start
    servers.close()
    sys.modules.pop("scriptkit", None)
