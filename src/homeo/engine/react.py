"""The tool-calling (ReAct) loop as a two-node graph:

    model --(tool calls)--> tools --(one call per step, until none left)--> model
      \\--(final answer)--> END

Each tool call is its own step, so a crash between two calls of one model turn
never repeats the first.

Model and tool calls are spans inside their step's span (GenAI semantic
conventions: `chat {model}`, `execute_tool {tool}`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

from opentelemetry.trace import SpanKind

from homeo.engine.budgets import RunBudget, check_run_budget
from homeo.engine.errors import RetryableError, RunFailed
from homeo.engine.graph import END, Graph, Node, Outcome, RunState, StepContext
from homeo.llm.base import Message, Model, ModelError
from homeo.observe import tracing
from homeo.tools.permissions import ToolGate
from homeo.tools.registry import Tool, ToolError

MAX_TOOL_RESULT_CHARS = 20_000


class ModelNode(Node):
    kind = "model"

    def __init__(
        self,
        model: Model,
        tools: dict[str, Tool],
        *,
        max_steps: int,
        max_tokens: int | None = None,
        temperature: float | None = None,
        budget: RunBudget | None = None,
        name: str = "model",
    ) -> None:
        super().__init__(name)
        self.model = model
        self.tools = tools
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.budget = budget or RunBudget()

    def describe(self, state: RunState) -> Any:
        last = state.messages[-1] if state.messages else None
        return {
            "model": self.model.name,
            "messages": len(state.messages),
            "last": last.model_dump(exclude_defaults=True) if last else None,
        }

    async def run(self, state: RunState, context: StepContext) -> Outcome:
        if state.model_turns >= self.max_steps:
            raise RunFailed(
                f"the agent used all {self.max_steps} model turns (max_steps) without a final"
                " answer; raise max_steps in its definition or simplify the task"
            )
        warned = set(state.warned_budgets)
        reached = check_run_budget(self.budget, state.usage.total_tokens, warned)
        if context.budgets is not None:
            reached += await context.budgets.check(context.tenant_id, context.agent, warned)
        # On its last allowed turn the model gets no tools, so it must answer
        # instead of spending the run's final step on another tool call.
        last_turn = state.model_turns == self.max_steps - 1 and self.max_steps > 1
        offered = [] if last_turn else [tool.spec for tool in self.tools.values()]
        try:
            with tracing.span(
                context.tracer,
                f"chat {self.model.name}",
                kind=SpanKind.CLIENT,
                attributes={"gen_ai.operation.name": "chat",
                            "gen_ai.request.model": self.model.name},
            ) as span:
                response = await self.model.request(
                    state.messages,
                    offered,
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                )
                span.set_attributes({"gen_ai.usage.input_tokens": response.usage.input_tokens,
                                     "gen_ai.usage.output_tokens": response.usage.output_tokens})
        except ModelError as error:
            if error.retryable:
                raise RetryableError(f"model {self.model.name}: {error}") from error
            raise RunFailed(f"model {self.model.name}: {error}") from error
        message = response.message
        # States are never mutated in place, so a shallow copy with new lists is
        # enough (a deep copy per step would make a run quadratic in its length).
        changes: dict[str, Any] = {
            "messages": [*state.messages, message],
            "model_turns": state.model_turns + 1,
        }
        if reached:
            changes["warned_budgets"] = [*state.warned_budgets, *reached]
        if message.tool_calls:
            changes["pending_tool_calls"] = list(message.tool_calls)
            target = "tools"
        else:
            changes["output"] = message.content
            target = END
        new = state.model_copy(update=changes)
        return Outcome(
            output=message.model_dump(exclude_defaults=True),
            state=new,
            next=target,
            usage=response.usage,
            model=self.model.name,
        )


class ToolNode(Node):
    """Runs the first pending tool call. Errors the model can fix (unknown tool,
    a tool the tenant may not use or has called too often, bad arguments, a
    tool's exception or timeout) go back to it as the tool's result, up to
    `max_tool_errors`; then the run fails."""

    kind = "tool"

    def __init__(
        self, tools: dict[str, Tool], *, max_tool_errors: int = 3, name: str = "tools",
        gate: ToolGate | None = None,
    ) -> None:
        super().__init__(name)
        self.tools = tools
        self.max_tool_errors = max_tool_errors
        self.gate = gate or ToolGate()

    def step_name(self, state: RunState) -> str:
        return state.pending_tool_calls[0].name

    def describe(self, state: RunState) -> Any:
        return state.pending_tool_calls[0].model_dump()

    def is_idempotent(self, state: RunState) -> bool:
        tool = self.tools.get(state.pending_tool_calls[0].name)
        return tool is None or tool.idempotent  # an unknown tool never ran

    async def run(self, state: RunState, context: StepContext) -> Outcome:
        call, remaining = state.pending_tool_calls[0], state.pending_tool_calls[1:]
        tool_errors = state.tool_errors
        try:
            with tracing.span(
                context.tracer,
                f"execute_tool {call.name}",
                attributes={"gen_ai.operation.name": "execute_tool",
                            "gen_ai.tool.name": call.name, "gen_ai.tool.call.id": call.id},
            ):
                result: Any = await self._call(call.name, call.arguments, context)
            output: dict[str, Any] = {"result": result}
            content = result if isinstance(result, str) else json.dumps(result, default=str)
        except ToolError as error:
            tool_errors += 1
            if tool_errors > self.max_tool_errors:
                raise RunFailed(
                    f"{error} (tool errors: {tool_errors}, more than max_tool_errors="
                    f"{self.max_tool_errors})"
                ) from error
            output = {"error": str(error)}
            content = f"error: {error}"
        reply = Message(
            role="tool", content=content[:MAX_TOOL_RESULT_CHARS], tool_call_id=call.id,
            name=call.name,
        )
        new = state.model_copy(
            update={
                "messages": [*state.messages, reply],
                "pending_tool_calls": remaining,
                "tool_errors": tool_errors,
            }
        )
        return Outcome(output=output, state=new, next="tools" if remaining else "model")

    async def _call(self, name: str, arguments: dict[str, Any], context: StepContext) -> Any:
        tool = self.tools.get(name)
        if tool is None:
            allowed = ", ".join(sorted(self.tools)) or "none"
            raise ToolError(f"tool {name!r} is not available to this agent (allowed: {allowed})")
        self.gate.admit(context.tenant_id, context.agent, tool)
        valid = tool.validate(arguments)
        try:
            if inspect.iscoroutinefunction(tool.function):
                pending = tool.function(**valid)
            else:
                pending = asyncio.to_thread(tool.function, **valid)
            return await asyncio.wait_for(pending, timeout=tool.timeout_seconds)
        except TimeoutError:
            raise ToolError(f"tool {name!r} timed out after {tool.timeout_seconds:g}s") from None
        except ToolError:
            raise
        except Exception as error:
            raise ToolError(f"tool {name!r} raised {type(error).__name__}: {error}") from error


def tool_calling_graph(
    model: Model,
    tools: list[Tool],
    *,
    max_steps: int,
    max_tool_errors: int = 3,
    max_tokens: int | None = None,
    temperature: float | None = None,
    budget: RunBudget | None = None,
    gate: ToolGate | None = None,
) -> Graph:
    by_name = {tool.name: tool for tool in tools}
    return Graph(
        nodes={
            "model": ModelNode(
                model, by_name, max_steps=max_steps, max_tokens=max_tokens,
                temperature=temperature, budget=budget,
            ),
            "tools": ToolNode(by_name, max_tool_errors=max_tool_errors, gate=gate),
        },
        start="model",
    )
