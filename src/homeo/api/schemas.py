"""What the API accepts and returns. Times are ISO 8601 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from homeo.store.models import Run, RunStatus, Step

# The largest number a database row holds (a signed 64-bit BIGINT): ids, seqs and
# cursors above it are refused with a 422 instead of failing in the driver.
MAX_ROW_NUMBER = 2**63 - 1


def _iso(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=64, description="Name of a defined agent.")
    input: str = Field(min_length=1, description="The task for the agent.")
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200,
        description="Repeat a request with the same key to get the same run back.",
    )
    user: str | None = Field(
        None, min_length=1, max_length=256,
        description="The person the run works for: an agent with `memory: {scope: user}`"
                    " remembers and recalls this person's memories only. Default: a JWT"
                    " caller's subject; an API key must name it for such an agent.",
    )


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_step: int = Field(ge=0, le=MAX_ROW_NUMBER,
                           description="The step whose resulting state the fork starts from.")
    state: dict[str, Any] | None = Field(
        None,
        description="Edits to that state: each field given replaces the state's (messages,"
                    " output...); the keys of `data` are merged into the state's data.",
    )
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200,
        description="Repeat a request with the same key to get the same run back.",
    )


class RunAccepted(BaseModel):
    id: str
    status: RunStatus


class StepView(BaseModel):
    seq: int
    kind: str
    name: str
    status: str
    input: Any
    output: Any
    error: str | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float

    @classmethod
    def of(cls, step: Step) -> StepView:
        duration = None
        if step.finished_at is not None:
            duration = round((step.finished_at - step.started_at) * 1000, 3)
        return cls(
            **step.model_dump(
                include={"seq", "kind", "name", "status", "input", "output", "error", "attempts",
                         "input_tokens", "output_tokens", "cost_usd"}
            ),
            started_at=_iso(step.started_at),
            finished_at=_iso(step.finished_at),
            duration_ms=duration,
        )


class RunView(BaseModel):
    id: str
    agent: str
    status: RunStatus
    input: str
    output: str | None
    error: str | None
    idempotency_key: str | None
    request_id: str | None
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    usage: dict[str, int | float]
    parent_run_id: str | None = None
    waiting_for: dict[str, Any] | None = Field(
        None, description="While `waiting`: what for (approval, input or children), with its"
        " details and deadline.")
    waited_seconds: float = 0.0
    forked_from: dict[str, Any] | None = Field(
        None, description='For a fork: {"run_id", "step"}, where it started from.')
    agent_version: str | None = Field(
        None, description="The agent version the run executes (GET /v1/agents/{name}/versions);"
        " None until it first starts, unless it was submitted for one.")
    user: str | None = Field(None, description="The person the run works for (RunRequest.user).")

    @classmethod
    def of(cls, run: Run) -> RunView:
        return cls(
            **run.model_dump(
                include={"id", "agent", "status", "input", "output", "error", "idempotency_key",
                         "request_id", "parent_run_id", "waiting_for", "waited_seconds",
                         "agent_version"}
            ),
            user=run.user_id,
            created_at=_iso(run.created_at),
            updated_at=_iso(run.updated_at),
            started_at=_iso(run.started_at),
            finished_at=_iso(run.finished_at),
            usage={"input_tokens": run.input_tokens, "output_tokens": run.output_tokens,
                   "cost_usd": run.cost_usd},
            forked_from=None if run.forked_from_run is None else {
                "run_id": run.forked_from_run, "step": run.forked_from_step},
        )


class ChildView(BaseModel):
    id: str
    agent: str
    status: RunStatus


class StepStateView(BaseModel):
    run_id: str
    step: StepView
    next: str | None = Field(
        None, description="The node the run went on to after this step (__end__: none).")
    state: dict[str, Any] | None = Field(
        None, description="The run's state after this step; null if the step did not succeed.")


class RunDetail(RunView):
    steps: list[StepView]
    children: list[ChildView] = Field(default_factory=list,
                                      description="Runs this run started (sub-agents).")


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=4000)
    arguments: dict[str, Any] | None = Field(
        None, description="Approve: run the tool with these arguments instead.")


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=4000, description="Told to the model.")


class PersonInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(min_length=1, max_length=100_000)


class RunPage(BaseModel):
    runs: list[RunView]
    next_before: str | None = Field(
        None, description="Pass as `before` to get the next page; null on the last page."
    )


class AgentView(BaseModel):
    name: str
    description: str
    model: str
    tools: list[str]
    max_steps: int
