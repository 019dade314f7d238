"""What a tool may know about the call it serves, passed in rather than fetched.

A tool asks for it by declaring a parameter of type `ToolContext` (any name);
the registry leaves that parameter out of the schema the model sees, and the
engine fills it for each call:

    @tool
    async def deploy(service: str, context: ToolContext) -> str:
        ...context.tenant_id, context.settings.http_allowlist...

`ToolSettings` holds the operator's settings the built-in tools use (sandbox
limits, the HTTP allowlist); the runtime builds it once from the settings and
hands it down, so no tool reads the environment.

A tool can stop to ask a person (`context.ask`): the run waits, without a
worker, until someone answers (`POST /v1/runs/{id}/input`), and then the tool
is called again from the start with the answer available. Ask before any side
effect: the part of the tool before `ask` runs twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from homeo.sandbox.limits import Limits, parse_duration, parse_size
from homeo.sandbox.tally import SandboxTally
from homeo.tools.allowlist import Allowlist, parse_allowlist

if TYPE_CHECKING:
    from homeo.config import Settings


@dataclass(frozen=True)
class ToolSettings:
    """The operator's limits for the built-in tools (HOMEO_SANDBOX_*, HOMEO_HTTP_*).
    The defaults are the settings' defaults: sandbox limits, no HTTP host allowed."""

    sandbox: Limits = field(default_factory=Limits)
    sandbox_allow_without: frozenset[str] = frozenset()
    # Bytes of file names and contents a sandboxed tool returns.
    files_budget: int = 2**20
    http_allowlist: Allowlist = field(default_factory=lambda: Allowlist(frozenset()))
    http_max_bytes: int = 2**20
    http_timeout_seconds: float = 10.0
    # How this process's sandboxed runs ended (a worker reports it in its heartbeat).
    sandbox_tally: SandboxTally = field(default_factory=SandboxTally, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ToolSettings:
        from homeo.sandbox.layers import parse_allow_without
        from homeo.sandbox.limits import limits_from_settings

        return cls(
            sandbox=limits_from_settings(settings),
            sandbox_allow_without=parse_allow_without(settings.sandbox_allow_without),
            files_budget=parse_size(settings.sandbox_output_bytes),
            http_allowlist=parse_allowlist(settings.http_allowlist),
            http_max_bytes=parse_size(settings.http_max_bytes),
            http_timeout_seconds=parse_duration(settings.http_timeout),
        )


class Suspend(Exception):  # noqa: N818 - a request to wait, not a failure
    """A tool cannot finish yet: the engine makes the run wait (engine/waits.py)
    and calls the tool again when what it waits for has arrived."""


class AskPerson(Suspend):
    """Raised by `ToolContext.ask` when no answer is there yet."""

    def __init__(self, question: str) -> None:
        super().__init__(question)
        self.question = question


class WaitForRuns(Suspend):
    """The tool started child runs that have not ended yet."""

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__(", ".join(run_ids))
        self.run_ids = run_ids


@dataclass(frozen=True)
class ChildRun:
    id: str
    agent: str
    status: str
    output: str | None = None
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


class MemoryAccess(Protocol):
    """The memory of the agent a run belongs to, scoped as its YAML says
    (`memory: {scope, ttl}`; homeo.memory.memories.ScopedMemory)."""

    async def remember(self, text: str, importance: float | None = None) -> dict[str, Any]:
        """Store `text` if it says something new; what was done and why."""

    async def recall(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        """The memories that best match `query`, best first."""


class ChildRuns(Protocol):
    """Starts runs of other agents on behalf of a run (sub-agents)."""

    async def start(self, agent: str, input: str, *, key: str) -> ChildRun:
        """Start a run of `agent` as a child of the current run, or return the one
        started before with the same `key` (so a repeated step starts nothing)."""


@dataclass(frozen=True)
class ToolContext:
    tenant_id: str
    run_id: str
    agent: str = ""
    call_id: str = ""
    settings: ToolSettings = field(default_factory=ToolSettings)
    # A person's answer to this call's question, once the run resumed with one.
    answer: str | None = None
    # Names this call uniquely and stably within the run, across its attempts.
    call_key: str = ""
    children: ChildRuns | None = None
    # The agent's memory; None when its YAML has no `memory:`.
    memory: MemoryAccess | None = None

    def ask(self, question: str) -> str:
        """The person's answer to `question`; the first time, the run stops here
        and waits for it (see the module docstring)."""
        if self.answer is not None:
            return self.answer
        raise AskPerson(question)
