"""MCP both ways: tools of MCP servers as homeo tools (`tools.py`), and homeo's
agents as MCP tools (`serve.py`, the `homeo mcp` command)."""
