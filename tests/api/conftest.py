"""A real homeo app served by uvicorn on 127.0.0.1, with an in-process worker.

`serve(**settings)` starts one on a fresh SQLite data dir whose agents come from
tests/support/scriptkit.py; `api` is an httpx client on the default one.
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
from typing import Any

import httpx
import pytest
import uvicorn

from homeo.api.app import create_app
from homeo.config import Settings
from homeo.runtime import Runtime

SUPPORT = Path(__file__).parent.parent / "support"
START_DEADLINE_SECONDS = 30.0
FAST = {"poll_seconds": 0.02, "lease_seconds": 10, "retry_base_seconds": 0.0,
        "retry_max_seconds": 0.0}


@dataclass
class Served:
    url: str
    runtime: Runtime
    client: httpx.Client


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Served]]:
    monkeypatch.syspath_prepend(str(SUPPORT))
    import scriptkit

    started: list[tuple[uvicorn.Server, threading.Thread, Runtime, httpx.Client]] = []

    def start(with_worker: bool = True, **overrides: Any) -> Served:
        data = tmp_path / f"data{len(started)}"
        agents = scriptkit.write_agents(tmp_path / f"agents{len(started)}")
        settings = Settings(data_dir=data, agents_dir=agents, **{**FAST, **overrides})
        runtime = Runtime.open(settings)
        runtime.publish_agents()
        worker = runtime.worker() if with_worker else None
        app = create_app(settings, runtime.backends, runtime.metrics, worker, runtime.models)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, timeout=30)
        started.append((server, thread, runtime, client))
        return Served(url, runtime, client)

    yield start
    for server, thread, runtime, client in started:
        client.close()
        server.should_exit = True
        thread.join(START_DEADLINE_SECONDS)
        assert not thread.is_alive(), "uvicorn did not stop"
        asyncio.run(runtime.aclose())
    sys.modules.pop("scriptkit", None)


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    return serve()


@pytest.fixture
def api(served: Served) -> httpx.Client:
    return served.client
