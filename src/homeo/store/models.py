"""The records homeo keeps: runs, their steps (checkpoints), agent definitions
and their versions, evaluation results and API keys."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

RunStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
StepStatus = Literal["running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
RUN_STATUSES: tuple[str, ...] = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")


class NewRun(BaseModel):
    tenant_id: str
    agent: str
    input: str
    idempotency_key: str | None = None
    request_id: str | None = None
    # The run whose sub-agent call started this one, and the tokens (input +
    # output) this one may use: its share of what the parent had left.
    parent_run_id: str | None = None
    token_budget: int | None = None
    # A fork (engine/history.py) starts from this checkpoint, taken after step
    # `forked_from_step` of run `forked_from_run`, instead of from its input.
    checkpoint: dict[str, Any] | None = None
    forked_from_run: str | None = None
    forked_from_step: int | None = None
    # Run this version of the agent (an evaluation or a canary) rather than
    # the version current when the run is first claimed.
    agent_version: str | None = None
    # The person the run works for: an agent whose memory scope is `user`
    # remembers and recalls that person's memories only.
    user_id: str | None = None


class Run(BaseModel):
    id: str
    tenant_id: str
    agent: str
    input: str
    status: RunStatus
    output: str | None = None
    error: str | None = None
    idempotency_key: str | None = None
    request_id: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    # The engine's state after the last completed step; resuming starts here.
    checkpoint: dict[str, Any] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    # Raised by every claim of the run (`Store.claim_run`): the fencing token its
    # writes carry, so a worker whose lease lapsed cannot write after a newer one.
    lease_epoch: int = 0
    # Steps completed, and claims in a row before the latest that completed none:
    # a run is given up for making no progress, not for being interrupted.
    steps_done: int = 0
    stalls: int = 0
    # While `waiting`: what for (engine.waits.Wait as a dict), and since when.
    # `waited_seconds` adds up the run's waits (they do not count in timeouts.run);
    # `wakes` counts them, and names each wake's job (engine.submit.run_job_key).
    waiting_for: dict[str, Any] | None = None
    waiting_since: float | None = None
    waited_seconds: float = 0.0
    wakes: int = 0
    parent_run_id: str | None = None
    token_budget: int | None = None  # a child's share of its parent's budget
    # The run and step this run was forked from (None for a run started from its input).
    forked_from_run: str | None = None
    forked_from_step: int | None = None
    # When retention removed its per-step checkpoints (the final state is kept).
    checkpoints_pruned_at: float | None = None
    # The agent version the run executes: given at submission, or the version
    # current when it was first claimed; resumes keep it (Store.claim_run).
    agent_version: str | None = None
    user_id: str | None = None  # the person the run works for (NewRun.user_id)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class Step(BaseModel):
    """One executed step of a run. `seq` counts from 0 in the order steps began."""

    run_id: str
    tenant_id: str
    seq: int
    kind: str
    name: str
    status: StepStatus
    input: Any = None
    output: Any = None
    error: str | None = None
    attempts: int = 1
    started_at: float
    finished_at: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class PruneResult(BaseModel):
    """What `Store.prune_checkpoints` removed (or, in a dry run, would remove)."""

    runs: int = 0
    checkpoints: int = 0
    bytes: int = 0  # of the checkpoints' JSON


class UsageTotals(BaseModel):
    """Tokens used by a tenant's completed steps, and their cost (see `Store.usage`)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class WindowCounts(BaseModel):
    """Events in a window that starts at `since` (what an SLO counts): all of
    them, and the good ones."""

    since: float
    total: int = 0
    good: int = 0


class UsageEvent(BaseModel):
    """Tokens a tenant used outside any run: `source` is "chat"
    (/v1/chat/completions) or "embeddings" (/v1/embeddings)."""

    tenant_id: str
    source: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    at: float


class AgentRecord(BaseModel):
    tenant_id: str
    name: str
    spec: dict[str, Any] = Field(default_factory=dict)
    updated_at: float
    # The version `spec` is (None for a definition stored before versions were kept).
    version: str | None = None


class AgentVersion(BaseModel):
    """One definition an agent has had: `version` is its content hash
    (`definition_version`), `parent` the version it replaced, `author` who
    stored it ("folder" for the agents folder, else the API caller)."""

    tenant_id: str
    name: str
    version: str
    parent: str | None = None
    author: str = "folder"
    spec: dict[str, Any] = Field(default_factory=dict)
    created_at: float


def definition_version(spec: dict[str, Any]) -> str:
    """The content hash of an agent definition: 12 hex digits of the SHA-256 of
    its canonical JSON. `file` (where the definition was read from) is not part
    of what the agent does, so moving its YAML file makes no new version."""
    canonical = json.dumps({key: value for key, value in spec.items() if key != "file"},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class EvalResult(BaseModel):
    """One evaluation case scored against one run of an agent version:
    `score` is in [0, 1] (the mean of its checks' scores), `passed` whether every
    check passed, `checks` each check's kind, score and reason."""

    tenant_id: str
    eval_id: str
    suite: str
    agent: str
    agent_version: str
    case_id: str
    run_id: str
    status: str
    score: float
    passed: bool
    checks: list[dict[str, Any]] = Field(default_factory=list)
    at: float


# Roles from least to most allowed; each may do what the ones before it may.
# viewer: read the tenant's runs, traces and metrics; member: also submit runs
# and use the API; operator: also cancel any run of the tenant, approve or
# reject runs, work the breakers and the autonomic loop; admin: also keys,
# users and policies. API keys and JWT users carry one.
Role = Literal["viewer", "member", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "member", "operator", "admin")
KeyRole = Role
KEY_ROLES: tuple[str, ...] = ROLES


def role_allows(role: str, needed: str) -> bool:
    """Whether `role` may do what `needed` may (an unknown role may do nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)  # type: ignore[arg-type]


class ApiKey(BaseModel):
    """An API key: the tenant it acts for and its role there (see `Role`). The
    secret is never stored, only its argon2 hash (see homeo.keys)."""

    id: str
    tenant_id: str
    name: str = ""
    role: KeyRole = "member"
    secret_hash: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class UiSession(BaseModel):
    """A dashboard session: who signed in (an API key's id, or a JWT user's
    `sub`), its tenant and role, and when it ends. `id` is the SHA-256 of the
    secret in the browser's cookie; the secret itself is never stored."""

    id: str
    tenant_id: str
    key_id: str = ""
    user_id: str = ""
    role: KeyRole
    created_at: float
    expires_at: float
    revoked_at: float | None = None

    def live(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at


class WorkerRecord(BaseModel):
    """A worker process's heartbeat row: who it is, how many slots it runs and
    how many hold a run now, how its sandboxed tools ended, and when it last
    wrote (`Store.beat_worker`)."""

    id: str
    host: str
    pid: int
    slots: int
    in_use: int = 0
    started_at: float
    last_seen: float
    # Its sandboxed tool runs since it started, those the wall-clock limit
    # ended, and those with a process killed for memory (homeo.sandbox.tally).
    sandbox_runs: int = 0
    sandbox_timeouts: int = 0
    sandbox_ooms: int = 0
    # Its resident memory at its last heartbeat and at its first (0: unknown).
    rss_bytes: int = 0
    rss_start_bytes: int = 0


class AgentOutcomes(BaseModel):
    """Runs of one tenant's agent that ended in a window (`Store.agent_outcomes`)."""

    tenant_id: str
    agent: str
    total: int = 0
    failed: int = 0


class SignalRecord(BaseModel):
    """One measured value of the autonomic loop's Monitor: `name` is what was
    measured (queue.depth, provider.error_rate), `subject` what of (a
    deployment, an agent, a worker; "" for the whole system)."""

    observer: str = ""
    at: float = 0.0
    name: str
    subject: str = ""
    value: float


class DiagnosisRecord(BaseModel):
    """A diagnosis of the autonomic loop's Analyze, kept while it holds:
    first and last seen, and when it cleared (None while it holds)."""

    id: str = ""
    kind: str
    subject: str = ""
    confidence: float
    summary: str
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    first_seen: float = 0.0
    last_seen: float = 0.0
    cleared_at: float | None = None
class AuditEntry(BaseModel):
    """One event of a tenant's audit log. `hash` covers every other field but
    the signature (and `prev_hash`, so the entries form a chain); `signature`
    is an ML-DSA-65 signature of the hash by the key `key_id` names (see
    homeo.audit)."""

    tenant_id: str
    seq: int  # 1, 2, 3... per tenant
    at: float
    kind: str  # e.g. key.created, run.cancelled, access.denied
    actor: str  # who: key:<id>, user:<tenant>:<sub>, cli
    subject: str = ""  # what it acted on: key:<id>, run:<id>, a route
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str
    key_id: str
    signature: str  # base64


class AuditHead(BaseModel):
    """The last entry of a tenant's log, signed apart from it, so a log cut
    short (its last entries removed) no longer matches its head."""

    tenant_id: str
    seq: int
    hash: str
    key_id: str
    signature: str


class ControlEntry(BaseModel):
    """One piece of the shared control state every process applies (the
    autonomic loop's actuators write it): `key` names what it controls
    (`breaker/<deployment>`, `pause/<tenant>`...), `value` how; it stops
    applying at `expires_at` (None: until removed)."""

    key: str
    value: dict[str, Any] = Field(default_factory=dict)
    set_by: str
    set_at: float
    expires_at: float | None = None


class DecisionRecord(BaseModel):
    """One decision of the autonomic loop's Plan: for the diagnosis `kind` of
    `subject`, take `action` with `params`. `status`: dry_run (recorded, not
    done), awaiting_approval, approved, executed, failed (the actuator
    raised), expired (not approved while the diagnosis held), reverted (its
    effect undone). `outcome`, measured at `settle_at`: cleared (the
    diagnosis no longer held) or persisted."""

    id: str
    at: float
    observer: str
    kind: str
    subject: str = ""
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    status: str
    explanation: dict[str, Any] = Field(default_factory=dict)
    settle_at: float
    outcome: str | None = None
    settled_at: float | None = None
    approved_by: str | None = None
    error: str | None = None
    updated_at: float = 0.0


class TenantEncryption(BaseModel):
    """Whether a tenant's runs are kept encrypted, and with which data key."""

    tenant_id: str
    sensitive: bool
    data_key_id: str | None = None
    updated_at: float


class DataKeyRecord(BaseModel):
    """A tenant's AES-256-GCM data key, wrapped (base64) by key-encryption
    key `kek_id`; rotation re-wraps it, the data it sealed stays as is."""

    id: str
    tenant_id: str
    kek_id: str
    wrapped: str
    created_at: float


class DatasetRecord(BaseModel):
    """One version of a curated training data set (`homeo train curate`): its
    examples split into train and validation, and where they came from."""

    tenant_id: str
    name: str
    version: int = 0  # 0 on a new one: the store gives the next version
    train: list[dict[str, Any]] = Field(default_factory=list)
    validation: list[dict[str, Any]] = Field(default_factory=list)
    # The run ids, filters and counts (seen, dropped as duplicates, scrubbed, ...).
    provenance: dict[str, Any] = Field(default_factory=dict)
    sha256: str = ""
    created_at: float


ModelStage = Literal["candidate", "challenger", "champion", "retired"]
MODEL_STAGES: tuple[str, ...] = ("candidate", "challenger", "champion", "retired")


class ModelRecord(BaseModel):
    """A model in the registry: a base GGUF or a LoRA adapter on one (`parent`),
    the deployment that serves it, its stage and its lineage (`dataset`)."""

    id: str
    kind: Literal["base", "adapter"]
    path: str
    sha256: str
    deployment: str | None = None  # the HOMEO_MODELS deployment that serves it
    parent: str | None = None  # an adapter's base model id
    dataset: str | None = None  # "name@version" it was trained on
    stage: ModelStage = "candidate"
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    updated_at: float


class AliasChange(BaseModel):
    """One change of the model an alias serves (promotion or rollback)."""

    alias: str
    seq: int = 0  # given by the store: 1, 2, ... per alias
    model_id: str
    deployment: str
    previous_model_id: str | None = None
    action: Literal["promote", "rollback"]
    changed_by: str
    at: float
