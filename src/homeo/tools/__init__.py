"""Tools that agents call: plain Python functions with a JSON schema."""

from homeo.tools.registry import Tool, ToolError, load_tool, tool

__all__ = ["Tool", "ToolError", "load_tool", "tool"]
