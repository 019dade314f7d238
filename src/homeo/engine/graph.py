"""An agent is a graph of nodes; running a node is a step.

The engine keeps one `RunState` per run. A node reads it, does its work (call
a model, call a tool, pick a branch), and returns an `Outcome`: what to record
as the step's output, the new state, and which node runs next. The engine
checkpoints the new state before it starts the next node, so a resumed run
continues exactly where the last completed step left it.

A node may also end its step by waiting (`Outcome.wait`: an approval, a
person's answer, child runs; see engine/waits.py). The run then stops without
a worker; when it is woken, the node named by `next` runs again and finds what
it waited for in `RunState.decisions` (or its children ended).

Everything a node may use besides the state comes in one `RunContext`, built by
the worker for each claim of a run and handed down to the node and from there
to the tools (`homeo.tools.context.ToolContext`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry.trace import NoOpTracer, Tracer
from pydantic import BaseModel, Field

from homeo.llm.base import Message, ToolCall, Usage
from homeo.tools.context import ChildRuns, MemoryAccess, ToolSettings

if TYPE_CHECKING:
    from homeo.engine.budgets import TenantBudgets
    from homeo.safety.screen import Screen

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
    # What people answered, by wait id (engine/waits.py): an approval's
    # {"approved", "comment", "arguments"?}, or an input's {"answer"}.
    decisions: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Free-form room for patterns that need more (a plan, critiques, a route).
    data: dict[str, Any] = Field(default_factory=dict)


WaitKind = Literal["approval", "input", "children"]


class Wait(BaseModel):
    """What a waiting run waits for (stored as `Run.waiting_for`; engine/waits.py)."""

    id: str  # unique within the run; an answer names it
    kind: WaitKind
    # approval: {"tool", "arguments", "call_id"}; input: {"question", "tool", "call_id"};
    # children: {"runs": [run ids]}.
    detail: dict[str, Any] = Field(default_factory=dict)
    deadline: float | None = None  # epoch seconds; None: waits for ever
    on_timeout: Literal["reject", "fail"] = "reject"

    @property
    def runs(self) -> list[str]:
        return list(self.detail.get("runs", []))


class Outcome(BaseModel):
    output: Any = None
    state: RunState
    next: str
    usage: Usage = Field(default_factory=Usage)
    model: str = ""  # the model that used `usage`, for the metrics
    # Set when the step ends by waiting: the run stops until this arrives.
    wait: Wait | None = None


@dataclass
class RunContext:
    """What a node may use besides the state: whose run it is, its lease, where
    to report, and the parts it may use. Built by the worker for each claim."""

    tenant_id: str
    run_id: str
    agent: str = ""
    request_id: str | None = None
    parent_run_id: str | None = None
    fence: int | None = None  # the claim's fencing token (Store.claim_run)
    emit: Callable[[dict[str, Any]], None] = field(default=lambda event: None)
    budgets: TenantBudgets | None = None  # tenant and agent token limits, if any
    tracer: Tracer = field(default_factory=NoOpTracer)  # for the node's model and tool spans
    tools: ToolSettings = field(default_factory=ToolSettings)  # the operator's tool limits
    children: ChildRuns | None = None  # starts sub-agent runs; None: sub-agents unavailable
    clock: Callable[[], float] = time.time  # for deadlines
    # The run's safety guards and policy; None: its policy checks nothing.
    safety: Screen | None = None
    memory: MemoryAccess | None = None  # the agent's memory, scoped; None: it has none
    # Searches the tenant's collections (homeo.memory.knowledge.Knowledge);
    # None: retrieval is unavailable.
    knowledge: Any = None


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
    async def run(self, state: RunState, context: RunContext) -> Outcome: ...


class FanOut(ABC):
    """A node whose next few steps do not depend on each other's results (the
    tool calls of one model turn), so the runner may run them at once: it
    begins one step per piece (each described by `piece(state, i)`), runs
    every `work(state, i, ...)` together, then completes them in order, each
    with `settle(state it starts from, what its work returned)`. Each piece
    is still its own step, so a crash after some completed repeats none of
    them; the runner asks only when `is_idempotent` holds for every piece, so
    the others may run again."""

    @abstractmethod
    def fan_out(self, state: RunState) -> int:
        """How many steps, from this one on, may run at once (1: just this one)."""

    @abstractmethod
    def piece(self, state: RunState, index: int) -> RunState:
        """The state that names and describes the `index`-th of those steps."""

    @abstractmethod
    async def work(self, state: RunState, index: int, context: RunContext) -> Any:
        """The `index`-th step's work, with no change to the state."""

    @abstractmethod
    def settle(self, state: RunState, done: Any) -> Outcome:
        """The step's outcome from the state the step before it left."""


class BranchNode(Node):
    """Chooses the next node from the state: `route(state) -> node name or END`."""

    kind = "branch"

    def __init__(self, name: str, route: Callable[[RunState], str]) -> None:
        super().__init__(name)
        self.route = route

    async def run(self, state: RunState, context: RunContext) -> Outcome:
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
