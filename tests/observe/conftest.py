"""A real homeo app on 127.0.0.1 whose spans go to the SDK's in-memory exporter.

`serve_traced(with_worker=True)` starts one like tests/api/conftest.py does
(uvicorn in a thread, a fresh SQLite data dir, scriptkit's agents, an API key),
with its own TracerProvider handed to the runtime and the app, so no span
reaches OpenTelemetry's global provider or another test.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from homeo.api.app import create_app
from homeo.config import Settings
from homeo.keys import create_key
from homeo.runtime import Runtime

SUPPORT = Path(__file__).parent.parent / "support"
DEADLINE_SECONDS = 30.0
FAST = {"poll_seconds": 0.02, "lease_seconds": 10, "retry_base_seconds": 0.0,
        "retry_max_seconds": 0.0}


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
        self.folder = folder
        self.started: list[tuple[uvicorn.Server, threading.Thread, Runtime, httpx.Client]] = []

    def start(self, with_worker: bool = True, with_provider: bool = True) -> TracedServer:
        """`with_provider=False`: no provider, as `homeo serve` with no OTLP endpoint."""
        import scriptkit

        number = len(self.started)
        agents = scriptkit.write_agents(self.folder / f"agents{number}")
        settings = Settings(data_dir=self.folder / f"data{number}", agents_dir=agents, **FAST)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        runtime = Runtime.open(settings, tracer_provider=provider if with_provider else None)
        runtime.publish_agents()
        key, _ = create_key(runtime.backends.store, settings.default_tenant, "test")
        worker = runtime.worker() if with_worker else None
        app = create_app(settings, runtime.backends, runtime.metrics, worker, runtime.models,
                         tracer_provider=runtime.tracer_provider)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = httpx.Client(base_url=url, timeout=30, headers={"authorization": f"Bearer {key}"})
        self.started.append((server, thread, runtime, client))
        return TracedServer(url, runtime, client, exporter)

    def close(self) -> None:
        for server, thread, runtime, client in self.started:
            client.close()
            server.should_exit = True
            thread.join(DEADLINE_SECONDS)
            assert not thread.is_alive(), "uvicorn did not stop"
            asyncio.run(runtime.aclose())


@pytest.fixture
def serve_traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TracedServer]]:
    monkeypatch.syspath_prepend(str(SUPPORT))
    servers = TracedServers(tmp_path)
    yield servers.start
    servers.close()
    sys.modules.pop("scriptkit", None)
