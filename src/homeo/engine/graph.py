"""An agent is a graph of nodes; running a node is a step.

The engine keeps one `RunState` per run. A node reads it, does its work (call
a model, call a tool, pick a branch), and returns an `Outcome`: what to record
as the step's output, the new state, and which node runs next. The engine
checkpoints the new state before it starts the next node, so a resumed run
continues exactly where the last completed step left it.

New patterns (plan-and-execute, supervisor routing, human approval,
reflection) are new `Node` kinds wired into a `Graph`; the run loop in
`engine/runner.py` does not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import NoOpTracer, Tracer
from pydantic import BaseModel, Field

from homeo.llm.base import Message, ToolCall, Usage

if TYPE_CHECKING:
    from homeo.engine.budgets import TenantBudgets

END = "__end__"


class RunState(BaseModel):
    """Everything a run knows between steps. Serialised into each checkpoint."""

    messages: list[Message] = Field(default_factory=list)
    pending_tool_calls: list[ToolCall] = Field(default_factory=list)
    model_turns: int = 0
    tool_errors: int = 0
    # The model repeated a tool call: its next turn is offered no tools.
    answer_now: bool = False
    output: str | None = None
    # Tokens of the run's completed steps (the runner adds each step's usage)
    # and the soft budgets already warned about, so each warns once per run.
    usage: Usage = Field(default_factory=Usage)
    warned_budgets: list[str] = Field(default_factory=list)
    # Free-form room for patterns that need more (a plan, critiques, a route).
    data: dict[str, Any] = Field(default_factory=dict)


class Outcome(BaseModel):
    output: Any = None
    state: RunState
    next: str
    usage: Usage = Field(default_factory=Usage)
    model: str = ""  # the model that used `usage`, for the metrics


@dataclass
class StepContext:
    """What a node may use besides the state: who runs it and where to report."""

    tenant_id: str
    run_id: str
    request_id: str | None = None
    emit: Callable[[dict[str, Any]], None] = field(default=lambda event: None)
    agent: str = ""
    budgets: TenantBudgets | None = None  # tenant and agent token limits, if any
    tracer: Tracer = field(default_factory=NoOpTracer)  # for the node's model and tool spans


class Node(ABC):
    kind: str = "node"

    def __init__(self, name: str) -> None:
        self.name = name

    def step_name(self, state: RunState) -> str:
        """The name recorded on the step (a tool node names the tool it calls)."""
        return self.name

    def describe(self, state: RunState) -> Any:
        """The step's input, recorded before the node runs."""
        return None

    def is_idempotent(self, state: RunState) -> bool:
        """May this step run again if a crash left its outcome unknown?"""
        return True

    @abstractmethod
    async def run(self, state: RunState, context: StepContext) -> Outcome: ...


class BranchNode(Node):
    """Chooses the next node from the state: `route(state) -> node name or END`."""

    kind = "branch"

    def __init__(self, name: str, route: Callable[[RunState], str]) -> None:
        super().__init__(name)
        self.route = route

    async def run(self, state: RunState, context: StepContext) -> Outcome:
        target = self.route(state)
        return Outcome(output={"next": target}, state=state, next=target)


class GraphError(Exception):
    """The graph is malformed (unknown node, missing start)."""


@dataclass
class Graph:
    nodes: dict[str, Node]
    start: str

    def __post_init__(self) -> None:
        if self.start not in self.nodes:
            raise GraphError(f"start node {self.start!r} is not in the graph")

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise GraphError(f"no node named {name!r} in the graph") from None
