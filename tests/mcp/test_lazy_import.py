"""Workers and the runtime start without importing the `mcp` client (a slow
import): it loads only when an agent has MCP tools."""

from __future__ import annotations

import subprocess
import sys


def test_the_worker_and_runtime_do_not_import_the_mcp_client() -> None:
    probe = ("import sys, homeo.engine.worker, homeo.runtime, homeo.cli;"
             " print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "[]"


def test_mcp_unavailable_is_one_class_from_either_module() -> None:
    from homeo.mcp.clients import McpUnavailable as FromClients
    from homeo.mcp.errors import McpUnavailable

    assert FromClients is McpUnavailable  # one class, wherever it is imported from
