"""Tools of a real MCP server process (stdio and streamable HTTP) used as homeo tools."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homeo.backends import open_backends
from homeo.config import McpServer, SettingsError, load_settings
from homeo.engine.agents import AgentError, AgentSpec, build_agent
from homeo.engine.graph import RunState, RunContext
from homeo.engine.react import ToolNode
from homeo.engine.runner import execute
from homeo.llm.base import Message
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.mcp.tools import load_mcp_tool
from homeo.store.models import NewRun
from homeo.tools.permissions import ToolGate, ToolPolicy
from homeo.tools.registry import Tool, ToolError, load_tool

SERVER_SCRIPT = Path(__file__).parent.parent / "support" / "mcp_server.py"
STDIO = {"testing": {"command": [sys.executable, str(SERVER_SCRIPT)]}}
SERVERS = {name: McpServer.model_validate(server) for name, server in STDIO.items()}


@pytest.fixture
def stdio_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEO_MCP_SERVERS", json.dumps(STDIO))


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(SERVER_SCRIPT), "--http", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the MCP test server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def call(tool: Tool, gate: ToolGate | None = None, **arguments: Any) -> dict[str, Any]:
    node = ToolNode({tool.name: tool}, gate=gate)
    state = RunState(pending_tool_calls=list(tool_call(tool.name, **arguments).tool_calls))
    outcome = asyncio.run(node.run(state, RunContext(tenant_id="acme", run_id="r", agent="a")))
    return outcome.output


@pytest.mark.usefixtures("stdio_server")
def test_a_stdio_server_tool_becomes_a_homeo_tool() -> None:
    add = load_tool("mcp:testing/add", SERVERS)
    assert (add.name, add.description, add.source) == ("add", "Add two integers.",
                                                       "mcp:testing/add")
    assert add.parameters["required"] == ["a", "b"]
    assert call(add, a=2, b=40) == {"result": "42"}


@pytest.mark.usefixtures("stdio_server")
def test_errors_go_back_to_the_model() -> None:
    refuse = load_tool("mcp:testing/refuse", SERVERS)
    assert call(refuse, reason="not today") == {
        "error": "MCP tool 'refuse' of server 'testing' failed: Error executing tool refuse: refused: not today"}
    add = load_tool("mcp:testing/add", SERVERS)
    # Checked against the server's schema before the server is called.
    error = call(add, a="two")["error"]
    assert error.startswith("invalid arguments for tool 'add': ")
    assert "a: 'two' is not of type 'integer'" in error and "'b' is a required property" in error


@pytest.mark.usefixtures("stdio_server")
def test_tool_policies_apply_to_mcp_tools() -> None:
    shout = load_tool("mcp:testing/shout", SERVERS)
    gate = ToolGate(ToolPolicy.model_validate({"acme": {"deny": ["mcp:testing/*"]}}))
    assert "not permitted for tenant 'acme'" in call(shout, gate, text="hi")["error"]
    gate = ToolGate(ToolPolicy.model_validate({"acme": {"allow": ["mcp:testing/shout"]}}))
    assert call(shout, gate, text="hi") == {"result": "HI!"}


@pytest.mark.usefixtures("stdio_server")
def test_references_that_name_nothing_say_what_exists() -> None:
    with pytest.raises(ToolError, match=r"no MCP server 'nope' .*\(configured: testing\)"):
        load_tool("mcp:nope/add", SERVERS)
    offers = r"\(it offers: add, refuse, shout, whoami\)"
    with pytest.raises(ToolError, match=rf"has no tool 'mul' {offers}"):
        load_tool("mcp:testing/mul", SERVERS)
    with pytest.raises(ToolError, match="must look like 'mcp:SERVER/TOOL'"):
        load_tool("mcp:testing", SERVERS)


def test_a_server_that_cannot_start_is_a_clear_error() -> None:
    broken = {"broken": McpServer(command=[sys.executable, "-c", "raise SystemExit(3)"],
                                  timeout_seconds=10)}
    with pytest.raises(ToolError, match="MCP server 'broken': cannot list its tools"):
        load_mcp_tool("mcp:broken/x", broken)


def test_a_streamable_http_server_tool_becomes_a_homeo_tool(http_url: str) -> None:
    shout = load_mcp_tool("mcp:remote/shout", {"remote": McpServer(url=http_url)})
    assert call(shout, text="over http") == {"result": "OVER HTTP!"}


@pytest.mark.usefixtures("stdio_server")
def test_an_agent_lists_and_calls_an_mcp_tool(tmp_path: Path) -> None:
    spec = AgentSpec(name="adder", tools=["mcp:testing/add"], max_steps=3)
    model = ScriptedModel([tool_call("add", a=20, b=22),
                           Message(role="assistant", content="the sum is 42")])
    agent = build_agent(spec, model, mcp_servers=SERVERS)
    backends = open_backends(f"sqlite:///{tmp_path / 'mcp.db'}")
    try:
        run, _ = backends.store.create_run(NewRun(tenant_id="t", agent="adder", input="20+22"))
        run = backends.store.transition_run("t", run.id, "running", allowed_from={"queued"})
        assert asyncio.run(execute(backends.store, run, agent.graph)) == "the sum is 42"
        steps = backends.store.list_steps("t", run.id)
        assert [(s.kind, s.name, s.output) for s in steps][1] == ("tool", "add", {"result": "42"})
    finally:
        backends.close()
    with pytest.raises(AgentError, match="no tool 'nothing'"):
        build_agent(AgentSpec(name="x", tools=["mcp:testing/nothing"]), model,
                    mcp_servers=SERVERS)


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ({"x": {}}, "give either `command` (stdio) or `url` (streamable HTTP)"),
        ({"x": {"command": ["a"], "url": "http://h/mcp"}}, "give either `command`"),
        ({"x": {"url": "ftp://h/mcp"}}, "must start with http:// or https://"),
        ({"Bad Name": {"command": ["a"]}}, "MCP server name 'Bad Name'"),
    ],
)
def test_the_servers_setting_is_validated(
    servers: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEO_MCP_SERVERS", json.dumps(servers))
    with pytest.raises(SettingsError, match=f"HOMEO_MCP_SERVERS.*{re.escape(message)}"):
        load_settings()
