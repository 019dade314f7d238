"""All of homeo's settings, in one place.

Every setting can be given as an environment variable `HOMEO_<NAME>` (for
example `HOMEO_PORT=9000`) or as a CLI flag where the CLI offers one. Settings
that hold secrets (`SECRET_FILE_SETTINGS`) may instead be read from a file named
by `HOMEO_<NAME>_FILE` (a mounted Docker or Kubernetes secret, say), so the
secret is in no process's environment. Values
are validated at start: a wrong value stops homeo with one line naming the
setting and what it accepts (see `describe_error`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from homeo.safety.policy import TenantPolicies
from homeo.safety.scrub import scrub
from homeo.tools.permissions import ToolPolicy

EXAMPLE_AGENTS_DIR = Path(__file__).parent / "examples" / "agents"
# The SLOs used when HOMEO_SLO_FILE is unset (homeo.observe.slo.definitions).
DEFAULT_SLO_FILE = Path(__file__).parent / "observe" / "slo" / "default.yaml"


def _http_base_url(value: str) -> str:
    if not re.match(r"https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


# What a deployment's `model` may name: the providers in homeo.llm.resolve.
_PROVIDER_PREFIXES = ("local:", "openai:", "scripted:")


class ModelDeployment(BaseModel):
    """One place a model alias can send a call (an entry of `HOMEO_MODELS`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="local, local:/path.gguf, minilm, openai:MODEL or scripted:module:fn"
    )
    name: str = Field("", description="Shown in /v1/providers and metrics; defaults to `model`.")
    weight: float = Field(1.0, ge=0, description="Share of first tries; 0 means fallback only.")
    base_url: str | None = Field(None, description="openai: only; else HOMEO_OPENAI_BASE_URL.")
    api_key: SecretStr | None = Field(
        None, description="openai: only; else HOMEO_OPENAI_API_KEY.")
    headers: dict[str, str] = Field(default_factory=dict, description="openai: only.")
    timeout_seconds: float | None = Field(
        None, gt=0, description="One attempt's limit; else HOMEO_ROUTER_ATTEMPT_TIMEOUT_SECONDS."
    )
    lora: str | None = Field(
        None, description="local only: a GGUF LoRA adapter (`homeo train lora`) applied on"
                          " the unchanged base model.")

    @model_validator(mode="after")
    def _lora_is_local(self) -> ModelDeployment:
        if self.lora and self.model != "local" and not self.model.startswith("local:"):
            raise ValueError(f"deployment {self.key!r}: lora applies to local models only,"
                             f" not {self.model!r}")
        return self

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_base_url(value)

    @field_validator("model")
    @classmethod
    def _names_a_provider(cls, value: str) -> str:
        if value not in ("local", "minilm") and not value.startswith(_PROVIDER_PREFIXES):
            raise ValueError(
                f"deployment model {value!r} must be local, local:/path.gguf, minilm,"
                " openai:MODEL or scripted:module:function"
            )
        return value

    @property
    def key(self) -> str:
        return self.name or self.model


class ModelPrice(BaseModel):
    """What a model or deployment costs (an entry of `HOMEO_PRICES`)."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: float = Field(0.0, ge=0, description="USD per 1M input tokens.")
    output_per_million: float = Field(0.0, ge=0, description="USD per 1M output tokens.")


class McpServer(BaseModel):
    """An MCP server whose tools agents may list as `mcp:NAME/TOOL` (`HOMEO_MCP_SERVERS`)."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(default_factory=list, description="stdio: the command line.")
    url: str = Field("", description="Streamable HTTP: the endpoint, e.g. http://host/mcp.")
    env: dict[str, str] = Field(default_factory=dict, description="stdio: extra environment.")
    timeout_seconds: float = Field(60.0, gt=0, le=3600, description="One tool call's limit.")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if bool(self.command) == bool(self.url):
            raise ValueError("give either `command` (stdio) or `url` (streamable HTTP)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        return self


# The signature algorithms HOMEO_JWT_ALGORITHMS may list (homeo.jwtauth); `none` never.
JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384",
                  "PS512", "ES256", "ES384", "ES512", "EdDSA")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEO_", extra="forbid", validate_default=True)

    data_dir: Path = Field(Path("homeo-data"), description="Where SQLite files and run data live.")
    database_url: str = Field(
        "",
        description="sqlite:///PATH or postgresql://... ; empty means SQLite under data_dir.",
    )
    queue_url: str = Field(
        "",
        description="redis://HOST:PORT/DB puts the job queue on Redis (extra [redis]);"
        " empty keeps it in the database.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    agents_dir: Path = Field(EXAMPLE_AGENTS_DIR, description="Folder of agent YAML files.")
    min_free_disk: int = Field(
        0, ge=0, description="Free bytes the data directory's disk keeps: below it new runs"
        " are refused (HTTP 507); a number with K, M or G (1024-based) allowed; 0: no floor.")
    workers: int = Field(2, ge=0, le=256, description="Concurrent runs per worker process.")
    lease_seconds: float = Field(30.0, gt=0, le=3600)
    poll_seconds: float = Field(0.2, gt=0, le=60)
    max_attempts: int = Field(
        3, ge=1, le=100,
        description="Attempts in a row that complete no step before a run is given up.")
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, le=3600,
        description="On SIGTERM, how long steps in flight may finish before they are"
                    " stopped and their runs go back to the queue.")
    sweep_seconds: float = Field(
        30.0, gt=0, le=86400,
        description="How often workers look for runs without a job (and how old one must be).")
    checkpoint_retention: str = Field(
        "7d",
        description="How long finished runs keep their per-step checkpoints (a duration).")
    checkpoint_retention_under_pressure: str = Field(
        "1d",
        description="While the data directory's disk is nearly full, the autonomic loop"
        " may prune the checkpoints of runs finished longer ago than this (a duration;"
        " off: it never does).")
    retry_base_seconds: float = Field(1.0, ge=0, le=3600)
    retry_max_seconds: float = Field(60.0, ge=0, le=86400)
    max_input_chars: int = Field(100_000, ge=1, le=10_000_000)
    max_request_bytes: int = Field(1_000_000, ge=1024, le=100_000_000)
    local_model_path: Path | None = Field(None, description="GGUF file; empty means SmolLM2.")
    local_model_context: int = Field(4096, ge=256, le=131072)
    # Chosen with bench/local_threads.py on a shared 2-core machine (README, Models).
    local_threads: int = Field(1, ge=1, le=256, description="llama.cpp threads of the local model.")
    embed_threads: int = Field(
        1, ge=1, le=256,
        description="CPU threads of minilm embeddings (onnxruntime's intra-op, or torch's).")
    embed_runtime: Literal["auto", "onnx", "sentence-transformers"] = Field(
        "auto",
        description="What runs minilm: auto means ONNX Runtime when the export exists"
                    " (homeo models convert-minilm), else sentence-transformers on torch.")
    embed_onnx_dir: Path | None = Field(
        None, description="The ONNX export of minilm; empty means beside the Python environment.")
    omp_wait_policy: Literal["passive", "active"] = Field(
        "passive", description="OpenMP threads with nothing to do sleep (passive) or spin."
    )
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr = SecretStr("")
    models: dict[str, list[ModelDeployment]] = Field(
        # Offline out of the box: chat on the shipped SmolLM2, embeddings on MiniLM.
        default_factory=lambda: {
            "default": [ModelDeployment(model="local")],
            "embedding": [ModelDeployment(model="minilm")],
        },
        description="Model aliases (JSON): alias -> ordered list of deployments.",
    )
    router_retries: int = Field(2, ge=0, le=10, description="Retries per deployment.")
    router_backoff_base_seconds: float = Field(0.5, ge=0, le=60)
    router_backoff_max_seconds: float = Field(8.0, ge=0, le=600)
    router_timeout_seconds: float = Field(120.0, gt=0, le=3600, description="Whole call.")
    router_attempt_timeout_seconds: float = Field(60.0, gt=0, le=3600, description="One try.")
    router_connect_timeout_seconds: float = Field(5.0, gt=0, le=600)
    router_first_token_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="A stream's first token, per attempt."
    )
    router_cache_seconds: float = Field(
        0.0, ge=0, le=7 * 86400, description="Exact-match response cache TTL; 0 turns it off."
    )
    router_cache_entries: int = Field(1000, ge=1, le=1_000_000)
    breaker_failure_rate: float = Field(0.5, gt=0, le=1)
    breaker_window_seconds: float = Field(60.0, gt=0, le=86400)
    breaker_min_calls: int = Field(5, ge=1, le=10_000)
    breaker_cooldown_seconds: float = Field(30.0, ge=0, le=86400)
    breaker_half_open_probes: int = Field(1, ge=1, le=100)
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Price table (JSON): deployment name or model -> USD per 1M tokens.",
    )
    tenant_tokens_per_day: int | None = Field(
        None, ge=1, description="Hard token limit per tenant over 24 hours; runs fail."
    )
    soft_tenant_tokens_per_day: int | None = Field(
        None, ge=1, description="Soft token limit per tenant over 24 hours; a warning."
    )
    agent_tokens_per_day: int | None = Field(
        None, ge=1, description="Hard token limit per agent of a tenant over 24 hours."
    )
    soft_agent_tokens_per_day: int | None = Field(
        None, ge=1, description="Soft token limit per agent of a tenant over 24 hours."
    )
    default_tenant: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    key_rate_limit: str = Field(
        "", description="Requests per API key or JWT user, e.g. 600/minute, shared by every"
        " server on the database; empty: none."
    )
    tenant_rate_limit: str = Field(
        "", description="Requests per tenant (all its keys and users), e.g. 6000/minute,"
        " shared by every server on the database; empty: none."
    )
    audit_key_file: Path | None = Field(
        None, description="The ML-DSA-65 private key (PEM) that signs the audit log, outside"
        " the data dir (`homeo audit keygen PATH`); unset: no audit log."
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate (chain) `homeo serve` presents; with"
        " HOMEO_TLS_KEY_FILE it serves HTTPS only (TLS 1.3, X25519MLKEM768 first)."
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key (unencrypted) of HOMEO_TLS_CERT_FILE."
    )
    tls_handshake_timeout_seconds: float = Field(
        10.0, gt=0, le=600,
        description="A connection that has not finished its TLS handshake by then is closed.")
    encryption_key_file: Path | None = Field(
        None, description="The key file (`homeo crypto keygen PATH`, mode 0600, outside the"
        " data dir) whose hybrid X25519+ML-KEM-768 keys wrap the data keys of tenants marked"
        " sensitive; unset: no tenant can be marked sensitive."
    )
    jwt_secret: SecretStr = Field(
        SecretStr(""), description="The shared secret HS256/384/512 user tokens are signed with."
    )
    jwt_jwks: str = Field(
        "", description="A JWKS file or http(s) URL: the public keys of RS*, PS*, ES* and EdDSA"
        " user tokens, picked by `kid`."
    )
    jwt_issuer: str = Field("", description="The `iss` every user token must carry.")
    jwt_audience: str = Field("", description="The `aud` every user token must include.")
    jwt_algorithms: str = Field(
        "HS256,RS256,ES256,EdDSA", description="The signature algorithms user tokens may use."
    )
    jwt_tenant_claim: str = Field("tenant", min_length=1,
                                  description="The claim naming the tenant.")
    jwt_role_claim: str = Field("role", min_length=1, description="The claim naming the role.")
    jwt_leeway_seconds: float = Field(30.0, ge=0, le=3600, description="Clock skew allowed.")
    jwt_jwks_refresh_seconds: float = Field(
        300.0, gt=0, le=86400,
        description="How long a fetched JWKS is used before it is read again."
    )
    ui_session_hours: float = Field(
        12.0, gt=0, le=24 * 90,
        description="How long a dashboard sign-in lasts; signing out ends it at once.")
    metrics_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token /metrics requires; with one, it shows tenant labels."
        " Empty: /metrics is open and sums over tenants.",
    )
    slo_file: Path | None = Field(
        None, description="YAML file of SLOs (README, SLOs); unset: homeo's default SLOs.")
    autonomic: Literal["on", "off"] = Field(
        "off", description="Run the autonomic loop (monitor, analyze, keep what it found)"
        " in `homeo serve` and `homeo worker`.")
    autonomic_interval_seconds: float = Field(
        1.0, gt=0, le=3600, description="How often the autonomic loop observes.")
    autonomic_act: Literal["dry-run", "approval", "on"] = Field(
        "dry-run", description="What the loop does with its decisions: dry-run records"
        " them and changes nothing; approval acts on low-risk ones and waits for"
        " `homeo autonomic approve` on risky ones; on acts on all.")
    autonomic_max_actions_per_minute: int = Field(
        6, ge=0, le=1000, description="At most this many actions a minute, all loops together.")
    autonomic_settle_seconds: float = Field(
        60.0, gt=0, le=86400, description="How long after an action its outcome is"
        " measured: did the diagnosis clear?")
    autonomic_hold_seconds: float = Field(
        120.0, ge=0, le=86400, description="An action's effect is undone only once its"
        " diagnosis has been clear this long (hysteresis).")
    autonomic_max_step: float = Field(
        0.5, gt=0, le=1, description="The most one action moves a setting, as a share of"
        " it: worker slots up or down, a deployment's routing weight down.")
    autonomic_control_ttl_seconds: float = Field(
        3600.0, gt=0, le=7 * 86400, description="Control state an action writes expires"
        " after this, so a loop that died leaves nothing changed for good.")
    autonomic_baseline_every_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often Analyze adds a sample to each signal's"
        " baseline.")
    autonomic_baseline_min_samples: int = Field(
        12, ge=2, le=10000, description="Samples a signal's baseline needs before a value"
        " is judged against it.")
    autonomic_disk_free: int = Field(
        512 * 2**20, ge=0, description="The loop sees disk pressure when the data"
        " directory's disk has less free than this (or under 5% free); a size as for"
        " HOMEO_MIN_FREE_DISK.")
    autonomic_worker_growth: int = Field(
        512 * 2**20, ge=0, description="A worker process whose resident memory grew by this"
        " much since it started, while under a quarter of memory is left, is recycled by the"
        " loop (if `homeo worker --processes` keeps it); a size as for HOMEO_MIN_FREE_DISK.")
    autonomic_seed: int | None = Field(
        None, description="Seed of Plan's sampling (unset: random).")
    control_refresh_seconds: float = Field(
        1.0, gt=0, le=60, description="How often each process reads the shared control"
        " state.")
    worker_max_concurrency: int | None = Field(
        None, ge=1, le=1024, description="The most slots the autonomic loop may give a"
        " worker process (unset: twice HOMEO_WORKERS).")
    worker_heartbeat_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often a worker process writes its heartbeat row.")
    worker_stale_seconds: float = Field(
        30.0, gt=0, le=86400,
        description="A worker whose heartbeat is older than this is diagnosed dead.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    otlp_endpoint: str = Field(
        "", description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces; empty: none."
    )
    sandbox_memory: str = Field("256M", description="Memory per sandboxed run (cgroup limit).")
    sandbox_pids: int = Field(64, ge=4, le=65536, description="Processes+threads per run.")
    sandbox_cpu: float = Field(1.0, gt=0, le=256, description="CPU cores per run (quota).")
    sandbox_timeout: str = Field("10s", description="Wall-clock limit per run.")
    sandbox_output_bytes: str = Field("1M", description="stdout and stderr kept, each.")
    sandbox_allow_without: str = Field(
        "", description="Sandbox layers the operator turns off: seccomp, cgroups."
    )
    http_allowlist: str = Field(
        "",
        description="host or host:port entries http_get may reach (no port: 80/443 only),"
        " comma-separated; empty turns it off.",
    )
    http_max_bytes: str = Field("1M", description="Largest response body http_get reads.")
    http_timeout: str = Field("10s", description="http_get's limit for one request.")
    mcp_servers: dict[str, McpServer] = Field(
        default_factory=dict, description="MCP servers (JSON): name -> {command | url}."
    )
    memory_embedding_model: str = Field(
        "embedding", min_length=1,
        description="The model alias (HOMEO_MODELS) that embeds knowledge chunks and queries.")
    memory_embed_batch: int = Field(64, ge=1, le=2048, description="Texts per embedding call.")
    memory_chunk_chars: int = Field(
        1000, ge=100, le=100_000, description="Longest chunk, in characters (headings aside).")
    memory_chunk_overlap: int = Field(
        150, ge=0, le=50_000,
        description="Characters a chunk repeats from the one before it, at most half a chunk.")
    memory_ingest_inline_chars: int = Field(
        20_000, ge=0, le=10_000_000,
        description="Longest document text POST /v1/collections/{name}/documents indexes"
        " before it answers (201); a longer one is queued for a worker (202). 0: queue all.")
    memory_merge_similarity: float = Field(
        0.9, gt=0, le=1,
        description="Cosine at or above which a new agent memory is merged into an old one.")
    memory_half_life: str = Field(
        "30d", description="Time unused after which an agent memory's strength halves.")
    memory_prune_interval: str = Field(
        "1h", description="How often workers prune expired, decayed and superseded memories.")
    tool_policy: ToolPolicy = Field(
        default_factory=ToolPolicy,
        description='Tools per tenant (JSON): {"TENANT or *": {"allow": [...], "deny": [...]}}.',
    )
    safety: TenantPolicies = Field(
        default_factory=TenantPolicies,
        description='Safety guards per tenant (JSON): {"TENANT or *": {"input": {"secrets":'
                    ' "block"}, "tool_output": {"injection": "approve"}, ...}}; README, Safety.',
    )

    @field_validator("slo_file")
    @classmethod
    def _slos(cls, value: Path | None) -> Path | None:
        from homeo.observe.slo.definitions import load_slos

        if value is not None:
            load_slos(value)  # SloFileError (a ValueError) names the file and field
        return value

    @field_validator("memory_chunk_overlap")
    @classmethod
    def _overlap(cls, value: int, info: ValidationInfo) -> int:
        chars = info.data.get("memory_chunk_chars")
        if chars is not None and value > chars // 2:
            raise ValueError(f"at most half of HOMEO_MEMORY_CHUNK_CHARS ({chars // 2})")
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, value: dict[str, McpServer]) -> dict[str, McpServer]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
                raise ValueError(f"MCP server name {name!r}: use a-z, 0-9, '_' and '-'")
        return value

    @field_validator("http_allowlist")
    @classmethod
    def _hosts(cls, value: str) -> str:
        from homeo.tools.allowlist import parse_allowlist

        parse_allowlist(value)
        return value

    @field_validator("sandbox_memory", "sandbox_output_bytes", "http_max_bytes")
    @classmethod
    def _sandbox_size(cls, value: str) -> str:
        from homeo.sandbox.limits import parse_size

        parse_size(value)
        return value

    @field_validator("checkpoint_retention", "memory_half_life", "memory_prune_interval")
    @classmethod
    def _retention(cls, value: str) -> str:
        from homeo.sandbox.limits import parse_duration

        if parse_duration(value) <= 0:
            raise ValueError(f"{value!r} must be longer than 0, such as 7d or 12h")
        return value

    @field_validator("checkpoint_retention_under_pressure")
    @classmethod
    def _pressure_retention(cls, value: str) -> str:
        from homeo.sandbox.limits import parse_duration

        if value.strip().lower() != "off" and parse_duration(value) <= 0:
            raise ValueError(f"{value!r} must be longer than 0, such as 1d or 12h, or off")
        return value

    def pressure_retention_seconds(self) -> float | None:
        """HOMEO_CHECKPOINT_RETENTION_UNDER_PRESSURE in seconds; None when off."""
        from homeo.sandbox.limits import parse_duration

        text = self.checkpoint_retention_under_pressure
        return None if text.strip().lower() == "off" else parse_duration(text)

    @field_validator("sandbox_timeout", "http_timeout")
    @classmethod
    def _sandbox_duration(cls, value: str) -> str:
        from homeo.sandbox.limits import parse_duration

        parse_duration(value)
        return value

    @field_validator("sandbox_allow_without")
    @classmethod
    def _sandbox_layers(cls, value: str) -> str:
        from homeo.sandbox.layers import parse_allow_without

        parse_allow_without(value)
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _jwt_algorithms(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in JWT_ALGORITHMS]
        if not names or unknown:
            raise ValueError(f"{', '.join(unknown) or 'empty'}: list some of"
                             f" {', '.join(JWT_ALGORITHMS)} (never none)")
        return ",".join(names)

    @field_validator("jwt_jwks")
    @classmethod
    def _jwks_source(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")) and not Path(value).is_file():
            raise ValueError(f"{value} is neither an http(s) URL nor a file")
        return value

    @model_validator(mode="after")
    def _audit_key_outside_data(self) -> Settings:
        key = self.audit_key_file
        if key is None:
            return self
        if key.resolve().is_relative_to(self.data_dir.resolve()):
            raise ValueError(f"HOMEO_AUDIT_KEY_FILE {key} is inside the data dir"
                             f" {self.data_dir}: keep the signing key elsewhere, so a copy of"
                             " the data cannot rewrite its own log")
        return self

    def tls_enabled(self) -> bool:
        """Whether TLS is asked for; homeo.tls.server_context checks the files (both
        given, readable, PEM, belonging together) when `homeo serve` starts."""
        return self.tls_cert_file is not None or self.tls_key_file is not None

    @model_validator(mode="after")
    def _encryption_key_outside_data(self) -> Settings:
        key = self.encryption_key_file
        if key is None:
            return self
        if key.resolve().is_relative_to(self.data_dir.resolve()):
            raise ValueError(f"HOMEO_ENCRYPTION_KEY_FILE {key} is inside the data dir"
                             f" {self.data_dir}: keep it elsewhere, so a copy of the data does"
                             " not carry the key that decrypts it")
        if key.exists() and key.stat().st_mode & 0o077:
            raise ValueError(f"HOMEO_ENCRYPTION_KEY_FILE {key} is readable by others"
                             f" (mode {key.stat().st_mode & 0o777:o}): `chmod 600 {key}`")
        return self

    @model_validator(mode="after")
    def _jwt_complete(self) -> Settings:
        secret = self.jwt_secret.get_secret_value()
        if not secret and not self.jwt_jwks:
            return self
        if not self.jwt_issuer or not self.jwt_audience:
            raise ValueError("JWT sign-in needs HOMEO_JWT_ISSUER and HOMEO_JWT_AUDIENCE: every"
                             " token is checked against both")
        if secret and len(secret.encode()) < 32:
            raise ValueError("HOMEO_JWT_SECRET must be at least 32 bytes (HS256 keys shorter"
                             " than its hash can be guessed); `openssl rand -hex 32` makes one")
        return self

    def jwt_enabled(self) -> bool:
        return bool(self.jwt_secret.get_secret_value() or self.jwt_jwks)

    @field_validator("key_rate_limit", "tenant_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        from homeo.ratelimit import parse_rate_limit

        if value:
            parse_rate_limit(value)
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, or empty")
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return _http_base_url(value)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:///, postgresql:// or postgres://")
        return value

    @field_validator("min_free_disk", "autonomic_disk_free", "autonomic_worker_growth",
                     mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        number = text[:-1] if scale > 1 else text
        try:
            return int(float(number) * scale)
        except ValueError:
            raise ValueError(f"{value!r} is not a size: give bytes, or a number with K, M"
                             " or G, e.g. 512M") from None

    @field_validator("queue_url")
    @classmethod
    def _queue_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (a Redis server),"
                             " or be empty to keep the queue in the database")
        return value

    @field_validator("agents_dir")
    @classmethod
    def _agents_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @field_validator("models")
    @classmethod
    def _aliases_are_usable(
        cls, value: dict[str, list[ModelDeployment]]
    ) -> dict[str, list[ModelDeployment]]:
        seen: dict[str, ModelDeployment] = {}
        for alias, deployments in value.items():
            # An alias must not look like a provider spec, or it would shadow one.
            if alias in ("local", "minilm") or not alias or not all(
                c.isalnum() or c in "_.-" for c in alias
            ):
                raise ValueError(
                    f"alias {alias!r}: use letters, digits, '_', '.', '-' (and not 'local' or"
                    " 'minilm')"
                )
            if not deployments:
                raise ValueError(f"alias {alias!r} has no deployments")
            if not any(d.weight > 0 for d in deployments):
                raise ValueError(f"alias {alias!r}: at least one deployment needs weight > 0")
            for deployment in deployments:
                # Deployments are shared by name (one breaker each), so a name
                # must mean the same thing everywhere.
                other = seen.setdefault(deployment.key, deployment)
                if other.model_dump(exclude={"weight"}) != deployment.model_dump(
                    exclude={"weight"}
                ):
                    raise ValueError(
                        f"deployment {deployment.key!r} is configured two different ways;"
                        " give them different `name`s"
                    )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _Environment(settings_cls), _SecretFiles(settings_cls),
                dotenv_settings, file_secret_settings)

    def resolved_database_url(self) -> str:
        """The database to use: the explicit URL, or SQLite inside `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'homeo.db'}"


class SettingsError(Exception):
    """A setting has a value homeo cannot use."""


# Settings that may be read from the file HOMEO_<NAME>_FILE names instead.
SECRET_FILE_SETTINGS = ("database_url", "queue_url", "openai_api_key", "jwt_secret",
                        "metrics_token")


class _SecretFiles(PydanticBaseSettingsSource):
    """`HOMEO_<NAME>_FILE` for each of SECRET_FILE_SETTINGS: the file's text, less
    its trailing newline. A missing file, or both variables set, is a
    SettingsError that says which."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads them all

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name in SECRET_FILE_SETTINGS:
            variable = f"HOMEO_{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if not path:
                continue
            if os.environ.get(variable):
                raise SettingsError(f"both {variable} and {variable}_FILE are set; keep one")
            try:
                found[name] = Path(path).read_text().rstrip("\r\n")
            except OSError as error:
                raise SettingsError(
                    f"cannot read {variable}_FILE={path}: {error.strerror or error}") from None
        return found


class _Environment(EnvSettingsSource):
    """`HOMEO_*` variables, where a JSON setting that does not parse is a
    SettingsError naming the variable and the problem (pydantic-settings would
    raise one naming neither, with the decoder's error only in its cause)."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as error:
            problem = (f"{error.msg} at line {error.lineno} column {error.colno}"
                       if isinstance(error, json.JSONDecodeError) else str(error))
            raise SettingsError(
                f"invalid setting HOMEO_{field_name.upper()}: not valid JSON ({problem})"
                f"{_example_hint(field_name)}"
            ) from None


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with `overrides` (from CLI flags) on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        raise SettingsError(describe_error(error)) from None


def describe_error(error: ValidationError) -> str:
    """One line per bad setting: `HOMEO_PORT='x': Input should be a valid integer`."""
    lines = []
    for problem in error.errors():
        if not problem["loc"]:  # a check of several settings together
            lines.append(f"invalid settings: {problem['msg'].removeprefix('Value error, ')}")
            continue
        name = str(problem["loc"][0])
        value = problem.get("input")
        # Inside a JSON setting (HOMEO_MODELS), say where: `at default.0.model`.
        inside = ".".join(str(part) for part in problem["loc"][1:])
        # A secret is never shown (the message goes to logs and terminals); a URL
        # is, less any password.
        if name in ("database_url", "queue_url") and isinstance(value, str):
            value = scrub(value)
        secret = name in ("openai_api_key", "jwt_secret", "metrics_token") \
            or "api_key" in problem["loc"]
        where = f" (at {inside}{'' if secret else f'={value!r}'})" if inside else ""
        shown = f"={value!r}" if not isinstance(value, dict) and not inside and not secret \
            else ""
        lines.append(f"invalid setting HOMEO_{name.upper()}{shown}: {problem['msg']}{where}"
                     f"{_example_hint(name)}")
    return "; ".join(lines)


# What a valid value looks like, for settings whose default does not show it
# (empty, none, or an empty JSON object). Every other setting's example is its default.
_EXAMPLES: dict[str, str] = {
    "database_url": "postgresql://homeo@127.0.0.1:5432/homeo",
    "queue_url": "redis://127.0.0.1:6379/0",
    "local_model_path": "/models/model.gguf",
    "embed_onnx_dir": "/models/all-MiniLM-L6-v2-onnx",
    "prices": '{"openai:gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6}}',
    "tenant_tokens_per_day": "1000000",
    "soft_tenant_tokens_per_day": "800000",
    "agent_tokens_per_day": "200000",
    "soft_agent_tokens_per_day": "150000",
    "key_rate_limit": "600/minute",
    "tenant_rate_limit": "6000/minute",
    "audit_key_file": "/etc/homeo/audit.key",
    "tls_cert_file": "/etc/homeo/tls/cert.pem",
    "tls_key_file": "/etc/homeo/tls/key.pem",
    "encryption_key_file": "/etc/homeo/encryption.keys",
    "jwt_issuer": "https://login.example.com/",
    "jwt_audience": "homeo",
    "otlp_endpoint": "http://127.0.0.1:4318/v1/traces",
    "slo_file": str(DEFAULT_SLO_FILE),
    "sandbox_allow_without": "cgroups",
    "http_allowlist": "example.com,api.github.com",
    "mcp_servers": '{"files": {"command": ["python", "-m", "files_server"]}}',
    "tool_policy": '{"*": {"deny": ["http_get"]}}',
    "safety": '{"*": {"tool_output": {"injection": "block"}, "output": {"secrets": "redact"}}}',
    "autonomic_seed": "42",
    "worker_max_concurrency": "8",
}


def example_of(name: str) -> str | None:
    """A valid value of setting `name` as its variable would hold it, or None
    when there is none to show (an unknown name, or a free-form text)."""
    if name in _EXAMPLES:
        return _EXAMPLES[name]
    field = Settings.model_fields.get(name)
    if field is None:
        return None
    default = _plain(field.get_default(call_default_factory=True))
    if default in (None, "", {}, []):
        return None
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, dict | list):
        return json.dumps(default)
    return str(default)


def _plain(value: Any) -> Any:
    """`value` as JSON would hold it, leaving out what is left at its default."""
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(exclude_defaults=True))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _example_hint(name: str) -> str:
    example = example_of(name)
    return "" if example is None else f" (e.g. HOMEO_{name.upper()}={shlex.quote(example)})"


def unknown_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for `HOMEO_*` variables that name no setting (a typo is
    otherwise silently ignored). `HOMEO_TEST_*` belongs to the test suite."""
    known = {name.upper() for name in Settings.model_fields}
    warnings = []
    for variable in sorted(os.environ if environ is None else environ):
        name = variable.removeprefix("HOMEO_")
        if name == variable or name in known or name.startswith("TEST_"):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean HOMEO_{close[0]}?)" if close else ""
        warnings.append(f"ignoring unknown setting {variable}{hint}")
    return warnings
