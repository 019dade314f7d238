"""Tools of MCP servers, used by agents like any other tool.

The operator names the servers in HOMEO_MCP_SERVERS:

    {"files": {"command": ["python", "files_server.py"]},
     "search": {"url": "http://127.0.0.1:9000/mcp"}}

and an agent lists the tools it may call as `mcp:SERVER/TOOL`. The model sees
the tool under its MCP name, with the server's description and JSON schema;
tool policies match it by name or by `mcp:SERVER/TOOL`. A server's tool list
is read once per process, when the first agent that uses it is built. Each
call opens its own connection (a stdio server is started for the call and
stopped after), so no session outlives a step and a crashed server only fails
that call.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mcp.types as mcp_types
from mcp import Client, StdioServerParameters

from homeo.config import McpServer, load_settings
from homeo.tools.registry import Tool, ToolError

PREFIX = "mcp:"

# Tool listings per server (name and settings), so building agents that list
# several tools of one server starts it once per process.
_listings: dict[str, list[mcp_types.Tool]] = {}
_listings_lock = threading.Lock()


def parse_reference(reference: str) -> tuple[str, str]:
    """`mcp:SERVER/TOOL` -> (SERVER, TOOL)."""
    server, _, name = reference.removeprefix(PREFIX).partition("/")
    if not reference.startswith(PREFIX) or not server or not name:
        raise ToolError(f"MCP tool reference {reference!r} must look like 'mcp:SERVER/TOOL'")
    return server, name


def _client(server: McpServer) -> Client:
    if server.url:
        return Client(server.url, read_timeout_seconds=server.timeout_seconds)
    parameters = StdioServerParameters(
        command=server.command[0], args=server.command[1:], env=server.env or None
    )
    return Client(parameters, read_timeout_seconds=server.timeout_seconds)


def _reason(error: BaseException) -> str:
    # The MCP client reports failures inside task groups; show the cause.
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"


async def list_tools(name: str, server: McpServer) -> list[mcp_types.Tool]:
    try:
        async with _client(server) as client:
            return list((await client.list_tools()).tools)
    except Exception as error:
        raise ToolError(f"MCP server {name!r}: cannot list its tools: {_reason(error)}") from None


async def call_tool(name: str, server: McpServer, tool: str, arguments: dict[str, Any]) -> str:
    """Call `tool` on the server; its text content, or ToolError if it failed."""
    try:
        async with _client(server) as client:
            result = await client.call_tool(tool, arguments)
    except Exception as error:
        raise ToolError(f"MCP server {name!r}: calling {tool!r} failed: {_reason(error)}") from None
    text = "\n".join(
        block.text if isinstance(block, mcp_types.TextContent) else f"<{block.type} content>"
        for block in result.content
    )
    if result.is_error:
        raise ToolError(f"MCP tool {tool!r} of server {name!r} failed: {text}")
    return text


def _blocking_list(name: str, server: McpServer) -> list[mcp_types.Tool]:
    key = json.dumps([name, server.model_dump()], sort_keys=True)
    with _listings_lock:
        cached = _listings.get(key)
    if cached is not None:
        return cached
    # Agents are built from sync code that may run inside an event loop (the
    # worker's), so the listing gets a loop of its own in a thread.
    with ThreadPoolExecutor(1) as pool:
        listed = pool.submit(asyncio.run, list_tools(name, server)).result()
    with _listings_lock:
        _listings[key] = listed
    return listed


def load_mcp_tool(reference: str, servers: dict[str, McpServer] | None = None) -> Tool:
    """The Tool for `mcp:SERVER/TOOL`, from the servers in HOMEO_MCP_SERVERS."""
    server_name, tool_name = parse_reference(reference)
    if servers is None:
        servers = load_settings().mcp_servers
    server = servers.get(server_name)
    if server is None:
        known = ", ".join(sorted(servers)) or "none"
        raise ToolError(
            f"tool {reference!r}: no MCP server {server_name!r} in HOMEO_MCP_SERVERS"
            f" (configured: {known})"
        )
    listed = {tool.name: tool for tool in _blocking_list(server_name, server)}
    found = listed.get(tool_name)
    if found is None:
        raise ToolError(
            f"tool {reference!r}: MCP server {server_name!r} has no tool {tool_name!r}"
            f" (it offers: {', '.join(sorted(listed)) or 'none'})"
        )

    async def call(**arguments: Any) -> str:
        return await call_tool(server_name, server, tool_name, arguments)

    schema = dict(found.input_schema)
    schema.pop("title", None)
    hints = found.annotations
    return Tool(
        name=tool_name,
        description=found.description or "",
        function=call,
        arguments=None,
        idempotent=bool(hints and hints.idempotent_hint),
        timeout_seconds=server.timeout_seconds,
        parameters=schema,
        source=reference,
    )
