"""Agents as tools: a call to another agent is a child run.

An agent lists the agents it may hand work to (`agents: [researcher, writer]`
in its YAML); each becomes a tool taking one argument, `task`. Calling it
starts a run of that agent with the task as input, linked to the caller by
`parent_run_id`, with its own steps, checkpoints and trace. The caller's step
then waits for the child (engine/waits.py) without holding a worker slot, and
runs again when the child has ended: the tool returns the child's output, or
tells the model the child failed.

The child is found again by a key made of the parent run and the tool call
(its idempotency key), so a step that runs twice (a crash, or the wake-up
after the child ended) never starts a second child.

A parent with a token budget (its agent's `budget.run_tokens`, or its own
share when it is a child itself) gives each child a share: what the parent
has left when it starts the child. The child fails once it has used it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from homeo.backends import Backends
from homeo.engine.submit import IdempotencyConflict, RunNeedsUser, UnknownAgent, submit_run
from homeo.store.models import NewRun, Run
from homeo.tools.context import ChildRun, ToolContext, WaitForRuns
from homeo.tools.registry import Tool, ToolError, from_function

# Child runs share one text limit with runs submitted over the API.
MAX_TASK_CHARS = 100_000


class StoreChildRuns:
    """`ChildRuns` for one claim of a run: children are stored and queued runs."""

    def __init__(
        self, backends: Backends, parent: Run, *, max_attempts: int = 3,
        run_tokens: int | None = None,
    ) -> None:
        """`run_tokens` is the parent's own token limit (None: it has none)."""
        self.backends = backends
        self.parent = parent
        self.max_attempts = max_attempts
        limits = [limit for limit in (run_tokens, parent.token_budget) if limit is not None]
        self.limit = min(limits) if limits else None

    async def start(self, agent: str, input: str, *, key: str) -> ChildRun:
        share = None
        if self.limit is not None:
            now = await asyncio.to_thread(self.backends.store.get_run, self.parent.tenant_id,
                                          self.parent.id)
            used = 0 if now is None else now.input_tokens + now.output_tokens
            share = self.limit - used
            if share <= 0:
                raise ToolError(f"no token budget is left to hand a task to {agent!r}: this"
                                f" run used {used} of its {self.limit}")
        new = NewRun(tenant_id=self.parent.tenant_id, agent=agent, input=input,
                     idempotency_key=f"child:{key}", request_id=self.parent.request_id,
                     parent_run_id=self.parent.id, token_budget=share,
                     user_id=self.parent.user_id)  # a sub-agent works for the same person
        try:
            run, _ = await asyncio.to_thread(submit_run, self.backends, new,
                                             max_attempts=self.max_attempts)
        except (UnknownAgent, IdempotencyConflict, RunNeedsUser) as error:
            raise ToolError(f"cannot start agent {agent!r}: {error}") from None
        return ChildRun(id=run.id, agent=run.agent, status=run.status, output=run.output,
                        error=run.error)


def agent_tool(agent: str, description: str) -> Tool:
    """The tool through which an agent hands a task to `agent`."""

    async def delegate(task: str, context: ToolContext) -> str:
        """Hand a task to another agent and get its answer.

        Args:
            task: what the agent should do, with everything it needs to know
        """
        if context.children is None:
            raise ToolError(f"agent {agent!r} cannot be called here: sub-agents run only"
                            " inside a worker")
        if len(task) > MAX_TASK_CHARS:
            raise ToolError(f"the task for {agent!r} is {len(task)} characters; at most"
                            f" {MAX_TASK_CHARS}")
        child = await context.children.start(agent, task, key=context.call_key)
        if not child.ended:
            raise WaitForRuns([child.id])
        if child.status == "succeeded":
            return child.output or ""
        raise ToolError(f"agent {agent!r} (run {child.id}) {child.status}:"
                        f" {child.error or 'no error given'}")

    built = from_function(delegate)
    return replace(built, name=agent, source=f"agent:{agent}", idempotent=True,
                   timeout_seconds=60.0,
                   description=description or f"Hand a task to the {agent!r} agent.")
