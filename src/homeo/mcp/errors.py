"""The MCP error the engine reacts to, in a module of its own: catching it
must not import the `mcp` client (a slow import) in processes whose agents
use no MCP tools."""

from __future__ import annotations

from homeo.tools.registry import ToolError


class McpUnavailable(ToolError):
    """The MCP server cannot be reached now; a later attempt may succeed."""
