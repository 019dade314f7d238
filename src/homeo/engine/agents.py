"""Agent definitions: YAML files validated into `AgentSpec`, built into graphs.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from homeo.engine.answer import AnswerSource, FinalAnswer
from homeo.engine.budgets import RunBudget
from homeo.engine.graph import Graph
from homeo.engine.react import tool_calling_graph
from homeo.llm.base import Model
from homeo.tools.permissions import ToolGate
from homeo.tools.registry import Tool, ToolError, load_tool

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class AgentError(Exception):
    """An agent definition is invalid or cannot be built."""


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: float = Field(120.0, gt=0, le=86400)
    run: float = Field(1800.0, gt=0, le=7 * 86400)


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
    answer: AnswerSource = "model"
    answer_template: str = Field("{result}", max_length=2000)


def load_agent_file(path: Path) -> AgentSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise AgentError(f"{path}: cannot read agent YAML: {error}") from None
    if not isinstance(data, dict):
        raise AgentError(f"{path}: an agent file must be a mapping with at least 'name'")
    try:
        return AgentSpec.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise AgentError(f"{path}: {problems}") from None


def load_agents(directory: Path) -> dict[str, AgentSpec]:
    """Every `*.yaml`/`*.yml` in `directory`, by name. Duplicate names are an error."""
    specs: dict[str, AgentSpec] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        spec = load_agent_file(path)
        if spec.name in specs:
            raise AgentError(f"{path}: agent name {spec.name!r} is defined twice")
        specs[spec.name] = spec
    return specs


@dataclass
class Agent:
    """An agent ready to run: its spec, model, tools and graph."""

    spec: AgentSpec
    model: Model
    tools: list[Tool]
    graph: Graph


def build_agent(spec: AgentSpec, model: Model, gate: ToolGate | None = None) -> Agent:
    """`gate` checks each tool call; by default it applies HOMEO_TOOL_POLICY."""
    if gate is None:
        from homeo.config import SettingsError, load_settings

        try:
            gate = ToolGate(load_settings().tool_policy)
        except SettingsError as error:
            raise AgentError(f"agent {spec.name!r}: {error}") from None
    try:
        tools = [load_tool(reference) for reference in spec.tools]
    except ToolError as error:
        raise AgentError(f"agent {spec.name!r}: {error}") from None
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise AgentError(f"agent {spec.name!r} lists a tool name twice: {names}")
    answer = FinalAnswer(spec.answer, spec.answer_template)
    try:
        answer.check(tool.spec for tool in tools)
    except ValueError as error:
        raise AgentError(f"agent {spec.name!r}: {error}") from None
    graph = tool_calling_graph(
        model,
        tools,
        max_steps=spec.max_steps,
        max_tool_errors=spec.max_tool_errors,
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        budget=spec.budget,
        gate=gate,
        answer=answer,
    )
    return Agent(spec=spec, model=model, tools=tools, graph=graph)
