"""A real homeo app served by uvicorn on 127.0.0.1, with an in-process worker.

`serve(**settings)` starts one on a fresh SQLite data dir whose agents come from
tests/support/scriptkit.py, with an admin API key for the default tenant that
its `client` sends; `add_key(served, tenant)` makes keys for other tenants.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
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
from opentelemetry.trace import TracerProvider

from homeo.api.app import create_app
from homeo.config import Settings
from homeo.keys import create_key
from homeo.runtime import Runtime
from homeo.tls import https_protocol, server_context

SUPPORT = Path(__file__).parent.parent / "support"
START_DEADLINE_SECONDS = 30.0
FAST = {"poll_seconds": 0.02, "lease_seconds": 10, "retry_base_seconds": 0.0,
        "retry_max_seconds": 0.0}


@dataclass
class Served:
    url: str
    runtime: Runtime
    client: httpx.Client
    key: str
    verify: ssl.SSLContext | bool = True  # over TLS: trusts the test CA

    def client_for(self, key: str | None, **options: Any) -> httpx.Client:
        """Another client on this server, sending `key` (None: no key at all);
        `options` go to httpx.HTTPTransport (e.g. local_address)."""
        headers = {} if key is None else {"authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers,
                            transport=httpx.HTTPTransport(verify=self.verify, **options))


def add_key(served: Served, tenant: str, role: str = "member") -> str:
    """A key for `tenant`, with the agents published for it as `homeo keys create` does."""
    key, _ = create_key(served.runtime.backends.store, tenant, "test", role=role)
    served.runtime.publish_agents()
    return key


class Servers:
    """Starts apps under `folder`; `close()` stops every one it started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[tuple[uvicorn.Server, threading.Thread, Runtime, httpx.Client]] = []

    def start(self, with_worker: bool = True, tracer_provider: TracerProvider | None = None,
              clock: Callable[[], float] = time.monotonic,
              wall_clock: Callable[[], float] = time.time, tls_ca: Path | None = None,
              **overrides: Any) -> Served:
        """`tracer_provider` gets the app's and the worker's spans (None: none are made);
        `clock` times the key checks' throttle, `wall_clock` the shared rate limits.
        With tls_cert_file and tls_key_file in `overrides` it serves HTTPS as `homeo
        serve` does, and clients verify it against `tls_ca`."""
        import scriptkit

        number = len(self.started)
        data = self.folder / f"data{number}"
        agents = scriptkit.write_agents(self.folder / f"agents{number}")
        settings = Settings(data_dir=data, agents_dir=agents, **{**FAST, **overrides})
        runtime = Runtime.open(settings, tracer_provider)
        runtime.publish_agents()
        key, _ = create_key(runtime.backends.store, settings.default_tenant, "test", role="admin")
        worker = runtime.worker() if with_worker else None
        autonomic = runtime.autonomic_loop(f"test{number}") if settings.autonomic == "on" else None
        app = create_app(settings, runtime.backends, runtime.metrics, worker, runtime.models,
                         runtime.tracer_provider, clock=clock, autonomic_loop=autonomic,
                         guards=runtime.safety, wall_clock=wall_clock)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        http: Any = "auto"
        if settings.tls_enabled():
            http = https_protocol(server_context(settings.tls_cert_file, settings.tls_key_file),
                                  settings.tls_handshake_timeout_seconds)
        server = uvicorn.Server(uvicorn.Config(app, http=http, log_level="warning",
                                               access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        url = f"{'https' if settings.tls_enabled() else 'http'}://127.0.0.1:{port}"
        verify = ssl.create_default_context(cafile=tls_ca) if tls_ca is not None else True
        client = httpx.Client(base_url=url, timeout=30, verify=verify,
                              headers={"authorization": f"Bearer {key}"})
        self.started.append((server, thread, runtime, client))
        return Served(url, runtime, client, key, verify)

    def close(self) -> None:
        for server, thread, runtime, client in self.started:
            client.close()
            server.should_exit = True
            thread.join(START_DEADLINE_SECONDS)
            assert not thread.is_alive(), "uvicorn did not stop"
            asyncio.run(runtime.aclose())


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Served]]:
    monkeypatch.syspath_prepend(str(SUPPORT))
    servers = Servers(tmp_path)
    yield servers.start
    servers.close()
    sys.modules.pop("scriptkit", None)


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    return serve()


@pytest.fixture
def api(served: Served) -> httpx.Client:
    return served.client
