"""Evaluation results of an agent's versions side by side (`homeo eval compare`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from homeo.evolve.stats import SCORE, Estimate, mean, wilson
from homeo.store.base import Store


class VersionScores(BaseModel):
    version: str
    cases: int
    score: Estimate
    pass_rate: Estimate


class Comparison(BaseModel):
    agent: str
    suite: str | None = None
    versions: list[VersionScores] = Field(default_factory=list)
    # case id -> version -> the case's score in that version's latest evaluation
    case_scores: dict[str, dict[str, float]] = Field(default_factory=dict)


def compare_versions(store: Store, tenant_id: str, agent: str, *,
                     suite: str | None = None) -> Comparison:
    """Every scored case of every version (in the order each was first
    evaluated): mean score, pass rate, and each case's latest score."""
    results = store.list_eval_results(tenant_id, agent, suite=suite)
    order: list[str] = []
    by_version: dict[str, list] = {}
    case_scores: dict[str, dict[str, float]] = {}
    for result in results:  # oldest first: a later evaluation's score wins
        if result.agent_version not in by_version:
            order.append(result.agent_version)
            by_version[result.agent_version] = []
        by_version[result.agent_version].append(result)
        case_scores.setdefault(result.case_id, {})[result.agent_version] = result.score
    versions = [VersionScores(
        version=version, cases=len(by_version[version]),
        score=mean([r.score for r in by_version[version]], SCORE),
        pass_rate=wilson(sum(r.passed for r in by_version[version]), len(by_version[version])))
        for version in order]
    return Comparison(agent=agent, suite=suite, versions=versions, case_scores=case_scores)
