"""Agent definitions: YAML files validated into `AgentSpec`, built into graphs.

A folder is checked whole when it is loaded (`load_agents`): every file parses,
every tool imports, every model name resolves and every MCP tool names a
configured server, so a bad file stops `homeo serve` at start instead of
failing its first run. Each problem is one line naming the file and field.

    name: calculator
    description: Answers arithmetic questions with a calculator tool.
    model: local                      # local | local:/path/model.gguf | openai:MODEL | scripted:mod:fn
    system_prompt: You are precise.
    tools: [homeo.examples.tools:calculate]
    max_steps: 6                      # model turns before the run fails
    answer: tool_result               # model (default) | quote_result | tool_result
    answer_template: "{expression} = {result}"   # see homeo.engine.answer
    timeouts: {step: 120, run: 900}   # seconds
    budget: {run_tokens: 20000, soft_run_tokens: 10000}   # tokens, input + output
    approval: {tools: [deploy], timeout: 86400, on_timeout: reject}   # a person approves each call
    safety: {tool_output: {injection: approve}}   # guards over the tenant's (README, Safety)
    agents: [researcher]              # other agents it may hand tasks to (each a tool)
    reflect: {max_rounds: 2, criteria: "..."}   # a critique step judges each answer
    pattern: tool_calling             # | plan_execute (plan: {...}) | supervisor (supervisor:)
    graph: {start: ..., nodes: {...}} # instead of a pattern: nodes and edges (yaml_graph.py)
    memory: {scope: agent, ttl: 30d}  # what remember/recall reach: tenant | agent | user | run
    knowledge: {collections: [docs], k: 4}   # chunks put in context first (retrieve.py)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from homeo.engine.answer import AnswerSource, FinalAnswer
from homeo.engine.budgets import RunBudget
from homeo.engine.graph import Graph
from homeo.engine.react import ApprovalPolicy, tool_calling_graph
from homeo.engine.plan import PlanPolicy, plan_execute_graph
from homeo.engine.reflect import ReflectPolicy
from homeo.engine.retrieve import KnowledgePolicy, with_retrieval
from homeo.engine.subagents import agent_tool
from homeo.engine.supervisor import SupervisorPolicy, supervisor_graph
from homeo.engine.yaml_graph import GraphSpec, reference_problems, yaml_graph
from homeo.llm.base import Model, ModelError
from homeo.safety.policy import SafetyPolicy
from homeo.tools.permissions import ToolGate
from homeo.tools.registry import Tool, ToolError, load_tool

if TYPE_CHECKING:  # the MCP client and the model catalog load only when used
    from homeo.config import McpServer
    from homeo.llm.resolve import ModelCatalog
    from homeo.mcp.clients import McpClients

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MCP_PREFIX = "mcp:"
MEMORY_TOOLS = "homeo.tools.memory_tools:"


class AgentError(Exception):
    """An agent definition is invalid or cannot be built."""


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: float = Field(120.0, gt=0, le=86400)
    run: float = Field(1800.0, gt=0, le=7 * 86400)


Pattern = Literal["tool_calling", "plan_execute", "supervisor"]


class MemoryPolicy(BaseModel):
    """Whose memory the agent's `remember` and `recall` tools reach: the whole
    tenant's, the agent's own (across its runs), the user's the run works for
    (across agents and runs; a run must name its user), or one run's; and how long a
    memory lives unless stored again (`ttl`, a duration such as 30d; none: until
    it decays)."""

    model_config = ConfigDict(extra="forbid")
    scope: Literal["tenant", "agent", "user", "run"] = "agent"
    ttl: str | None = None
    importance: float = Field(0.5, gt=0, le=1)  # of a memory the model gives none

    @field_validator("ttl")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        from homeo.sandbox.limits import parse_duration

        if value is not None and parse_duration(value) <= 0:
            raise ValueError(f"{value!r} must be a duration longer than 0, such as 30d or 12h")
        return value

    @property
    def ttl_seconds(self) -> float | None:
        from homeo.sandbox.limits import parse_duration

        return None if self.ttl is None else parse_duration(self.ttl)


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    model: str = "local"
    system_prompt: str = ""
    tools: list[str] = Field(default_factory=list)
    max_steps: int = Field(10, ge=1, le=100)
    max_tool_errors: int = Field(3, ge=0, le=100)
    max_tokens: int | None = Field(512, ge=1, le=32768)
    temperature: float | None = Field(None, ge=0, le=2)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    budget: RunBudget = Field(default_factory=RunBudget)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    agents: list[str] = Field(default_factory=list, max_length=32)
    reflect: ReflectPolicy | None = None
    pattern: Pattern = "tool_calling"
    plan: PlanPolicy = Field(default_factory=PlanPolicy)
    supervisor: SupervisorPolicy = Field(default_factory=SupervisorPolicy)
    graph: GraphSpec | None = None
    # Guards over the tenant's (homeo.safety.policy): rule by rule, for this agent.
    safety: SafetyPolicy | None = None
    memory: MemoryPolicy | None = None
    knowledge: KnowledgePolicy | None = None
    # Set by homeo to the YAML file the agent came from, so errors can name it.
    file: str = ""

    @property
    def origin(self) -> str:
        """How errors name this agent: its name and, when known, its file."""
        return f"agent {self.name!r}" + (f" ({self.file})" if self.file else "")
    answer: AnswerSource = "model"
    answer_template: str = Field("{result}", max_length=2000)


def load_agent_file(path: Path) -> AgentSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise AgentError(f"{path}: cannot read agent YAML: {error}") from None
    if not isinstance(data, dict):
        raise AgentError(f"{path}: an agent file must be a mapping with at least 'name'")
    if "file" in data:
        raise AgentError(f"{path}: file: homeo sets this field itself; remove it")
    try:
        return AgentSpec.model_validate({**data, "file": str(path)})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise AgentError(f"{path}: {problems}") from None


def pattern_problems(spec: AgentSpec) -> list[str]:
    """What does not fit the agent's pattern, one line each."""
    problems = []
    if spec.pattern == "supervisor" and (spec.tools or not spec.agents):
        problems.append("pattern: supervisor routes between agents: list them under agents"
                        " (and give tools to those agents, not to the supervisor)")
    if spec.reflect is not None and (spec.pattern != "tool_calling" or spec.graph is not None):
        shape = "a graph" if spec.graph is not None else spec.pattern
        problems.append(f"reflect: works with pattern: tool_calling only, not {shape}")
    if spec.memory is None and any(t.startswith(MEMORY_TOOLS) for t in spec.tools):
        problems.append("tools: remember and recall need a memory: say whose it is with"
                        " `memory: {scope: agent}` (tenant, agent, user or run)")
    if spec.graph is not None and spec.pattern != "tool_calling":
        problems.append(f"graph: an agent is either a graph or pattern: {spec.pattern};"
                        " remove one")
    return problems


def check_agent(
    spec: AgentSpec, models: ModelCatalog, mcp_servers: dict[str, McpServer]
) -> list[str]:
    """What stops this agent from running, one line each, without loading a
    model's weights or contacting an MCP server."""
    from homeo.mcp.tools import resolve_reference

    where = spec.file or f"agent {spec.name!r}"
    problems = [f"{where}: {problem}" for problem in pattern_problems(spec)]
    try:
        models.check(spec.model)
    except ModelError as error:
        problems.append(f"{where}: model: {error}")
    names = list(spec.agents)
    for index, reference in enumerate(spec.tools):
        try:
            if reference.startswith(MCP_PREFIX):
                names.append(resolve_reference(reference, mcp_servers)[2])
            else:
                names.append(load_tool(reference).name)
        except ToolError as error:
            problems.append(f"{where}: tools[{index}]: {error} (fix the reference, or install"
                            " the package that provides it)")
    unknown = sorted(set(spec.approval.tools) - set(names))
    resolved = len(names) == len(spec.tools) + len(spec.agents)
    if spec.graph is not None and resolved:
        problems += [f"{where}: {problem}" for problem in reference_problems(
            spec.graph, names[len(spec.agents):], spec.agents)]
    if unknown and resolved:
        problems.append(f"{where}: approval.tools: {unknown} are not among its tools"
                        f" ({', '.join(names) or 'none'})")
    return problems


@dataclass
class AgentFolder:
    """The agents of a folder, and what is wrong with its files."""

    specs: dict[str, AgentSpec] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def scan_agents(
    directory: Path, models: ModelCatalog, mcp_servers: dict[str, McpServer]
) -> AgentFolder:
    """Every `*.yaml`/`*.yml` in `directory`, checked (`check_agent`); a file
    with a problem is left out of `specs`. Duplicate names are a problem."""
    folder = AgentFolder()
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            spec = load_agent_file(path)
        except AgentError as error:
            folder.problems.append(str(error))
            continue
        if spec.name in folder.specs:
            folder.problems.append(f"{path}: name: agent {spec.name!r} is defined twice"
                                   f" (also in {folder.specs[spec.name].file}); rename one")
            continue
        problems = check_agent(spec, models, mcp_servers)
        folder.problems.extend(problems)
        if not problems:
            folder.specs[spec.name] = spec
    for problem in _delegation_problems(folder.specs):
        folder.problems.append(problem)
    return folder


def _delegation_problems(specs: dict[str, AgentSpec]) -> list[str]:
    """Agents that name unknown agents, or that could hand work round in a circle
    (each hand-off a new run: the circle would never end)."""
    problems = []
    for spec in specs.values():
        for name in spec.agents:
            if name not in specs:
                known = ", ".join(sorted(specs)) or "none"
                problems.append(f"{spec.file or spec.name}: agents: no agent named {name!r}"
                                f" in the folder (agents: {known})")
            elif name in {tool.rpartition(":")[2] for tool in spec.tools}:
                problems.append(f"{spec.file or spec.name}: agents: {name!r} is also the name"
                                " of one of its tools; rename one")
    for spec in specs.values():
        path = _circle(spec.name, specs)
        if path:
            problems.append(f"{spec.file or spec.name}: agents: the agents call each other in"
                            f" a circle ({' -> '.join(path)}); remove one hand-off")
    return problems


def _circle(start: str, specs: dict[str, AgentSpec]) -> list[str]:
    """A path of hand-offs from `start` back to `start`, if there is one."""
    pending = [(start, [start])]
    seen = set()
    while pending:
        name, path = pending.pop()
        for callee in specs[name].agents if name in specs else []:
            if callee == start:
                return [*path, callee]
            if callee not in seen:
                seen.add(callee)
                pending.append((callee, [*path, callee]))
    return []


def load_agents(
    directory: Path, models: ModelCatalog, mcp_servers: dict[str, McpServer]
) -> dict[str, AgentSpec]:
    """The agents of `directory` by name; AgentError (one line) if any file has a problem."""
    folder = scan_agents(directory, models, mcp_servers)
    if folder.problems:
        more = len(folder.problems) - 1
        hint = f" (and {more} more: run `homeo agents` to see them all)" if more else ""
        raise AgentError(folder.problems[0] + hint)
    return folder.specs


@dataclass
class Agent:
    """An agent ready to run: its spec, model, tools and graph."""

    spec: AgentSpec
    model: Model
    tools: list[Tool]
    graph: Graph


async def aload_tools(
    spec: AgentSpec, mcp_servers: dict[str, McpServer], mcp: Callable[[], McpClients]
) -> list[Tool]:
    """The agent's tools; an MCP server's listing is awaited, so the caller's
    loop keeps running while a server starts. `mcp` gives the MCP sessions,
    called (and the `mcp` client imported) only if the agent has MCP tools. McpUnavailable if a server
    cannot be reached, AgentError (naming the file) for any other problem."""
    from homeo.mcp.errors import McpUnavailable

    tools = []
    for reference in spec.tools:
        try:
            if reference.startswith(MCP_PREFIX):
                from homeo.mcp.tools import aload_mcp_tool  # the slow `mcp` import, only here

                tools.append(await aload_mcp_tool(reference, mcp_servers, mcp()))
            else:
                tools.append(load_tool(reference))
        except McpUnavailable as error:
            raise McpUnavailable(f"{spec.origin}: {error}") from None
        except ToolError as error:
            raise AgentError(f"{spec.origin}: {error}") from None
    return tools


def build_agent(
    spec: AgentSpec,
    model: Model,
    gate: ToolGate | None = None,
    tools: list[Tool] | None = None,
    *,
    mcp_servers: dict[str, McpServer] | None = None,
    agent_descriptions: dict[str, str] | None = None,
) -> Agent:
    """`gate` checks each tool call (the runtime passes one with HOMEO_TOOL_POLICY;
    by default every tool is allowed). `tools` are the spec's tools already
    loaded (`aload_tools`); without them they are loaded here, blocking while
    an MCP server of `mcp_servers` lists its tools. `agent_descriptions` describe
    the agents it hands tasks to, as their tools tell the model."""
    gate = gate or ToolGate()
    if tools is None:
        try:
            tools = [load_tool(reference, mcp_servers) for reference in spec.tools]
        except ToolError as error:
            raise AgentError(f"{spec.origin}: {error}") from None
    descriptions = agent_descriptions or {}
    tools = [*tools, *(agent_tool(name, descriptions.get(name, "")) for name in spec.agents)]
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise AgentError(f"agent {spec.name!r} lists a tool name twice: {names}")
    unknown = set(spec.approval.tools) - set(names)
    if unknown:
        raise AgentError(f"{spec.origin}: approval.tools names {sorted(unknown)}, which are not"
                         f" among its tools ({', '.join(names) or 'none'})")
    answer = FinalAnswer(spec.answer, spec.answer_template)
    try:
        answer.check(tool.spec for tool in tools)
    except ValueError as error:
        raise AgentError(f"agent {spec.name!r}: {error}") from None
    graph = _graph(spec, model, tools, gate, answer)
    if spec.knowledge is not None:
        try:
            graph = with_retrieval(graph, spec.knowledge)
        except ValueError as error:
            raise AgentError(f"{spec.origin}: knowledge: {error}") from None
    return Agent(spec=spec, model=model, tools=tools, graph=graph)


def _graph(spec: AgentSpec, model: Model, tools: list[Tool], gate: ToolGate,
           answer: FinalAnswer) -> Graph:
    """The graph of the agent's pattern."""
    problems = pattern_problems(spec)
    if problems:
        raise AgentError(f"{spec.origin}: {problems[0]}")
    if spec.graph is not None:
        names = [tool.name for tool in tools]
        wrong = reference_problems(spec.graph, names[: len(names) - len(spec.agents)],
                                   spec.agents)
        if wrong:
            raise AgentError(f"{spec.origin}: {wrong[0]}")
        return yaml_graph(spec.graph, model, tools, max_steps=spec.max_steps,
                          max_tool_errors=spec.max_tool_errors, max_tokens=spec.max_tokens,
                          temperature=spec.temperature, gate=gate, budget=spec.budget,
                          approval=spec.approval)
    if spec.pattern == "supervisor":
        return supervisor_graph(model, tools, policy=spec.supervisor,
                                temperature=spec.temperature, budget=spec.budget, gate=gate,
                                approval=spec.approval, max_tool_errors=spec.max_tool_errors)
    if spec.pattern == "plan_execute":
        return plan_execute_graph(
            model, tools, policy=spec.plan, max_steps=spec.max_steps,
            max_tool_errors=spec.max_tool_errors, max_tokens=spec.max_tokens,
            temperature=spec.temperature, budget=spec.budget, gate=gate, answer=answer,
            approval=spec.approval)
    return tool_calling_graph(
        model, tools, reflect=spec.reflect, max_steps=spec.max_steps,
        max_tool_errors=spec.max_tool_errors, max_tokens=spec.max_tokens,
        temperature=spec.temperature, budget=spec.budget, gate=gate, answer=answer,
        approval=spec.approval)
