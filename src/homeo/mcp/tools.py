"""Tools of MCP servers, used by agents like any other tool.

The operator names the servers in HOMEO_MCP_SERVERS:

    {"files": {"command": ["python", "files_server.py"]},
     "search": {"url": "http://127.0.0.1:9000/mcp"}}

and an agent lists the tools it may call as `mcp:SERVER/TOOL`. The model sees
the tool under its MCP name, with the server's description and JSON schema;
tool policies match it by name or by `mcp:SERVER/TOOL`. A server's tool list
is read once per process, when the first agent that uses it is built. Calls go
through one session per server, opened on first use and kept (clients.py).
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

import mcp.types as mcp_types

from homeo.config import McpServer
from homeo.mcp.clients import McpClients
from homeo.tools.registry import Tool, ToolError

PREFIX = "mcp:"

_shared: McpClients | None = None
_shared_lock = threading.Lock()


def shared_clients() -> McpClients:
    """The sessions of tools loaded without a runtime (`load_tool`), closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = McpClients()
            atexit.register(_shared.close)
        return _shared


def parse_reference(reference: str) -> tuple[str, str]:
    """`mcp:SERVER/TOOL` -> (SERVER, TOOL)."""
    server, _, name = reference.removeprefix(PREFIX).partition("/")
    if not reference.startswith(PREFIX) or not server or not name:
        raise ToolError(f"MCP tool reference {reference!r} must look like 'mcp:SERVER/TOOL'")
    return server, name


def resolve_reference(reference: str, servers: dict[str, McpServer]) -> tuple[str, McpServer, str]:
    """(server name, its settings, tool name) for `mcp:SERVER/TOOL`, checked
    without contacting the server."""
    server_name, tool_name = parse_reference(reference)
    server = servers.get(server_name)
    if server is None:
        known = ", ".join(sorted(servers)) or "none"
        raise ToolError(
            f"tool {reference!r}: no MCP server {server_name!r} in HOMEO_MCP_SERVERS"
            f" (configured: {known})"
        )
    return server_name, server, tool_name


def _text(name: str, tool: str, result: mcp_types.CallToolResult) -> str:
    text = "\n".join(
        block.text if isinstance(block, mcp_types.TextContent) else f"<{block.type} content>"
        for block in result.content
    )
    if result.is_error:
        raise ToolError(f"MCP tool {tool!r} of server {name!r} failed: {text}")
    return text


def _tool(
    reference: str, listed: list[mcp_types.Tool], clients: McpClients,
    server_name: str, server: McpServer, tool_name: str,
) -> Tool:
    found = {tool.name: tool for tool in listed}.get(tool_name)
    if found is None:
        offered = ", ".join(sorted(tool.name for tool in listed)) or "none"
        raise ToolError(
            f"tool {reference!r}: MCP server {server_name!r} has no tool {tool_name!r}"
            f" (it offers: {offered})"
        )

    async def call(**arguments: Any) -> str:
        result = await clients.call_tool(server_name, server, tool_name, arguments)
        return _text(server_name, tool_name, result)

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


async def aload_mcp_tool(
    reference: str, servers: dict[str, McpServer], clients: McpClients
) -> Tool:
    """The Tool for `mcp:SERVER/TOOL`; the listing is awaited, not blocked on."""
    server_name, server, tool_name = resolve_reference(reference, servers)
    listed = await clients.list_tools(server_name, server)
    return _tool(reference, listed, clients, server_name, server, tool_name)


def load_mcp_tool(
    reference: str,
    servers: dict[str, McpServer],
    clients: McpClients | None = None,
) -> Tool:
    """`aload_mcp_tool` for sync code, with the shared sessions by default.
    `servers` are the configured ones (HOMEO_MCP_SERVERS, read by the runtime).
    It blocks until the server lists its tools."""
    clients = clients or shared_clients()
    server_name, server, tool_name = resolve_reference(reference, servers)
    listed = clients.list_tools_now(server_name, server)
    return _tool(reference, listed, clients, server_name, server, tool_name)
