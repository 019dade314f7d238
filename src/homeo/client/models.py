"""What the API returns, as the SDK hands it back. Every class mirrors one
schema of the app's /openapi.json (tests/client/test_schema.py compares their
fields, so the two cannot drift apart). Unknown fields a newer server sends
are ignored, so an older SDK keeps working."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
KeyRole = Literal["viewer", "member", "operator", "admin"]
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Step(Model):
    """One step of a run (StepView)."""

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


class Run(Model):
    """A run (RunView): its status, output, usage and what it waits for."""

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
    waiting_for: dict[str, Any] | None = None
    waited_seconds: float = 0.0
    forked_from: dict[str, Any] | None = None
    agent_version: str | None = None  # the version of the agent it ran
    user: str | None = None  # the person it works for

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class Child(Model):
    """A run another run started (ChildView)."""

    id: str
    agent: str
    status: RunStatus


class RunDetail(Run):
    """A run with its steps and children (RunDetail)."""

    steps: list[Step]
    children: list[Child] = []


class RunAccepted(Model):
    """What submitting a run answers (RunAccepted)."""

    id: str
    status: RunStatus


class RunPage(Model):
    runs: list[Run]
    next_before: str | None = None


class StepState(Model):
    """One step and the run's state after it (StepStateView)."""

    run_id: str
    step: Step
    next: str | None = None
    state: dict[str, Any] | None = None


class Agent(Model):
    """An agent the tenant can run (AgentView)."""

    name: str
    description: str
    model: str
    tools: list[str]
    max_steps: int


class Estimate(Model):
    """A figure over `n` observations and its 95% confidence interval."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    n: int = 0


class AgentVersion(Model):
    """One version of an agent and its KPIs (VersionKPIs). Times are Unix seconds."""

    version: str
    parent: str | None = None
    author: str
    created_at: float
    current: bool = False
    runs: int = 0
    succeeded: int = 0
    success_rate: Estimate = Field(default_factory=Estimate)
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency: Estimate = Field(default_factory=Estimate)
    tokens_per_run: Estimate = Field(default_factory=Estimate)
    cost_per_run: Estimate = Field(default_factory=Estimate)
    tool_errors: int = 0
    tool_errors_per_run: Estimate = Field(default_factory=Estimate)
    eval_cases: int = 0
    eval_score: Estimate = Field(default_factory=Estimate)


class AgentVersions(Model):
    """An agent's versions, oldest first (VersionsView)."""

    agent: str
    versions: list[AgentVersion]


class Key(Model):
    """An API key as listed: never its secret (KeyView). Times are Unix seconds."""

    id: str
    tenant_id: str
    name: str
    role: KeyRole
    created_at: float
    revoked_at: float | None
    active: bool


class CreatedKey(Key):
    """A new key, with the key itself: shown only once (CreatedKey)."""

    key: str


class Collection(Model):
    """A knowledge collection (CollectionView)."""

    name: str
    documents: int
    chunks: int
    model: str | None
    dimensions: int | None
    created_at: float


class Document(Model):
    """A document in a collection (DocumentView); `text` only when read alone."""

    id: str
    collection: str
    title: str | None
    source: str | None
    format: str
    chars: int
    chunks: int
    content_hash: str
    created_at: float
    updated_at: float
    text: str | None = None


class Ingestion(Model):
    """A document accepted for a worker to index (IngestionView): the answer
    to an add or upload of a text longer than the server indexes at once."""

    id: str
    collection: str
    status: Literal["queued", "indexing", "done", "failed"]
    chunks_done: int
    chunks_total: int | None
    document_id: str | None
    error: str | None
    title: str | None
    source: str | None
    content_hash: str
    created_at: float
    updated_at: float
    status_url: str


class DocumentPage(Model):
    documents: list[Document]
    next_before: str | None


class Hit(Model):
    """A chunk a search found (HitView)."""

    chunk_id: int
    document_id: str
    title: str | None
    source: str | None
    position: int
    start: int
    end: int
    text: str
    score: float
    text_rank: int | None
    vector_rank: int | None


class SearchResults(Model):
    collection: str
    mode: str
    results: list[Hit]


# The events GET /v1/runs/{id}/events streams, one class per `event:` name.


class StepEvent(Model):
    """A step started or changed."""

    step: Step


class RunEvent(Model):
    """The run's status changed."""

    run: Run


class WaitingEvent(Model):
    """The run started waiting: for an approval, an answer, or its children."""

    id: str
    waiting_for: dict[str, Any] | None


class EndEvent(Model):
    """The run is final; the stream ends after this event."""

    id: str
    status: RunStatus


class OtherEvent(Model):
    """An event this SDK does not know (a newer server's), as sent."""

    event: str
    data: Any


Event = StepEvent | RunEvent | WaitingEvent | EndEvent | OtherEvent


def event_of(name: str, data: Any) -> Event:
    if name == "step":
        return StepEvent(step=Step.model_validate(data))
    if name == "run":
        return RunEvent(run=Run.model_validate(data))
    if name == "waiting":
        return WaitingEvent.model_validate(data)
    if name == "end":
        return EndEvent.model_validate(data)
    return OtherEvent(event=name, data=data)
