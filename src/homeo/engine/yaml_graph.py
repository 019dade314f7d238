"""Agents written as graphs in YAML: nodes, and the edges between them.

    graph:
      start: draft
      nodes:
        draft:   {kind: model, prompt: "Write a release note for {input}", next: review,
                  save: note, max_visits: 3}
        review:  {kind: branch, ask: "Is the note short?", cases: {"yes": approve, "no": draft}}
        approve: {kind: approval, message: "Publish {note}?", next: publish, rejected: done}
        publish: {kind: tool, tool: publish_note, arguments: {text: "{note}"}, next: done}
        done:    {kind: end, output: "{note}"}

Kinds:

- `model`: one model answer (with `tools:`, a subset of the agent's, it may
  call them first, each call its own step); `prompt` is added as a message.
- `tool`: calls one of the agent's tools with `arguments`.
- `agent`: hands `task` to one of the agent's `agents:` as a child run and
  waits for its result (engine/subagents.py).
- `branch`: picks the next node from `cases` by a state field (`on: output`
  or `on: data.NAME`, else `default`) or by the model's verdict on a question
  (`ask:`; structured output choosing one of the cases).
- `approval`: waits for a person (POST /v1/runs/{id}/approve or /reject);
  goes to `next`, or on rejection to `rejected` (without it the run fails).
- `end`: the run's output (`output`, by default the last result).

Quote case names YAML reads as booleans ("yes", "no", "true"). Texts are
templates over `{input}` (the run's input), `{output}` (the last
model, tool or agent result) and the names results were saved under (`save:`).
Each node's steps are counted in `RunState.data["visits"]`; `max_visits`
fails the run when a node would run once more than that.

A graph is refused when its file is loaded, naming the file and the node, if
an edge names an unknown node, no end can be reached (from the start, or from
some node), or a loop has no node with `max_visits`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from homeo.engine.errors import RunFailed
from homeo.engine.graph import END, Graph, Node, Outcome, RunContext, RunState, Wait
from homeo.engine.react import ModelNode, ToolNode, ask_model, task_of
from homeo.llm.base import Message, Model, ToolCall
from homeo.tools.permissions import ToolGate
from homeo.tools.registry import Tool

NODE_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_visits: int | None = Field(None, ge=1, le=1000)


class ModelStep(_Step):
    kind: Literal["model"]
    prompt: str = ""
    tools: list[str] = Field(default_factory=list)
    next: str
    save: str | None = None


class ToolStep(_Step):
    kind: Literal["tool"]
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    next: str
    save: str | None = None


class AgentStep(_Step):
    kind: Literal["agent"]
    agent: str
    task: str = "{input}"
    next: str
    save: str | None = None


class BranchStep(_Step):
    kind: Literal["branch"]
    on: str | None = Field(None, pattern=r"^(output|data\.[A-Za-z0-9_]+)$")
    ask: str | None = None
    cases: dict[str, str] = Field(min_length=1)
    default: str | None = None
    save: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BranchStep:
        if (self.on is None) == (self.ask is None):
            raise ValueError("a branch needs either on: (a state field) or ask: (a question"
                             " for the model), not both")
        return self


class ApprovalStep(_Step):
    kind: Literal["approval"]
    message: str = "Go on?"
    next: str
    rejected: str | None = None
    timeout: float | None = Field(None, gt=0, le=365 * 86400)
    on_timeout: Literal["reject", "fail"] = "reject"


class EndStep(_Step):
    kind: Literal["end"]
    output: str = "{output}"


NodeSpec = Annotated[ModelStep | ToolStep | AgentStep | BranchStep | ApprovalStep | EndStep,
                     Field(discriminator="kind")]


def edges(node: NodeSpec) -> dict[str, str]:
    """The node's edges: field name -> target node."""
    if isinstance(node, BranchStep):
        found = {f"cases.{case}": target for case, target in node.cases.items()}
        if node.default is not None:
            found["default"] = node.default
        return found
    if isinstance(node, EndStep):
        return {}
    found = {"next": node.next}
    if isinstance(node, ApprovalStep) and node.rejected is not None:
        found["rejected"] = node.rejected
    return found


class GraphSpec(BaseModel):
    """The agent's `graph:` in its YAML."""

    model_config = ConfigDict(extra="forbid")
    start: str
    nodes: dict[Annotated[str, Field(pattern=NODE_NAME)], NodeSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _well_formed(self) -> GraphSpec:
        problems = graph_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def graph_problems(spec: GraphSpec) -> list[str]:
    """Unknown nodes, ends that cannot be reached, loops without a limit."""
    nodes = spec.nodes
    if spec.start not in nodes:
        return [f"start: no node named {spec.start!r} (nodes: {', '.join(nodes)})"]
    problems = [f"node {name!r}: {field}: no node named {target!r} (nodes: {', '.join(nodes)})"
                for name, node in nodes.items() for field, target in edges(node).items()
                if target not in nodes]
    if problems:
        return problems
    reachable = _reach(spec.start, lambda name: edges(nodes[name]).values())
    ends = {name for name in reachable if isinstance(nodes[name], EndStep)}
    if not ends:
        return [f"start {spec.start!r}: no node of kind end can be reached from it"]
    back: dict[str, list[str]] = {name: [] for name in nodes}
    for name, node in nodes.items():
        for target in edges(node).values():
            back[target].append(name)
    finishing = set().union(*(_reach(end, lambda name: back[name]) for end in ends))
    problems = [f"node {name!r}: no end can be reached from it" for name in nodes
                if name in reachable and name not in finishing]
    loop = _unlimited_loop(nodes, reachable)
    if loop:
        problems.append(f"node {loop[0]!r}: it is in a loop ({' -> '.join(loop)}) where no"
                        " node has max_visits; set max_visits on one of them")
    return problems


def _reach(start: str, neighbours: Any) -> set[str]:
    seen, pending = {start}, [start]
    while pending:
        for target in neighbours(pending.pop()):
            if target not in seen:
                seen.add(target)
                pending.append(target)
    return seen


def _unlimited_loop(nodes: dict[str, Any], reachable: set[str]) -> list[str]:
    """A loop through nodes without max_visits, as a path, or []: every loop must
    pass a limited node, so the unlimited nodes alone must have no cycle."""
    free = {name for name in reachable if nodes[name].max_visits is None}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> list[str]:
        state[name] = 1
        for target in edges(nodes[name]).values():
            if target not in free:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                found = visit(target, [*path, target])
                if found:
                    return found
        state[name] = 2
        return []

    for name in sorted(free):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return []


def reference_problems(spec: GraphSpec, tools: list[str], agents: list[str]) -> list[str]:
    """Nodes naming tools or agents the agent does not have."""
    problems = []
    for name, node in spec.nodes.items():
        wanted = {"tool": [node.tool]} if isinstance(node, ToolStep) else (
            {"tools": node.tools} if isinstance(node, ModelStep) else {})
        for field, names in wanted.items():
            for tool in names:
                if tool not in tools:
                    problems.append(f"graph node {name!r}: {field}: {tool!r} is not among its"
                                    f" tools ({', '.join(tools) or 'none'})")
        if isinstance(node, AgentStep) and node.agent not in agents:
            problems.append(f"graph node {name!r}: agent: {node.agent!r} is not among its"
                            f" agents ({', '.join(agents) or 'none'}); list it under agents")
    return problems


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, state: RunState) -> str:
    """`template` filled from the run's input, last output and saved results."""
    values = _Blank({key: value for key, value in state.data.items() if isinstance(value, str)})
    values.update(input=task_of(state), output=state.output or "")
    try:
        return template.format_map(values)
    except (ValueError, IndexError, AttributeError, KeyError) as error:
        raise RunFailed(f"template {template!r} cannot be filled: {error}") from None


def _visits(state: RunState, name: str) -> int:
    return int(state.data.get("visits", {}).get(name, 0))


def _saved(state: RunState, save: str | None, value: str) -> RunState:
    data = state.data if save is None else {**state.data, save: value}
    return state.model_copy(update={"data": data, "output": value})


class Visits(Node):
    """A YAML node's steps, counted; `max_visits` ends a loop that would run on."""

    def __init__(self, inner: Node, max_visits: int | None) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.kind = inner.kind
        self.max_visits = max_visits

    def step_name(self, state: RunState) -> str:
        return self.inner.step_name(state)

    def describe(self, state: RunState) -> Any:
        return self.inner.describe(state)

    def is_idempotent(self, state: RunState) -> bool:
        return self.inner.is_idempotent(state)

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        visits = _visits(state, self.name)
        if self.max_visits is not None and visits >= self.max_visits:
            raise RunFailed(f"graph node {self.name!r} ran {visits} times (its max_visits);"
                            " the loop it is in did not end: raise max_visits or change the"
                            " branch that leads back to it")
        outcome = await self.inner.run(state, context)
        if outcome.wait is not None:
            return outcome
        counted = {**outcome.state.data.get("visits", {}), self.name: visits + 1}
        new = outcome.state.model_copy(update={"data": {**outcome.state.data,
                                                        "visits": counted}})
        return outcome.model_copy(update={"state": new})


class PromptedModel(ModelNode):
    """A model node: its prompt (when it starts, not after its own tool calls),
    then the tool-calling loop; its answer goes to `next` (saved if asked)."""

    def __init__(self, name: str, step: ModelStep, model: Model, tools: dict[str, Tool],
                 **options: Any) -> None:
        super().__init__(model, tools, name=name, tools_node=f"{name}.tools", done=step.next,
                         **options)
        self.step = step

    def _started(self, state: RunState) -> RunState:
        # Back from its own tool calls (data["calling"] names it), it goes on
        # without its prompt; entered from another node, it starts with it.
        if not self.step.prompt or state.data.get("calling") == self.name:
            return state
        prompt = Message(role="user", content=render(self.step.prompt, state))
        return state.model_copy(update={"messages": [*state.messages, prompt]})

    def describe(self, state: RunState) -> Any:
        return super().describe(self._started(state))

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        outcome = await super().run(self._started(state), context)
        data = {key: value for key, value in outcome.state.data.items() if key != "calling"}
        if outcome.next == self.tools_node:
            data["calling"] = self.name
        new = outcome.state.model_copy(update={"data": data})
        if outcome.next == self.step.next:
            new = _saved(new, self.step.save, new.output or "")
        return outcome.model_copy(update={"state": new})


class CallNode(ToolNode):
    """A tool (or agent) node: one call with arguments from the YAML, through the
    ToolNode's approval, waiting and error handling."""

    def __init__(self, name: str, tool: Tool, arguments: dict[str, Any], *, next: str,
                 save: str | None, **options: Any) -> None:
        super().__init__({tool.name: tool}, name=name, then=next, done=next,
                         reuse_results=False, **options)
        self.tool = tool
        self.arguments = arguments
        self.save = save

    def _prepared(self, state: RunState) -> RunState:
        call_id = f"{self.name}-{_visits(state, self.name) + 1}"
        pending = state.pending_tool_calls
        if pending and pending[0].id == call_id:
            return state  # the same step again, after a wait
        arguments = {key: render(value, state) if isinstance(value, str) else value
                     for key, value in self.arguments.items()}
        call = ToolCall(id=call_id, name=self.tool.name, arguments=arguments)
        return state.model_copy(update={
            "messages": [*state.messages, Message(role="assistant", tool_calls=[call])],
            "pending_tool_calls": [call]})

    def step_name(self, state: RunState) -> str:
        return self.tool.name

    def describe(self, state: RunState) -> Any:
        return super().describe(self._prepared(state))

    def is_idempotent(self, state: RunState) -> bool:
        return super().is_idempotent(self._prepared(state))

    def fan_out(self, state: RunState) -> int:
        return 1

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        outcome = await super().run(self._prepared(state), context)
        if outcome.wait is not None:
            return outcome
        result = outcome.state.messages[-1].content
        return outcome.model_copy(update={"state": _saved(outcome.state, self.save, result)})


class BranchOn(Node):
    kind = "branch"

    def __init__(self, name: str, step: BranchStep, model: Model,
                 temperature: float | None) -> None:
        super().__init__(name)
        self.step = step
        self.model = model
        self.temperature = temperature

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        step = self.step
        output: dict[str, Any] = {}
        usage, changes = None, {}
        if step.ask is not None:
            schema = {"type": "object", "properties": {"answer": {"enum": list(step.cases)}},
                      "required": ["answer"]}
            question = Message(role="user", content=render(step.ask, state)
                               + f"\nReply with JSON: answer is one of {', '.join(step.cases)}.")
            response, reached = await ask_model(self.model, [*state.messages, question], state,
                                                context, max_tokens=64,
                                                temperature=self.temperature, json_schema=schema)
            value = str(json.loads(response.message.content)["answer"])
            usage = response.usage
            if reached:
                changes["warned_budgets"] = [*state.warned_budgets, *reached]
        else:
            assert step.on is not None
            found = state.output if step.on == "output" else state.data.get(step.on[5:])
            value = found if isinstance(found, str) else json.dumps(found)
        target = step.cases.get(value, step.default)
        if target is None:
            raise RunFailed(f"graph node {self.name!r}: {value!r} is none of its cases"
                            f" ({', '.join(step.cases)}) and it has no default")
        if step.save is not None:
            changes["data"] = {**state.data, step.save: value}
        output.update(value=value, next=target)
        return Outcome(output=output, state=state.model_copy(update=changes), next=target,
                       model=self.model.name if usage else "", **({"usage": usage} if usage
                                                                  else {}))


class ApprovalNode(Node):
    kind = "approval"

    def __init__(self, name: str, step: ApprovalStep) -> None:
        super().__init__(name)
        self.step = step

    def _wait_id(self, state: RunState) -> str:
        return f"approval:{self.name}:{_visits(state, self.name) + 1}"

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        step = self.step
        decision = state.decisions.get(self._wait_id(state))
        if decision is None:
            wait = Wait(id=self._wait_id(state), kind="approval",
                        detail={"node": self.name, "question": render(step.message, state)},
                        deadline=None if step.timeout is None else context.clock() + step.timeout,
                        on_timeout=step.on_timeout)
            return Outcome(output={"waiting": wait.model_dump(exclude_none=True)}, state=state,
                           next=self.name, wait=wait)
        comment = decision.get("comment") or "no comment"
        approved = bool(decision.get("approved"))
        if not approved and (step.rejected is None or (
                decision.get("expired") and step.on_timeout == "fail")):
            why = "nobody approved it in time" if decision.get("expired") else (
                "a person rejected it")
            raise RunFailed(f"graph node {self.name!r} was not approved: {why} ({comment})")
        target = step.next if approved else step.rejected
        assert target is not None
        return Outcome(output={"approved": approved, "comment": comment, "next": target},
                       state=state, next=target)


class EndNode(Node):
    kind = "end"

    def __init__(self, name: str, step: EndStep) -> None:
        super().__init__(name)
        self.step = step

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        output = render(self.step.output, state)
        return Outcome(output={"output": output}, next=END,
                       state=state.model_copy(update={"output": output}))


def yaml_graph(
    spec: GraphSpec, model: Model, tools: list[Tool], *, max_steps: int,
    max_tool_errors: int = 3, max_tokens: int | None = None, temperature: float | None = None,
    gate: ToolGate | None = None, **options: Any,
) -> Graph:
    """The graph `spec` describes, over the agent's `tools` (its agents' tools
    included). `options` go to the model and tool nodes (budget, approval)."""
    by_name = {tool.name: tool for tool in tools}
    budget, approval = options.get("budget"), options.get("approval")
    nodes: dict[str, Node] = {}
    for name, step in spec.nodes.items():
        node: Node
        if isinstance(step, ModelStep):
            offered = {tool: by_name[tool] for tool in step.tools}
            node = PromptedModel(name, step, model, offered, max_steps=max_steps,
                                 max_tokens=max_tokens, temperature=temperature, budget=budget)
            nodes[f"{name}.tools"] = ToolNode(offered, name=f"{name}.tools", then=name,
                                              done=step.next, gate=gate, approval=approval,
                                              max_tool_errors=max_tool_errors)
        elif isinstance(step, ToolStep | AgentStep):
            tool = by_name[step.tool if isinstance(step, ToolStep) else step.agent]
            arguments = step.arguments if isinstance(step, ToolStep) else {"task": step.task}
            node = CallNode(name, tool, arguments, next=step.next, save=step.save, gate=gate,
                            approval=approval, max_tool_errors=max_tool_errors)
        elif isinstance(step, BranchStep):
            node = BranchOn(name, step, model, temperature)
        elif isinstance(step, ApprovalStep):
            node = ApprovalNode(name, step)
        else:
            node = EndNode(name, step)
        nodes[name] = Visits(node, step.max_visits)
    return Graph(nodes=nodes, start=spec.start)
