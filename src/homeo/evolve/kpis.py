"""What each version of an agent achieved: success rate, latency, tokens and
cost per run, tool errors and evaluation score, with 95% confidence intervals.

Only runs that ended succeeded or failed count (a cancelled run says nothing
about the agent), and of each version the newest `limit` of each outcome.
A run's latency is from its first claim to its end, less the time it waited
for a person or for child runs; its tool errors are those of its final state.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from homeo.evolve.stats import COUNT, SCORE, Estimate, mean, percentile, wilson
from homeo.store.base import Store
from homeo.store.models import Run

RUNS_PER_VERSION = 1000


class VersionKPIs(BaseModel):
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


def version_kpis(
    store: Store, tenant_id: str, name: str, *, limit: int = RUNS_PER_VERSION
) -> list[VersionKPIs]:
    """Every version of the tenant's agent `name`, oldest first, with its KPIs."""
    record = store.get_agent(tenant_id, name)
    current = record.version if record is not None else None
    results = store.list_eval_results(tenant_id, name)
    kpis = []
    for version in store.list_agent_versions(tenant_id, name):
        runs = [run for status in ("succeeded", "failed")
                for run in store.list_runs(tenant_id, status=status, agent=name,
                                           agent_version=version.version, limit=limit)]
        scores = [r.score for r in results if r.agent_version == version.version]
        kpis.append(VersionKPIs(
            version=version.version, parent=version.parent, author=version.author,
            created_at=version.created_at, current=version.version == current,
            **summarize(runs), eval_cases=len(scores), eval_score=mean(scores, SCORE)))
    return kpis


def summarize(runs: list[Run]) -> dict[str, object]:
    """The run KPIs of `runs` (ended ones), as VersionKPIs fields."""
    succeeded = sum(run.status == "succeeded" for run in runs)
    latencies = [max(0.0, run.finished_at - run.started_at - run.waited_seconds)
                 for run in runs if run.finished_at is not None and run.started_at is not None]
    errors = [_tool_errors(run) for run in runs]
    return {
        "runs": len(runs),
        "succeeded": succeeded,
        "success_rate": wilson(succeeded, len(runs)),
        "latency_p50": percentile(latencies, 0.50),
        "latency_p95": percentile(latencies, 0.95),
        "latency": mean(latencies, COUNT),
        "tokens_per_run": mean([float(run.input_tokens + run.output_tokens) for run in runs],
                               COUNT),
        "cost_per_run": mean([run.cost_usd for run in runs], COUNT),
        "tool_errors": sum(errors),
        "tool_errors_per_run": mean([float(count) for count in errors], COUNT),
    }


def _tool_errors(run: Run) -> int:
    state = (run.checkpoint or {}).get("state") or {}
    return int(state.get("tool_errors", 0)) if isinstance(state, dict) else 0
