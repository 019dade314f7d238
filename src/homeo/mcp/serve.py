"""`homeo mcp`: homeo's agents as the tools of an MCP server on stdio.

Each agent in the agents folder becomes a tool with one argument, `input`
(the task). A call submits a run for the default tenant through the durable
queue, works the queue in this process until the run ends, and returns the
run's output; a run that fails is returned as a tool error with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from homeo.engine.agents import AgentSpec, load_agents
from homeo.engine.submit import RunNeedsUser, UnknownAgent, submit_run
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run

# Ahead of queued background work in the same database, as `homeo run` is.
MCP_PRIORITY = 10
POLL_SECONDS = 0.1


async def run_to_end(runtime: Runtime, agent: str, text: str) -> Run:
    """Submit a run and work the queue until it ends; the finished run."""
    settings = runtime.settings
    run, _ = submit_run(
        runtime.backends,
        NewRun(tenant_id=settings.default_tenant, agent=agent, input=text),
        max_attempts=settings.max_attempts,
        priority=MCP_PRIORITY,
    )
    store = runtime.backends.store
    stop = asyncio.Event()
    serving = asyncio.create_task(runtime.worker(concurrency=1).serve(stop))
    try:
        while True:
            current = await asyncio.to_thread(store.get_run, run.tenant_id, run.id)
            if current is not None and current.is_final:
                return current
            await asyncio.sleep(POLL_SECONDS)
    finally:
        stop.set()
        await serving


def _agent_tool(runtime: Runtime, spec: AgentSpec) -> Callable[[str], Awaitable[str]]:
    name = spec.name

    async def run_agent(
        input: Annotated[str, Field(description="the task for the agent")],  # noqa: A002
    ) -> str:
        try:
            run = await run_to_end(runtime, name, input)
        except (UnknownAgent, RunNeedsUser) as error:
            raise ToolError(str(error)) from None
        if run.status != "succeeded":
            raise ToolError(f"run {run.id} of agent {name!r} {run.status}: {run.error or ''}")
        return run.output or ""

    return run_agent


def build_server(runtime: Runtime) -> MCPServer:
    """An MCP server with one tool per agent in the agents folder."""
    server = MCPServer("homeo", log_level="WARNING")
    settings = runtime.settings
    for spec in load_agents(settings.agents_dir, runtime.models, settings.mcp_servers).values():
        server.add_tool(
            _agent_tool(runtime, spec),
            name=spec.name,
            description=spec.description or f"Run the homeo agent {spec.name!r} on a task.",
            structured_output=False,
        )
    return server
