"""One MCP session per server, kept open: real stdio and streamable-HTTP servers.

The test server appends its process id to MCP_TEST_STARTS each time it starts,
so a test counts server starts instead of timing them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from homeo.config import McpServer, Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.submit import submit_run
from homeo.llm.base import Message
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.mcp.clients import McpClients
from homeo.mcp.tools import load_mcp_tool, shared_clients
from homeo.runtime import Runtime
from homeo.store.models import NewRun
from homeo.tools.registry import load_tool

SERVER_SCRIPT = Path(__file__).parent.parent / "support" / "mcp_server.py"
DEADLINE_SECONDS = 60

pytestmark = pytest.mark.slow  # starts subprocesses


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def starts(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def stdio(log: Path) -> McpServer:
    return McpServer(command=[sys.executable, str(SERVER_SCRIPT)],
                     env={"MCP_TEST_STARTS": str(log)}, timeout_seconds=DEADLINE_SECONDS)


def test_calls_share_one_stdio_server_until_it_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "starts"
    add = load_tool("mcp:testing/add", {"testing": stdio(log)})
    try:
        answers = [asyncio.run(add.function(a=n, b=1)) for n in range(5)]
        assert answers == ["1", "2", "3", "4", "5"]
        assert len(starts(log)) == 1  # the listing and five calls, one server

        first = starts(log)[0]
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not alive(first), "the killed server is gone")
        server = stdio(log)
        wait_until(lambda: not shared_clients().connected("testing", server),
                   "homeo to see the connection close")
        # The next call finds the session dead, starts the server again and succeeds.
        assert asyncio.run(add.function(a=40, b=2)) == "42"
        assert asyncio.run(add.function(a=1, b=1)) == "2"
        assert len(starts(log)) == 2 and alive(starts(log)[1])
    finally:
        shared_clients().close()
    assert not any(alive(pid) for pid in starts(log))


def test_concurrent_calls_share_the_session(tmp_path: Path) -> None:
    log = tmp_path / "starts"
    clients = McpClients()
    servers = {"testing": stdio(log)}
    try:
        add = load_mcp_tool("mcp:testing/add", servers, clients)

        async def together() -> list[str]:
            return list(await asyncio.gather(*(add.function(a=n, b=n) for n in range(8))))

        assert asyncio.run(together()) == [str(2 * n) for n in range(8)]
        assert len(starts(log)) == 1
    finally:
        clients.close()
    assert not any(alive(pid) for pid in starts(log))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A streamable-HTTP server, and a function that kills it and starts it
    again on the same port."""
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--http", str(port)],
            env={**os.environ, "MCP_TEST_STARTS": str(tmp_path / "http-starts")},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        processes.append(process)

        def listening() -> bool:
            assert process.poll() is None, "the MCP test server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until(listening, "the HTTP MCP server listens")

    def restart() -> None:
        processes[-1].kill()
        processes[-1].wait(timeout=DEADLINE_SECONDS)
        start()

    start()
    try:
        yield f"http://127.0.0.1:{port}/mcp", restart
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=DEADLINE_SECONDS)


def test_calls_share_one_http_connection_and_reconnect_after_a_restart(
    http_server: tuple[str, Callable[[], None]],
) -> None:
    url, restart = http_server
    clients = McpClients()
    servers = {"remote": McpServer(url=url, timeout_seconds=DEADLINE_SECONDS)}
    try:
        whoami = load_mcp_tool("mcp:remote/whoami", servers, clients)
        seen = {asyncio.run(whoami.function()) for _ in range(4)}
        assert len(seen) == 1  # one client, one connection (the same port) for every call

        restart()  # the connection dies with the process
        (before,) = seen
        after = asyncio.run(whoami.function())
        assert after.split()[0] != before.split()[0]  # answered by the new process
        assert asyncio.run(whoami.function()) == after
    finally:
        clients.close()


def test_the_runtime_reuses_sessions_across_runs_and_stops_servers_at_close(
    tmp_path: Path,
) -> None:
    log = tmp_path / "starts"
    settings = Settings(data_dir=tmp_path / "data", poll_seconds=0.01,
                        mcp_servers={"testing": stdio(log)})
    runtime = Runtime.open(settings)
    try:
        runtime.models.add("test:adder", ScriptedModel(
            lambda messages, tools: tool_call("add", a=20, b=22)
            if not any(m.role == "tool" for m in messages)
            else Message(role="assistant", content=f"sum {messages[-1].content}")))
        runtime.agents.publish("default", {"adder": AgentSpec(
            name="adder", model="test:adder", tools=["mcp:testing/add"], max_steps=3)})
        runs = [submit_run(runtime.backends, NewRun(tenant_id="default", agent="adder",
                                                    input=str(n)))[0].id for n in range(3)]
        assert asyncio.run(runtime.worker(1).run_until_idle()) == 3
        outputs = [runtime.backends.store.get_run("default", run).output for run in runs]
        assert outputs == ["sum 42"] * 3
        assert len(starts(log)) == 1 and alive(starts(log)[0])
    finally:
        asyncio.run(runtime.aclose())
    assert starts(log) and not any(alive(pid) for pid in starts(log))
