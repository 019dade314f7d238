"""`remember` and `recall`: an agent's memory as tools.

An agent lists them (`tools: [homeo.tools.memory_tools:remember,
homeo.tools.memory_tools:recall]`) and says whose memory it is:

    memory: {scope: agent, ttl: 30d}   # scope: tenant | agent | user | run

The worker hands each call the memory of that scope through its
`ToolContext`; the tools never choose the tenant or the scope themselves, so
a model cannot reach another agent's, run's or tenant's memories.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from homeo.tools.context import MemoryAccess, ToolContext
from homeo.tools.registry import ToolError, tool


def _memory(context: ToolContext) -> MemoryAccess:
    if context.memory is None:
        raise ToolError(
            f"agent {context.agent!r} has no memory: add `memory: {{scope: agent}}` to its"
            " YAML (scope: tenant, agent, user or run)")
    return context.memory


# Idempotent: storing the same text again merges into the memory it made
# (homeo.memory.lifecycle), so a step repeated after a crash adds nothing.
@tool(idempotent=True, timeout_seconds=60)
async def remember(
    text: Annotated[str, Field(min_length=1, max_length=2000)],
    context: ToolContext,
    importance: Annotated[float | None, Field(gt=0, le=1)] = None,
) -> dict[str, Any]:
    """Remember one fact for later: stored only if it is new; a newer fact about
    the same subject replaces the older one.

    Args:
        text: the fact, as one short sentence, for example "The deploy server is db-9"
        importance: how much it matters, from 0 (hardly) to 1 (very); default 0.5
    """
    return await _memory(context).remember(text, importance)


@tool(idempotent=True, timeout_seconds=60)
async def recall(
    query: Annotated[str, Field(min_length=1, max_length=2000)],
    context: ToolContext,
    k: Annotated[int, Field(ge=1, le=20)] = 5,
) -> list[dict[str, Any]]:
    """Recall remembered facts that match a query, best first.

    Args:
        query: what to look for, for example "deploy server"
        k: how many facts at most
    """
    return await _memory(context).recall(query, k)
