"""Plan: for a diagnosis, choose what to do, and say why.

Each diagnosis kind has candidate actions (CANDIDATES), each with a cost and
a risk in [0, 1] and a precondition on the running system (another
deployment can take the traffic, a worker has slots to give, the agent has a
previous version...). The eligible candidates are ranked by Thompson
sampling: a draw from the Beta(1 + cleared, 1 + persisted) posterior of how
often the action cleared this diagnosis before, minus its cost and risk
(weighted by COST_WEIGHT and RISK_WEIGHT). An action that kept failing
draws low and is passed over for an alternative; one never tried still
draws from Beta(1, 1), so it gets its chance.

Randomness is the `rng` passed in, so a seeded Plan decides the same way
every time. Every plan carries an explanation a person can read: the
signals, the diagnosis, every alternative with its score (or why it was not
eligible), and why the chosen one won.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeo.autonomic.analyze import Diagnosis

COST_WEIGHT = 0.3
RISK_WEIGHT = 0.3
# Failures before an action counts as "failed repeatedly" in an explanation.
REPEATED_FAILURES = 2


@dataclass(frozen=True)
class ActionKind:
    name: str
    cost: float
    risk: float
    does: str  # what it does, in words
    reversible: bool = True


ACTIONS: dict[str, ActionKind] = {a.name: a for a in (
    ActionKind("open_breaker", 0.1, 0.3, "hold the deployment's breaker open in every process"),
    ActionKind("shift_weight", 0.05, 0.1,
               "move routing weight away from the deployment to the others of its alias"),
    ActionKind("expire_leases", 0.05, 0.2,
               "end the dead worker's leases now, so other workers take its jobs, and"
               " forget its heartbeat row (a worker that was only slow writes it again"
               " at its next heartbeat; its leases stay lost)", reversible=False),
    ActionKind("replace_worker", 0.1, 0.2,
               "end the dead worker's leases and have its supervisor start another process"
               " in its place", reversible=False),
    ActionKind("recycle_worker", 0.1, 0.2,
               "have the worker's supervisor stop it gracefully (its steps in flight"
               " finish, its runs go back to the queue) and start a fresh process",
               reversible=False),
    ActionKind("raise_concurrency", 0.2, 0.2, "give every worker process more slots"),
    ActionKind("lower_concurrency", 0.2, 0.3, "give every worker process fewer slots"),
    ActionKind("shed_tenant", 0.2, 0.4,
               "answer the tenant's submissions 429 with Retry-After"),
    ActionKind("pause_tenant", 0.3, 0.6, "stop every worker from running the tenant's jobs"),
    ActionKind("quarantine_job", 0.1, 0.5,
               "dead-letter the job at its next claim instead of running it", reversible=False),
    ActionKind("rollback_agent", 0.3, 0.6,
               "make the agent's previous version its current one", reversible=False),
    ActionKind("prune_checkpoints", 0.1, 0.5,
               "remove the per-step checkpoints of runs finished longer ago than"
               " HOMEO_CHECKPOINT_RETENTION_UNDER_PRESSURE, and give the database's freed"
               " room back to the filesystem", reversible=False),
)}

CANDIDATES: dict[str, tuple[str, ...]] = {
    "provider_down": ("open_breaker", "shift_weight"),
    "provider_degraded": ("shift_weight", "open_breaker"),
    "provider_slow": ("shift_weight", "open_breaker"),
    # More slots elsewhere do not bring a dead worker back (backlog_growing
    # asks for them if its jobs pile up); either of these ends the diagnosis.
    "worker_dead": ("replace_worker", "expire_leases"),
    "worker_bloated": ("recycle_worker",),
    "backlog_growing": ("raise_concurrency",),
    "poison_job": ("quarantine_job",),
    "sandbox_hanging": ("raise_concurrency",),
    "agent_regressed": ("rollback_agent",),
    "memory_pressure": ("lower_concurrency",),
    "disk_pressure": ("prune_checkpoints",),
    "tenant_flooding": ("shed_tenant", "pause_tenant"),
}


@dataclass
class Situation:
    """What preconditions look at: the running system as the loop sees it."""

    # alias -> its deployments, and what the control state holds now.
    aliases: dict[str, list[str]] = field(default_factory=dict)
    held_open: set[str] = field(default_factory=set)
    weight_factors: dict[tuple[str, str], float] = field(default_factory=dict)
    slots: int = 0  # what each worker runs now
    base_slots: int = 0  # what it runs with no control state
    max_slots: int = 0
    shed: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)
    # (tenant, agent) -> (current version, previous version or None)
    agent_versions: Callable[[str, str], tuple[str | None, str | None]] = (
        lambda tenant, agent: (None, None))
    max_step: float = 0.5
    supervised: set[str] = field(default_factory=set)  # worker ids a supervisor keeps
    recycling: set[str] = field(default_factory=set)  # workers asked to recycle, not yet done
    # How long ago a run must have finished for its checkpoints to be pruned
    # under disk pressure (None: never), and what pruning those finished before
    # a time would remove: (runs, checkpoints, bytes).
    prune_older_than: float | None = None
    prunable: Callable[[float], tuple[int, int, int]] = lambda finished_before: (0, 0, 0)
    now: float = 0.0


@dataclass
class Plan:
    kind: str
    subject: str
    action: str
    params: dict[str, Any]
    risk: float
    explanation: dict[str, Any]


class Planner:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def plan(self, diagnosis: Diagnosis, situation: Situation,
             tally: dict[str, tuple[int, int]]) -> Plan | None:
        """The best eligible action for `diagnosis`, or None when none is
        eligible. `tally`: action -> (cleared, persisted) outcomes before."""
        alternatives: list[dict[str, Any]] = []
        best: tuple[float, dict[str, Any]] | None = None
        for name in CANDIDATES.get(diagnosis.kind, ()):
            kind = ACTIONS[name]
            cleared, persisted = tally.get(name, (0, 0))
            entry: dict[str, Any] = {
                "action": name, "does": kind.does, "cost": kind.cost, "risk": kind.risk,
                "cleared_before": cleared, "persisted_before": persisted,
                "posterior_mean": round((1 + cleared) / (2 + cleared + persisted), 3),
            }
            params, refusal = PRECONDITIONS[name](diagnosis, situation)
            if refusal is not None:
                entry.update(eligible=False, reason=refusal)
                alternatives.append(entry)
                continue
            sampled = self.rng.betavariate(1 + cleared, 1 + persisted)
            score = sampled - COST_WEIGHT * kind.cost - RISK_WEIGHT * kind.risk
            entry.update(eligible=True, params=params, sampled=round(sampled, 4),
                         score=round(score, 4))
            alternatives.append(entry)
            if best is None or score > best[0]:
                best = (score, entry)
        if best is None:
            return None
        chosen = best[1]
        why = [f"{chosen['action']} scored highest ({chosen['score']:.3f}: a success chance"
               f" of {chosen['sampled']:.2f} drawn from Beta({1 + chosen['cleared_before']},"
               f" {1 + chosen['persisted_before']}), less cost {chosen['cost']} and risk"
               f" {chosen['risk']} at {COST_WEIGHT} each)"]
        for other in alternatives:
            if other is chosen:
                continue
            if not other["eligible"]:
                why.append(f"{other['action']} was not eligible: {other['reason']}")
                continue
            failed, tried = other["persisted_before"], (other["persisted_before"]
                                                       + other["cleared_before"])
            if failed >= REPEATED_FAILURES and failed > other["cleared_before"]:
                why.append(f"passed over {other['action']}: it failed {failed} of {tried}"
                           f" times before for {diagnosis.kind} (the diagnosis persisted"
                           f" after it), so its draw was {other['sampled']:.2f}")
            else:
                why.append(f"{other['action']} scored {other['score']:.3f}")
        explanation = {
            "diagnosis": {"kind": diagnosis.kind, "subject": diagnosis.subject,
                          "confidence": diagnosis.confidence, "summary": diagnosis.summary},
            "signals": diagnosis.evidence,
            "alternatives": alternatives,
            "chosen": chosen["action"],
            "why": "; ".join(why),
        }
        return Plan(diagnosis.kind, diagnosis.subject, chosen["action"], chosen["params"],
                    ACTIONS[chosen["action"]].risk, explanation)


# --- preconditions: (params for the action, None) or ({}, why not) ---------
Precondition = Callable[[Diagnosis, Situation], tuple[dict[str, Any], str | None]]


def _aliases_of(deployment: str, situation: Situation) -> list[str]:
    return sorted(alias for alias, names in situation.aliases.items() if deployment in names)


def _open_breaker(diagnosis: Diagnosis, situation: Situation
                  ) -> tuple[dict[str, Any], str | None]:
    deployment = diagnosis.subject
    if deployment in situation.held_open:
        return {}, "its breaker is already held open"
    aliases = _aliases_of(deployment, situation)
    stranded = [alias for alias in aliases
                if not any(other != deployment and other not in situation.held_open
                           for other in situation.aliases[alias])]
    if not aliases:
        return {}, "no configured alias routes to it"
    if stranded:
        return {}, f"no other deployment would serve {', '.join(stranded)}"
    return {"deployment": deployment}, None


def _shift_weight(diagnosis: Diagnosis, situation: Situation
                  ) -> tuple[dict[str, Any], str | None]:
    deployment = diagnosis.subject
    moves = []
    for alias in _aliases_of(deployment, situation):
        if not any(other != deployment for other in situation.aliases[alias]):
            continue
        before = situation.weight_factors.get((alias, deployment), 1.0)
        after = round(before * (1 - situation.max_step), 4)
        if before > 0:
            moves.append({"alias": alias, "from": before, "to": after})
    if not moves:
        return {}, "it shares no alias with another deployment, or has no weight left"
    return {"deployment": deployment, "moves": moves}, None


def _expire_leases(diagnosis: Diagnosis, situation: Situation
                   ) -> tuple[dict[str, Any], str | None]:
    if diagnosis.subject in situation.supervised:
        return {}, "its supervisor can replace it (replace_worker ends its leases too)"
    return {"worker": diagnosis.subject, "leases": _leases(diagnosis)}, None


def _replace_worker(diagnosis: Diagnosis, situation: Situation
                    ) -> tuple[dict[str, Any], str | None]:
    if diagnosis.subject not in situation.supervised:
        return {}, "no `homeo worker --processes` supervisor keeps it"
    return {"worker": diagnosis.subject, "leases": _leases(diagnosis)}, None


def _leases(diagnosis: Diagnosis) -> float:
    """The leases a dead worker held, from its diagnosis's evidence."""
    return next((e.get("value") for e in diagnosis.evidence
                 if e.get("signal") == "worker.leases"), None) or 0


def _recycle_worker(diagnosis: Diagnosis, situation: Situation
                    ) -> tuple[dict[str, Any], str | None]:
    if diagnosis.subject not in situation.supervised:
        return {}, "no `homeo worker --processes` supervisor keeps it"
    if situation.recycling:
        return {}, (f"worker {sorted(situation.recycling)[0]} is being recycled: one at a time,"
                    " so the others keep serving")
    rss = next((e.get("value") for e in diagnosis.evidence
                if e.get("signal") == "worker.rss_bytes"), None)
    return {"worker": diagnosis.subject, "rss_bytes": rss}, None


def _step(situation: Situation) -> int:
    return max(1, int(situation.slots * situation.max_step))


def _raise_concurrency(diagnosis: Diagnosis, situation: Situation
                       ) -> tuple[dict[str, Any], str | None]:
    if situation.slots >= situation.max_slots:
        return {}, f"workers already run their most slots ({situation.max_slots})"
    after = min(situation.slots + _step(situation), situation.max_slots)
    return {"from": situation.slots, "to": after, "base": situation.base_slots}, None


def _lower_concurrency(diagnosis: Diagnosis, situation: Situation
                       ) -> tuple[dict[str, Any], str | None]:
    if situation.slots <= 1:
        return {}, "workers already run one slot"
    after = max(situation.slots - _step(situation), 1)
    return {"from": situation.slots, "to": after, "base": situation.base_slots}, None


def _tenant_action(kind: str, held: Callable[[Situation], set[str]]) -> Precondition:
    def check(diagnosis: Diagnosis, situation: Situation) -> tuple[dict[str, Any], str | None]:
        tenant = diagnosis.subject
        if tenant in held(situation):
            return {}, f"the tenant is already {kind}"
        return {"tenant": tenant}, None
    return check


def _quarantine_job(diagnosis: Diagnosis, situation: Situation
                    ) -> tuple[dict[str, Any], str | None]:
    tenant, _, job = diagnosis.subject.partition("/")
    if not job:
        return {}, "the diagnosis names no job"
    if job in situation.quarantined:
        return {}, "the job is already quarantined"
    return {"tenant": tenant, "job": job}, None


def _rollback_agent(diagnosis: Diagnosis, situation: Situation
                    ) -> tuple[dict[str, Any], str | None]:
    tenant, _, agent = diagnosis.subject.partition("/")
    current, previous = situation.agent_versions(tenant, agent)
    if current is None:
        return {}, "the agent has no recorded version"
    if previous is None:
        return {}, "the agent has no previous version"
    return {"tenant": tenant, "agent": agent, "from": current, "to": previous}, None


def _prune_checkpoints(diagnosis: Diagnosis, situation: Situation
                       ) -> tuple[dict[str, Any], str | None]:
    older_than = situation.prune_older_than
    if older_than is None:
        return {}, "HOMEO_CHECKPOINT_RETENTION_UNDER_PRESSURE is off"
    runs, checkpoints, size = situation.prunable(situation.now - older_than)
    if not checkpoints:
        return {}, f"no run finished over {older_than:g} s ago keeps its per-step checkpoints"
    return {"older_than": older_than, "runs": runs, "checkpoints": checkpoints,
            "bytes": size}, None


PRECONDITIONS: dict[str, Precondition] = {
    "open_breaker": _open_breaker,
    "shift_weight": _shift_weight,
    "expire_leases": _expire_leases,
    "replace_worker": _replace_worker,
    "recycle_worker": _recycle_worker,
    "raise_concurrency": _raise_concurrency,
    "lower_concurrency": _lower_concurrency,
    "shed_tenant": _tenant_action("shed", lambda s: s.shed),
    "pause_tenant": _tenant_action("paused", lambda s: s.paused),
    "quarantine_job": _quarantine_job,
    "rollback_agent": _rollback_agent,
    "prune_checkpoints": _prune_checkpoints,
}
