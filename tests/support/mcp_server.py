"""A small MCP server for the MCP tests, run as its own process.

    python mcp_server.py                 # over stdio
    python mcp_server.py --http PORT     # over streamable HTTP on 127.0.0.1:PORT/mcp

Two environment variables let a test observe and steer it:

    MCP_TEST_STARTS=FILE   each start appends the process id to FILE, one a line
    MCP_TEST_LIST_GATE=F   listing the tools waits until the file F exists
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError


class GatedServer(MCPServer):
    """Lists its tools only once MCP_TEST_LIST_GATE exists (when set), so a test
    decides how long a listing takes without sleeping."""

    async def list_tools(self):  # type: ignore[no-untyped-def]
        gate = os.environ.get("MCP_TEST_LIST_GATE")
        while gate and not Path(gate).exists():
            await anyio.sleep(0.02)
        return await super().list_tools()


server = GatedServer("test-tools", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper() + "!"


@server.tool()
def refuse(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"refused: {reason}")


@server.tool()
def whoami(ctx: Context) -> str:
    """This process and, over HTTP, the client's port: a client that keeps its
    connection calls from the same port every time."""
    client = getattr(ctx.request_context.request, "client", None)
    return f"{os.getpid()} {client.port if client else 'stdio'}"


if __name__ == "__main__":
    if starts := os.environ.get("MCP_TEST_STARTS"):
        with open(starts, "a") as log:
            log.write(f"{os.getpid()}\n")
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        import uvicorn

        # Idle connections stay open, so a client that reuses its connection shows it.
        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[2]),
                    log_level="warning", timeout_keep_alive=3600)
    else:
        server.run("stdio")
