"""Building an agent whose tools come from an MCP server leaves the event loop
free, and a server that cannot be reached at run time names the agent's file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from homeo.config import McpServer, Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.errors import RetryableError
from homeo.llm.providers.scripted import ScriptedModel
from homeo.runtime import Runtime

SERVER_SCRIPT = Path(__file__).parent.parent / "support" / "mcp_server.py"
LISTING_LIMIT_SECONDS = 60  # what a blocked loop would wait before the listing failed

pytestmark = pytest.mark.slow  # starts an MCP server process


def open_runtime(tmp_path: Path, servers: dict[str, McpServer]) -> Runtime:
    runtime = Runtime.open(Settings(data_dir=tmp_path / "data", mcp_servers=servers))
    runtime.models.add("test:quiet", ScriptedModel(["done"]))
    return runtime


def test_the_loop_keeps_running_while_an_mcp_server_lists_its_tools(tmp_path: Path) -> None:
    gate = tmp_path / "listing-may-finish"
    slow = McpServer(command=[sys.executable, str(SERVER_SCRIPT)],
                     env={"MCP_TEST_LIST_GATE": str(gate)}, timeout_seconds=LISTING_LIMIT_SECONDS)
    runtime = open_runtime(tmp_path, {"slow": slow})
    runtime.agents.publish("default", {"adder": AgentSpec(
        name="adder", model="test:quiet", tools=["mcp:slow/add", "mcp:slow/shout"])})

    async def scenario() -> tuple[list[str], bool]:
        build = asyncio.create_task(runtime.agents.aget("default", "adder"))
        # The server lists its tools only once this loop has run other code: if
        # building blocked the loop, the gate would never open and the build
        # would fail when the listing timed out.
        ticks = 0
        while ticks < 5 and not build.done():
            await asyncio.sleep(0.01)
            ticks += 1
        ticked_during_build = not build.done()
        gate.touch()
        agent = await build
        return [tool.name for tool in agent.tools], ticked_during_build

    try:
        names, ticked_during_build = asyncio.run(scenario())
    finally:
        asyncio.run(runtime.aclose())
    assert names == ["add", "shout"]
    assert ticked_during_build


def test_an_unreachable_mcp_server_at_run_time_names_the_agent_file(tmp_path: Path) -> None:
    broken = McpServer(command=[sys.executable, "-c", "raise SystemExit(3)"], timeout_seconds=30)
    runtime = open_runtime(tmp_path, {"broken": broken})
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "fetcher.yaml").write_text(
        "name: fetcher\nmodel: test:quiet\ntools: [mcp:broken/fetch]\n")
    from homeo.engine.agents import load_agents

    # The reference and the server's name are checked at load, without starting it.
    specs = load_agents(agents, runtime.models, runtime.settings.mcp_servers)
    runtime.agents.publish("default", specs)
    try:
        with pytest.raises(RetryableError) as caught:
            asyncio.run(runtime.agents.aget("default", "fetcher"))
    finally:
        asyncio.run(runtime.aclose())
    message = str(caught.value)
    assert message.startswith(f"agent 'fetcher' ({agents / 'fetcher.yaml'}): MCP server 'broken':")
    assert "cannot list its tools" in message
