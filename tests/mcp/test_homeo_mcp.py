"""`homeo mcp` as a real subprocess, driven by the official MCP client library."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

SUPPORT = Path(__file__).parent.parent / "support"
HOMEO = Path(sys.executable).parent / "homeo"

pytestmark = pytest.mark.slow  # starts subprocesses


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    sys.path.insert(0, str(SUPPORT))
    try:
        import scriptkit
    finally:
        sys.path.remove(str(SUPPORT))
    return scriptkit.write_agents(tmp_path / "agents", ["echo", "calc", "broken"])


def homeo_mcp(tmp_path: Path, agents_dir: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=str(HOMEO),
        args=["mcp", "--agents-dir", str(agents_dir), "--data-dir", str(tmp_path / "data")],
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(SUPPORT),
                                                         os.environ.get("PYTHONPATH")])),
             "PATH": os.environ.get("PATH", "")},
    )


def test_agents_are_listed_and_called_as_mcp_tools(tmp_path: Path, agents_dir: Path) -> None:
    async def session() -> None:
        async with Client(homeo_mcp(tmp_path, agents_dir), read_timeout_seconds=60) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert sorted(listed) == ["broken", "calc", "echo"]
            assert listed["calc"].description == "scripted calc"
            assert listed["calc"].input_schema["required"] == ["input"]

            answer = await client.call_tool("calc", {"input": "6*7"})
            assert not answer.is_error
            assert [block.text for block in answer.content] == ["6*7 = 42"]

            echoed = await client.call_tool("echo", {"input": "hello"})
            assert [block.text for block in echoed.content] == ["echo: hello"]

            failed = await client.call_tool("broken", {"input": "anything"})
            assert failed.is_error
            assert "of agent 'broken' failed" in failed.content[0].text
            assert "scripted refusal" in failed.content[0].text

    asyncio.run(session())
    assert (tmp_path / "data" / "homeo.db").is_file()  # the runs went through the store
