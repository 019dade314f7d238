"""Champion and challenger: a challenger version of an agent takes a share of
the agent's new runs (a canary), and a judge compares the two versions' runs
since the canary began, then promotes the challenger (its definition becomes
the agent's) or rolls it back (its share goes to zero), with the evidence.

The canary lives in the shared control state (`canary/<tenant>/<agent>`,
never expiring), so every process that submits runs routes the same way, and
it stays there once ended, with its outcome and evidence, for people to read.

The judge's test: of the runs that ended (succeeded or failed) since the
canary began, the challenger's success rate against the champion's, one-sided
two-proportion z-test. Rolled back as soon as it is worse at 99.5% confidence
(with at least a quarter of `min_runs` each), or as soon as it breaks a
run-success SLO that covers the agent while the champion does not (the upper
end of its Wilson 95% interval below the objective, the champion's not), or
worse at 95% once both have `min_runs`; promoted once both have `min_runs`
and the challenger's rate is at least the champion's; rolled back, not shown
to be as good, at four times `min_runs`. Latency is not part of the test.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from homeo.evolve.stats import wilson
from homeo.store.base import Store
from homeo.store.models import ControlEntry, Run

PREFIX = "canary/"
RUNS_LOOKED_AT = 1000
WORSE_EARLY_Z = -2.576  # one-sided 99.5%
WORSE_Z = -1.645  # one-sided 95%
Status = Literal["active", "promoted", "rolled_back", "stopped"]


class CanaryError(ValueError):
    """The canary cannot be started or changed as asked; the message says why."""


class Canary(BaseModel):
    tenant_id: str
    agent: str
    champion: str
    challenger: str
    share: float = Field(gt=0, le=1)
    min_runs: int = Field(ge=4)
    started_at: float
    started_by: str
    status: Status = "active"
    ended_at: float | None = None
    ended_by: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return key_of(self.tenant_id, self.agent)


def key_of(tenant_id: str, agent: str) -> str:
    return f"{PREFIX}{tenant_id}/{agent}"


def get(store: Store, tenant_id: str, agent: str, now: float) -> Canary | None:
    """The agent's canary, active or ended; None if it never had one."""
    key = key_of(tenant_id, agent)
    entry = next((e for e in store.list_control(now=now) if e.key == key), None)
    return None if entry is None else Canary.model_validate(entry.value)


def _put(store: Store, canary: Canary, by: str, now: float) -> None:
    store.set_control(ControlEntry(key=canary.key, value=canary.model_dump(mode="json"),
                                   set_by=by, set_at=now))


def start(store: Store, tenant_id: str, agent: str, challenger: str, share: float, *,
          min_runs: int = 20, by: str, now: float) -> Canary:
    """Send `share` of the agent's new runs to version `challenger`."""
    if not 0 < share <= 1:
        raise CanaryError(f"share must be above 0 and at most 1, not {share}")
    if min_runs < 4:
        raise CanaryError(f"min_runs must be at least 4, not {min_runs}")
    record = store.get_agent(tenant_id, agent)
    if record is None:
        raise CanaryError(f"tenant {tenant_id!r} has no agent {agent!r}")
    versions = [v.version for v in store.list_agent_versions(tenant_id, agent)]
    if challenger not in versions:
        raise CanaryError(f"agent {agent!r} has no version {challenger!r}; its versions:"
                          f" {', '.join(versions)}")
    if challenger == record.version:
        raise CanaryError(f"{challenger} is the current version (the champion) of {agent!r};"
                          " a challenger must be another version")
    running = get(store, tenant_id, agent, now)
    if running is not None and running.status == "active":
        raise CanaryError(f"agent {agent!r} has a canary running already ({running.challenger}"
                          f" at {running.share:.0%}); promote or roll it back first")
    canary = Canary(tenant_id=tenant_id, agent=agent, champion=record.version,
                    challenger=challenger, share=share, min_runs=min_runs, started_at=now,
                    started_by=by)
    _put(store, canary, by, now)
    return canary


def pick_version(store: Store, tenant_id: str, agent: str, idempotency_key: str | None,
                 now: float) -> str | None:
    """The version a new run of the agent gets while a canary is active: the
    challenger for `share` of runs (by a hash of the idempotency key, so a
    resubmission lands where the first did; at random without one), else
    the champion. None when no canary is active."""
    canary = get(store, tenant_id, agent, now)
    if canary is None or canary.status != "active":
        return None
    if idempotency_key is None:
        draw = secrets.randbelow(1 << 32) / (1 << 32)
    else:
        digest = hashlib.sha256(f"{canary.started_at}:{idempotency_key}".encode()).digest()
        draw = int.from_bytes(digest[:4], "big") / (1 << 32)
    return canary.challenger if draw < canary.share else canary.champion


def _ended(store: Store, canary: Canary, version: str) -> list[Run]:
    return [run for status in ("succeeded", "failed")
            for run in store.list_runs(canary.tenant_id, status=status, agent=canary.agent,
                                       agent_version=version, limit=RUNS_LOOKED_AT)
            if run.created_at >= canary.started_at]


def evidence(store: Store, canary: Canary) -> dict[str, Any]:
    """Each version's ended runs and successes since the canary began, and the z score."""
    found: dict[str, Any] = {}
    for role in ("champion", "challenger"):
        runs = _ended(store, canary, getattr(canary, role))
        found[role] = {"version": getattr(canary, role), "runs": len(runs),
                       "succeeded": sum(run.status == "succeeded" for run in runs)}
    champion, challenger = found["champion"], found["challenger"]
    found["z"] = _z(challenger["succeeded"], challenger["runs"],
                    champion["succeeded"], champion["runs"])
    return found


def _z(successes_x: int, n_x: int, successes_c: int, n_c: int) -> float | None:
    """Two-proportion z score of x's rate over c's (pooled); None without runs."""
    if not n_x or not n_c:
        return None
    pooled = (successes_x + successes_c) / (n_x + n_c)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_x + 1 / n_c))
    difference = successes_x / n_x - successes_c / n_c
    if spread == 0:
        return 0.0
    return round(difference / spread, 4)


def objectives(slos: Sequence[Any], canary: Canary) -> list[tuple[str, float]]:
    """(name, objective) of the run-success SLOs (observe/slo) covering the
    canary's agent and tenant."""
    return [(slo.name, slo.objective) for slo in slos
            if slo.kind == "run_success" and slo.agent in (None, canary.agent)
            and slo.tenant in (None, canary.tenant_id)]


def decide(canary: Canary, found: dict[str, Any],
           slos: Sequence[tuple[str, float]] = ()) -> tuple[Status, str]:
    """What the evidence says: stay active, promote or roll back, and why.
    `slos`: (name, objective) of the run-success SLOs covering the agent."""
    x, c, z = found["challenger"], found["champion"], found["z"]
    early = max(canary.min_runs // 4, 2)
    rates = (f"challenger {x['succeeded']}/{x['runs']} succeeded, champion"
             f" {c['succeeded']}/{c['runs']}")
    if min(x["runs"], c["runs"]) >= early:
        if z is not None and z <= WORSE_EARLY_Z:
            return "rolled_back", f"worse at 99.5% confidence ({rates}, z {z})"
        upper_x = wilson(x["succeeded"], x["runs"]).high or 0.0
        upper_c = wilson(c["succeeded"], c["runs"]).high or 0.0
        for name, objective in slos:
            if upper_x < objective <= upper_c:
                return "rolled_back", (f"breaks the SLO {name} (objective {objective:.1%};"
                                       f" the challenger is below it at 95% confidence and"
                                       f" the champion is not; {rates})")
    if min(x["runs"], c["runs"]) < canary.min_runs:
        return "active", f"waiting for {canary.min_runs} ended runs of each ({rates})"
    if z is not None and z <= WORSE_Z:
        return "rolled_back", f"worse at 95% confidence ({rates}, z {z})"
    if x["succeeded"] / x["runs"] >= c["succeeded"] / c["runs"]:
        return "promoted", f"as good or better ({rates}, z {z})"
    if min(x["runs"], c["runs"]) >= 4 * canary.min_runs:
        return "rolled_back", f"not shown as good after {4 * canary.min_runs} runs ({rates})"
    return "active", f"not yet as good, nor surely worse ({rates}, z {z})"


def judge(store: Store, canary: Canary, *, by: str, now: float,
          slos: Sequence[Any] = ()) -> Canary:
    """Decide the active canary and act on it: the canary as it is now.
    `slos`: the SLO definitions (observe/slo); its run-success ones count."""
    if canary.status != "active":
        return canary
    found = evidence(store, canary)
    status, why = decide(canary, found, objectives(slos, canary))
    if status == "active":
        return canary.model_copy(update={"evidence": {**found, "why": why}})
    return end(store, canary, status, {**found, "why": why}, by=by, now=now)


def end(store: Store, canary: Canary, status: Status, found: dict[str, Any], *, by: str,
        now: float) -> Canary:
    """End the canary: promoted, the challenger's definition becomes the agent's."""
    if status == "promoted":
        version = store.get_agent_version(canary.tenant_id, canary.agent, canary.challenger)
        if version is None:
            raise CanaryError(f"agent {canary.agent!r} has no version {canary.challenger!r}")
        store.put_agent(canary.tenant_id, canary.agent, version.spec, author=by, now=now)
    ended = canary.model_copy(update={"status": status, "ended_at": now, "ended_by": by,
                                      "evidence": found})
    _put(store, ended, by, now)
    return ended


def judge_all(store: Store, *, by: str, now: float, slos: Sequence[Any] = ()
              ) -> list[Canary]:
    """Judge every active canary of every tenant; the ones that ended now."""
    ended = []
    for entry in store.list_control(now=now):
        if entry.key.startswith(PREFIX) and entry.value.get("status") == "active":
            canary = judge(store, Canary.model_validate(entry.value), by=by, now=now,
                           slos=slos)
            if canary.status != "active":
                ended.append(canary)
    return ended


def promote(store: Store, tenant_id: str, agent: str, version: str, *, by: str,
            now: float) -> Canary | None:
    """Make `version` the agent's definition by hand, ending an active canary
    (promoted if `version` is its challenger, else stopped). The canary as it
    ended, if one was active."""
    record = store.get_agent_version(tenant_id, agent, version)
    if record is None:
        raise CanaryError(f"agent {agent!r} of tenant {tenant_id!r} has no version {version!r}")
    canary = get(store, tenant_id, agent, now)
    if canary is not None and canary.status == "active":
        found = {**evidence(store, canary), "why": f"by hand: {version} made current"}
        if canary.challenger == version:
            return end(store, canary, "promoted", found, by=by, now=now)
        store.put_agent(tenant_id, agent, record.spec, author=by, now=now)
        return end(store, canary, "stopped", found, by=by, now=now)
    store.put_agent(tenant_id, agent, record.spec, author=by, now=now)
    return None


def rollback(store: Store, tenant_id: str, agent: str, *, by: str, now: float
             ) -> tuple[Canary | None, str]:
    """By hand: roll back the active canary's challenger, or, with none active,
    make the agent's previous version (the current one's parent) current again.
    Returns the ended canary (or None) and the version now current."""
    canary = get(store, tenant_id, agent, now)
    if canary is not None and canary.status == "active":
        ended = end(store, canary, "rolled_back",
                    {**evidence(store, canary), "why": "by hand"}, by=by, now=now)
        return ended, canary.champion
    record = store.get_agent(tenant_id, agent)
    if record is None:
        raise CanaryError(f"tenant {tenant_id!r} has no agent {agent!r}")
    current = store.get_agent_version(tenant_id, agent, record.version)
    parent = None if current is None or current.parent is None else store.get_agent_version(
        tenant_id, agent, current.parent)
    if parent is None:
        raise CanaryError(f"agent {agent!r} has no earlier version to roll back to"
                          f" ({record.version} is its first)")
    store.put_agent(tenant_id, agent, parent.spec, author=by, now=now)
    return None, parent.version
