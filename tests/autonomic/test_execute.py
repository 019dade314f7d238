"""Plan and Execute on a real store (SQLite and PostgreSQL): the loop learns
from outcomes, keeps its safety limits under a flapping signal, changes
nothing in dry-run, waits for approval of risky actions, and decides the same
way under the same clock and seed.

The diagnoses are given as Analyze would give them, step by step, with an
injected time, and the "world" answers the loop's actions through the
control state it wrote, as a real system would: e.g. the provider's
diagnosis clears once its weight is shifted away."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from homeo.autonomic.actuators import Actuators
from homeo.autonomic.analyze import Analysis, Diagnosis
from homeo.autonomic.approve import ApprovalRefused, approve
from homeo.autonomic.execute import Executor, Safety, Workers
from homeo.autonomic.plan import Planner
from homeo.backends import Backends, open_backends
from homeo.store.base import CheckpointPruned
from homeo.store.models import ControlEntry, DecisionRecord, NewRun, WorkerRecord

T0 = 1_900_000_000.0
ALIASES = {"chat": ["a", "b"]}


@pytest.fixture
def backends(backend_url: str) -> Iterator[Backends]:
    opened = open_backends(backend_url)
    yield opened
    opened.close()


def executor(backends: Backends, *, seed: int = 7, observer: str = "loop1",
             max_slots: int = 4, prune_older_than: float | None = None,
             **safety: Any) -> Executor:
    store = backends.store
    return Executor(store, Planner(random.Random(seed)),
                    Actuators(store, backends.queue, actor=f"autonomic:{observer}"),
                    observer=observer,
                    safety=Safety(**{"mode": "on", "settle_seconds": 10.0,
                                     "hold_seconds": 20.0, **safety}),
                    aliases=lambda: ALIASES, workers=Workers(base_slots=2, max_slots=max_slots),
                    prune_older_than=prune_older_than)


def provider_down(deployment: str = "a") -> Diagnosis:
    return Diagnosis("provider_down", deployment, 0.9,
                     f"deployment {deployment}: its circuit breaker is open",
                     [{"signal": "provider.breaker", "subject": deployment, "value": 2.0,
                       "rule": "2 (open)"}])


def at(now: float, *diagnoses: Diagnosis) -> Analysis:
    return Analysis(now, [], list(diagnoses))


def control(backends: Backends, now: float) -> dict[str, dict[str, Any]]:
    return {e.key: e.value for e in backends.store.list_control(now=now)}


def decisions(backends: Backends) -> list[DecisionRecord]:
    return sorted(backends.store.list_decisions(limit=10_000),
                  key=lambda d: (d.at, d.kind, d.subject))  # ids end in random digits


def run(loop: Executor, backends: Backends, steps: int,
        holds: Callable[[float, dict[str, dict[str, Any]]], list[Diagnosis]],
        start: float = T0) -> float:
    """Step once a second; `holds(now, control state)` says what Analyze finds."""
    now = start
    for index in range(steps):
        now = start + index
        loop.step(at(now, *holds(now, control(backends, now))), now)
    return now


def test_plan_learns_to_pass_over_an_action_that_keeps_failing(backends: Backends) -> None:
    loop = executor(backends)
    store = backends.store
    # First, shifting weight is not possible (an operator set a's weight to 0
    # in the alias), so only opening the breaker is eligible, and it never helps.
    store.set_control(ControlEntry(key="weight/chat/a", value={"factor": 0.0},
                                   set_by="operator", set_at=T0))
    # Each is settled 10 s later: it did not help, so it is undone and Plan
    # decides again at once.
    now = run(loop, backends, 40, lambda now, held: [provider_down()])
    tried = decisions(backends)
    assert [(d.at - T0, d.action, d.status, d.outcome) for d in tried] == [
        (0, "open_breaker", "reverted", "persisted"), (10, "open_breaker", "reverted", "persisted"),
        (20, "open_breaker", "reverted", "persisted"), (30, "open_breaker", "executed", None)]
    assert "shift_weight was not eligible: it shares no alias with another deployment," \
        " or has no weight left" in tried[0].explanation["why"]
    assert tried[0].explanation["signals"][0]["signal"] == "provider.breaker"
    assert store.decision_tally("provider_down") == {"open_breaker": (0, 3)}
    assert control(backends, now) == {"breaker/a": {"state": "open"},
                                      "weight/chat/a": {"factor": 0.0}}

    # The operator gives a back its weight: now shifting it away clears the
    # diagnosis, and the breaker still never does (the fourth try fails at 40 s).
    store.delete_control("weight/chat/a")

    def world(now: float, held: dict[str, dict[str, Any]]) -> list[Diagnosis]:
        return [] if "weight/chat/a" in held else [provider_down()]

    run(loop, backends, 120, world, start=now + 1)
    later = decisions(backends)[4:]
    assert later, "no decision after the weight came back"
    first = later[0]
    assert first.action == "shift_weight"
    assert first.params == {"deployment": "a", "moves": [{"alias": "chat", "from": 1.0,
                                                          "to": 0.5}]}
    assert ("passed over open_breaker: it failed 4 of 4 times before for provider_down"
            in first.explanation["why"])
    scores = {alt["action"]: alt for alt in first.explanation["alternatives"]}
    assert scores["open_breaker"]["persisted_before"] == 4
    assert scores["open_breaker"]["score"] < scores["shift_weight"]["score"]
    assert first.outcome == "cleared"
    assert all(d.action == "shift_weight" for d in later)
    cleared, persisted = store.decision_tally("provider_down")["shift_weight"]
    assert cleared >= 1 and persisted == 0


def test_a_flapping_diagnosis_causes_no_action_storm(backends: Backends) -> None:
    """The diagnosis comes and goes every few seconds for ten minutes."""
    loop = executor(backends, max_actions_per_minute=2, settle_seconds=30.0,
                    hold_seconds=60.0)

    def flapping(now: float, held: dict[str, dict[str, Any]]) -> list[Diagnosis]:
        return [provider_down()] if int(now - T0) % 7 < 5 else []

    run(loop, backends, 600, flapping)
    made = decisions(backends)
    executed = [d for d in made if d.status in ("executed", "reverted", "done")]
    # One action in force per diagnosis: a new one only after the last was settled
    # (30 s) as not helping; and never more than 2 in any minute.
    assert 5 <= len(executed) <= 600 // 30 + 1
    for decision in executed:
        window = [d for d in executed if decision.at <= d.at < decision.at + 60]
        assert len(window) <= 2
    # Hysteresis: what worked is not undone while the diagnosis keeps coming back
    # (it is never clear for the 60 s hold).
    assert not [d for d in made if d.status == "reverted" and d.outcome == "cleared"]


def test_an_effect_is_undone_only_after_the_hold_period_clear(backends: Backends) -> None:
    loop = executor(backends, seed=1, hold_seconds=20.0)
    # Holds for 5 s, then clear for 15 s (less than the hold), three times; then clear.
    pattern = lambda now, held: [provider_down()] if (  # noqa: E731
        now - T0 < 60 and int(now - T0) % 20 < 5) else []
    run(loop, backends, 100, pattern)
    made = decisions(backends)
    assert len(made) == 1, [(d.action, d.status) for d in made]
    decision = made[0]
    assert decision.outcome == "cleared"  # at +10 s the diagnosis was clear
    # Undone once it had been clear for 20 s after its last return (45 s -> 65 s).
    assert decision.status == "reverted"
    assert T0 + 64 <= decision.updated_at <= T0 + 66
    assert control(backends, T0 + 100) == {}


def test_an_action_no_longer_enough_lets_another_join_it(backends: Backends) -> None:
    """The backlog clears after one more slot, comes back for good: a second
    slot is added (and, when that does not clear it in time, tried again); once
    clear for the hold period, both are undone, newest first."""
    loop = executor(backends, settle_seconds=10.0, hold_seconds=20.0)
    backlog = Diagnosis("backlog_growing", "", 0.7, "jobs pile up")
    pattern = lambda now, held: [backlog] if (  # noqa: E731
        now - T0 < 5 or 20 <= now - T0 <= 45) else []
    slots = {}
    for index in range(80):
        now = T0 + index
        loop.step(at(now, *pattern(now, None)), now)
        slots[index] = control(backends, now).get("worker.concurrency", {}).get("slots")
    made = decisions(backends)
    assert [(d.at - T0, d.params["from"], d.params["to"], d.status, d.outcome)
            for d in made] == [(0, 2, 3, "reverted", "cleared"),
                               (30, 3, 4, "reverted", "persisted"),
                               (40, 3, 4, "reverted", "cleared")]
    assert (slots[0], slots[29], slots[30], slots[40], slots[65], slots[66]) == (
        3, 3, 4, 4, 4, None)


def test_dry_run_records_decisions_and_changes_nothing(backends: Backends) -> None:
    loop = executor(backends, mode="dry-run")
    store = backends.store
    store.put_agent("acme", "bot", {"name": "bot", "model": "m1"}, now=T0 - 10)
    record = store.put_agent("acme", "bot", {"name": "bot", "model": "m2"}, now=T0 - 5)
    everything = [
        provider_down(),
        Diagnosis("tenant_flooding", "acme", 0.8, "acme floods"),
        Diagnosis("poison_job", "acme/job_1", 0.9, "job_1 kills workers"),
        Diagnosis("backlog_growing", "", 0.7, "backlog"),
        Diagnosis("agent_regressed", "acme/bot", 0.8, "bot fails"),
    ]
    run(loop, backends, 30, lambda now, held: everything)
    made = decisions(backends)
    assert {d.status for d in made} <= {"dry_run", "dry_run_done"}
    assert {d.action for d in made} >= {"shed_tenant", "quarantine_job", "raise_concurrency",
                                          "rollback_agent"}
    assert all(d.explanation["mode"] == "dry-run" for d in made)
    assert store.list_control(now=T0 + 30) == []
    assert store.get_agent("acme", "bot").version == record.version
    assert store.decision_tally("provider_down") == {}  # dry runs teach Plan nothing


def test_approval_mode_runs_safe_actions_and_waits_for_risky_ones(backends: Backends) -> None:
    loop = executor(backends, mode="approval")
    store = backends.store
    poison = Diagnosis("poison_job", "acme/job_1", 0.9, "job_1 kills workers")
    backlog = Diagnosis("backlog_growing", "", 0.7, "jobs pile up")
    run(loop, backends, 5, lambda now, held: [poison, backlog])
    by_action = {d.action: d for d in decisions(backends)}
    assert by_action["raise_concurrency"].status == "executed"  # risk 0.2: no approval
    waiting = by_action["quarantine_job"]
    assert waiting.status == "awaiting_approval"
    assert control(backends, T0 + 5) == {"worker.concurrency": {"slots": 3}}

    with pytest.raises(ApprovalRefused) as other_tenant:
        approve(store, waiting.id, by="globex-operator", now=T0 + 5, tenant_id="globex")
    assert other_tenant.value.status == 404
    approved = approve(store, waiting.id, by="key:k1", now=T0 + 5, tenant_id="acme")
    assert (approved.status, approved.approved_by) == ("approved", "key:k1")
    with pytest.raises(ApprovalRefused) as again:
        approve(store, waiting.id, by="key:k1", now=T0 + 5)
    assert again.value.status == 409 and "is approved, not awaiting approval" in str(again.value)

    loop.step(at(T0 + 6, poison, backlog), T0 + 6)
    assert store.get_decision(waiting.id).status == "executed"
    assert control(backends, T0 + 6)["quarantine/job_1"]["reason"].endswith(
        f"(decision {waiting.id})")


def test_a_waiting_decision_expires_when_its_diagnosis_clears(backends: Backends) -> None:
    loop = executor(backends, mode="approval")
    poison = Diagnosis("poison_job", "acme/job_9", 0.9, "job_9 kills workers")
    loop.step(at(T0, poison), T0)
    waiting = decisions(backends)[0]
    assert waiting.status == "awaiting_approval"
    loop.step(at(T0 + 1), T0 + 1)
    assert backends.store.get_decision(waiting.id).status == "expired"
    assert control(backends, T0 + 1) == {}


def test_decisions_are_the_same_under_the_same_clock_and_seed(tmp_path) -> None:
    def scenario(seed: int, name: str) -> list[tuple[Any, ...]]:
        opened = open_backends(f"sqlite:///{tmp_path / name}.db")
        try:
            loop = executor(opened, seed=seed)

            def world(now: float, held: dict[str, dict[str, Any]]) -> list[Diagnosis]:
                found = [] if "weight/chat/a" in held else [provider_down()]
                if int(now - T0) % 40 < 25:
                    found.append(Diagnosis("tenant_flooding", "acme", 0.8, "acme floods"))
                return found

            run(loop, opened, 200, world)
            return [(d.at, d.kind, d.subject, d.action, d.params, d.status, d.outcome,
                     d.explanation) for d in decisions(opened)]
        finally:
            opened.close()

    first = scenario(11, "one")
    assert len(first) >= 4
    assert scenario(11, "two") == first


def test_rolling_an_agent_back_makes_its_previous_version_current(backends: Backends) -> None:
    loop = executor(backends)
    store = backends.store
    old = store.put_agent("acme", "bot", {"name": "bot", "model": "m1"}, now=T0 - 10)
    store.put_agent("acme", "bot", {"name": "bot", "model": "m2"}, now=T0 - 5)
    loop.step(at(T0, Diagnosis("agent_regressed", "acme/bot", 0.8, "bot fails")), T0)
    (decision,) = decisions(backends)
    assert (decision.action, decision.status) == ("rollback_agent", "executed")
    current = store.get_agent("acme", "bot")
    assert (current.version, current.spec["model"]) == (old.version, "m1")
    # Its version has no parent: nothing older to roll back to.
    loop.step(at(T0 + 11, Diagnosis("agent_regressed", "acme/bot", 0.8, "bot fails")), T0 + 11)
    assert [d.status for d in decisions(backends)] == ["done"]


def test_a_dead_workers_leases_are_expired_so_others_take_its_jobs(
        backends: Backends) -> None:
    loop = executor(backends)
    queue, store = backends.queue, backends.store
    for worker in ("box:7:dead", "box:9:idle"):
        store.beat_worker(WorkerRecord(id=worker, host="box", pid=7, slots=2,
                                       started_at=T0 - 200, last_seen=T0 - 100))
    job, _ = queue.enqueue("acme", "run", {}, now=T0 - 100)
    queue.claim("box:7:dead#1", 600, now=T0 - 100)  # its lease would last 10 minutes
    dead = Diagnosis("worker_dead", "box:7:dead", 0.95, "worker box:7:dead: no heartbeat",
                     [{"signal": "worker.leases", "subject": "box:7:dead", "value": 1.0,
                       "rule": "> 0 raises confidence"}])
    loop.step(at(T0, dead), T0)
    (decision,) = decisions(backends)
    assert (decision.action, decision.status) == ("expire_leases", "executed")
    assert decision.params == {"worker": "box:7:dead", "leases": 1.0}
    assert ("replace_worker was not eligible: no `homeo worker --processes` supervisor"
            " keeps it" in decision.explanation["why"])
    again = queue.claim("box:8:alive#1", 60, now=T0 + 1)
    assert again.id == job.id and again.lease_expiries == 1
    # Its row is gone, so the diagnosis ends: the action helped. Giving other
    # workers more slots is not a candidate: it would never end it.
    assert [w.id for w in store.list_workers()] == ["box:9:idle"]
    # A dead worker that held nothing is forgotten too.
    idle = Diagnosis("worker_dead", "box:9:idle", 0.7, "no heartbeat",
                     [{"signal": "worker.leases", "subject": "box:9:idle", "value": 0.0,
                       "rule": "> 0 raises confidence"}])
    loop.step(at(T0 + 2, idle), T0 + 2)
    assert [(d.subject, d.action, d.params["leases"]) for d in decisions(backends)] == [
        ("box:7:dead", "expire_leases", 1.0), ("box:9:idle", "expire_leases", 0.0)]
    assert store.list_workers() == []
    loop.step(at(T0 + 12), T0 + 12)
    assert [d.outcome for d in decisions(backends)] == ["cleared", "cleared"]
    assert store.decision_tally("worker_dead") == {"expire_leases": (2, 0)}


def test_a_decision_its_stopped_loop_left_is_settled_by_another(
        backends: Backends) -> None:
    gone = executor(backends, observer="loop-gone", adopt_after_seconds=30.0)
    gone.step(at(T0, provider_down("a")), T0)  # then its process stops
    (decision,) = decisions(backends)
    assert (decision.status, decision.outcome) == ("executed", None)
    other = executor(backends, observer="loop-other", adopt_after_seconds=30.0)
    # Its settle time (10 s) passed, but its own loop may still come for it.
    other.step(at(T0 + 20), T0 + 20)
    assert decisions(backends)[0].outcome is None
    other.step(at(T0 + 41), T0 + 41)  # 30 s past due: the other loop settles it
    (settled,) = decisions(backends)
    assert (settled.outcome, settled.status) == ("cleared", "executed")


def disk_pressure() -> Diagnosis:
    return Diagnosis("disk_pressure", "", 0.95, "the data directory's disk has 4 MiB free",
                     [{"signal": "disk.free_bytes", "subject": "", "value": 4.0 * 2**20,
                       "rule": "< 16777216"}])


def test_disk_pressure_prunes_checkpoints_of_runs_finished_long_enough_ago(
        backends: Backends) -> None:
    store = backends.store
    finished = {}
    for age in (3 * 86400.0, 3600.0):  # three days ago, an hour ago
        run, _ = store.create_run(NewRun(tenant_id="acme", agent="bot", input="hi"),
                                  now=T0 - age)
        for seq in range(2):  # the last step's checkpoint is the run's final state: kept
            store.begin_step("acme", run.id, seq, "tool", "read", None, now=T0 - age)
            store.complete_step("acme", run.id, seq, "out", {
                "seq": seq + 1, "next": "model",
                "state": {"messages": ["x" * 5000] * (seq + 1)}}, now=T0 - age)
        store.transition_run("acme", run.id, "succeeded", allowed_from={"queued"},
                             now=T0 - age)
        finished[age] = run.id

    # Off: nothing may be pruned, and the explanation says why.
    executor(backends).step(at(T0, disk_pressure()), T0)
    assert decisions(backends) == []

    loop = executor(backends, prune_older_than=86400.0)
    loop.step(at(T0, disk_pressure()), T0)
    (decision,) = decisions(backends)
    assert (decision.action, decision.status) == ("prune_checkpoints", "executed")
    assert decision.params["older_than"] == 86400.0
    assert (decision.params["runs"], decision.params["checkpoints"]) == (1, 2)
    assert decision.params["bytes"] > 5000
    with pytest.raises(CheckpointPruned):
        store.checkpoint_at("acme", finished[3 * 86400.0], 0)
    assert store.checkpoint_at("acme", finished[3600.0], 0) is not None  # an hour: kept
    # Pruned is pruned: once it is settled the diagnosis, if it holds, finds
    # nothing more to prune, and the explanation says so.
    loop.step(at(T0 + 11, disk_pressure()), T0 + 11)
    assert [d.status for d in decisions(backends)] == ["done"]
    loop.step(at(T0 + 12, disk_pressure()), T0 + 12)
    assert len(decisions(backends)) == 1


def test_an_ineligible_prune_is_explained() -> None:
    from homeo.autonomic.plan import Situation

    planner = Planner(random.Random(1))
    off = Situation(prune_older_than=None)
    assert planner.plan(disk_pressure(), off, {}) is None
    nothing = Situation(prune_older_than=86400.0, prunable=lambda before: (0, 0, 0), now=T0)
    assert planner.plan(disk_pressure(), nothing, {}) is None
    some = Situation(prune_older_than=86400.0, prunable=lambda before: (
        (2, 6, 1000) if before == T0 - 86400.0 else (0, 0, 0)), now=T0)
    plan = planner.plan(disk_pressure(), some, {})
    assert plan is not None and plan.action == "prune_checkpoints"
    assert plan.params == {"older_than": 86400.0, "runs": 2, "checkpoints": 6, "bytes": 1000}
    assert plan.risk >= Safety().risky  # it deletes data: approval mode asks a person
