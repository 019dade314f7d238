"""A supervisor routes a task between named agents until it is done.

    pattern: supervisor
    agents: [researcher, writer]
    supervisor: {max_rounds: 6, answer: last_result}   # or summary

    route --(agent, task)--> delegate --(the child run's result)--> route
      \\--(FINISH)--> END

The routing step asks the model which agent goes next and with what task, as
JSON (`{"agent": name | "FINISH", "task": ...}`, structured output). The
delegate step hands the task to that agent as a child run, through the same
agent tool an agent with `agents:` calls (engine/subagents.py): the supervisor
waits without a worker slot and resumes with the child's result, which the
next routing step sees. On FINISH the answer is the last agent's result
(`answer: last_result`) or the supervisor's own words in `task` (`summary`).
A route that repeats an earlier hand-off (same agent and task) ends the run
the same way: the agent would only answer again what it answered.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from homeo.engine.budgets import RunBudget
from homeo.engine.errors import RunFailed
from homeo.engine.graph import END, Graph, Node, Outcome, RunContext, RunState
from homeo.engine.react import ApprovalPolicy, ToolNode, ask_model
from homeo.llm.base import Message, Model, ToolCall
from homeo.tools.permissions import ToolGate
from homeo.tools.registry import Tool

FINISH = "FINISH"


class SupervisorPolicy(BaseModel):
    """The agent's `supervisor:` in its YAML (with `pattern: supervisor`)."""

    model_config = ConfigDict(extra="forbid")
    max_rounds: int = Field(6, ge=1, le=50, description="Hand-offs at most, per run.")
    answer: Literal["last_result", "summary"] = "last_result"
    # Room for the JSON route, whatever the agent's own max_tokens.
    max_tokens: int = Field(256, ge=16, le=4096)


def route_schema(agents: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"agent": {"enum": [*agents, FINISH]},
                       "task": {"type": "string", "maxLength": 2000}},
        "required": ["agent", "task"],
    }


def route_request(agents: dict[str, str]) -> str:
    listed = "\n".join(f"- {name}: {description}" for name, description in agents.items())
    return ("Choose who works next on the task. Agents:\n" + listed + f"\nReply with JSON:"
            " agent is the agent's name and task what it should do, with everything it"
            f" needs; or agent is {FINISH} when the task is done, and task the final answer.")


def last_result(state: RunState) -> str | None:
    return next((m.content for m in reversed(state.messages)
                 if m.role == "tool" and not m.is_error), None)


class RouteNode(Node):
    kind = "route"

    def __init__(self, model: Model, agents: dict[str, str], policy: SupervisorPolicy, *,
                 temperature: float | None = None, budget: RunBudget | None = None) -> None:
        super().__init__("route")
        self.model = model
        self.agents = agents  # name: description
        self.policy = policy
        self.temperature = temperature
        self.budget = budget

    def describe(self, state: RunState) -> Any:
        return {"model": self.model.name, "round": len(state.data.get("routes", [])) + 1}

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        routes = list(state.data.get("routes", []))
        sent = [*state.messages, Message(role="user", content=route_request(self.agents))]
        response, reached = await ask_model(
            self.model, sent, state, context, budget=self.budget,
            max_tokens=self.policy.max_tokens, temperature=self.temperature,
            json_schema=route_schema(list(self.agents)))
        route = json.loads(response.message.content)
        agent, task = str(route["agent"]), str(route["task"])
        changes: dict[str, Any] = {}
        if reached:
            changes["warned_budgets"] = [*state.warned_budgets, *reached]
        # A route that repeats an earlier hand-off (same agent, same task) would
        # get the same answer: small models loop so, so it ends the run instead.
        repeated = agent != FINISH and {"agent": agent, "task": task} in routes
        if repeated:
            route = {**route, "repeated": True}
        if agent == FINISH or repeated:
            result = last_result(state)
            summary = self.policy.answer == "summary" or result is None
            changes["output"] = task if summary else result
            target = END
        else:
            if len(routes) >= self.policy.max_rounds:
                raise RunFailed(
                    f"the supervisor handed out {len(routes)} tasks (supervisor.max_rounds)"
                    f" and still routes to {agent!r} instead of {FINISH}; raise max_rounds"
                    " or make the agents' answers more complete")
            call = ToolCall(id=f"route_{len(routes) + 1}", name=agent, arguments={"task": task})
            changes.update(
                messages=[*state.messages, Message(role="assistant", tool_calls=[call])],
                pending_tool_calls=[call],
                data={**state.data, "routes": [*routes, {"agent": agent, "task": task}]})
            target = "delegate"
        return Outcome(output=route, state=state.model_copy(update=changes), next=target,
                       usage=response.usage, model=self.model.name)


def supervisor_graph(
    model: Model,
    agent_tools: list[Tool],
    *,
    policy: SupervisorPolicy,
    temperature: float | None = None,
    budget: RunBudget | None = None,
    gate: ToolGate | None = None,
    approval: ApprovalPolicy | None = None,
    max_tool_errors: int = 3,
) -> Graph:
    """`agent_tools` are the agents' tools (engine/subagents.py `agent_tool`)."""
    agents = {tool.name: tool.description for tool in agent_tools}
    return Graph(nodes={
        "route": RouteNode(model, agents, policy, temperature=temperature, budget=budget),
        "delegate": ToolNode({tool.name: tool for tool in agent_tools}, name="delegate",
                             max_tool_errors=max_tool_errors, gate=gate, approval=approval,
                             then="route"),
    }, start="route")
