"""What the autonomic loop keeps in the store, on SQLite and PostgreSQL: worker
heartbeat rows, run outcomes per agent, signals with retention, diagnoses
opened, refreshed, cleared and dropped. (The queue's backlog is part of the
queue contract: tests/queue/test_contract.py.)"""

from __future__ import annotations

from homeo.backends import Backends
from homeo.store.models import DiagnosisRecord, NewRun, SignalRecord, WorkerRecord

T0 = 1_800_000_000.0


def worker(worker_id: str, last_seen: float, in_use: int = 0) -> WorkerRecord:
    return WorkerRecord(id=worker_id, host="h", pid=7, slots=2, in_use=in_use,
                        started_at=T0, last_seen=last_seen)


def test_worker_rows_are_written_refreshed_and_forgotten(backends: Backends) -> None:
    store = backends.store
    store.beat_worker(worker("w-b", T0))
    store.beat_worker(worker("w-a", T0))
    store.beat_worker(worker("w-b", T0 + 5, in_use=2).model_copy(
        update={"rss_bytes": 300 * 2**20, "rss_start_bytes": 100 * 2**20}))

    rows = store.list_workers()
    assert [row.id for row in rows] == ["w-a", "w-b"]
    assert (rows[1].last_seen, rows[1].in_use, rows[1].started_at) == (T0 + 5, 2, T0)
    assert (rows[1].rss_bytes, rows[1].rss_start_bytes) == (300 * 2**20, 100 * 2**20)
    assert (rows[0].rss_bytes, rows[0].rss_start_bytes) == (0, 0)  # not reported
    assert store.forget_worker("w-a") is True
    assert store.forget_worker("w-a") is False
    assert [row.id for row in store.list_workers()] == ["w-b"]


def test_agent_outcomes_count_ended_runs_in_the_window(backends: Backends) -> None:
    store = backends.store
    outcomes = [("acme", "a", "succeeded", T0 + 1), ("acme", "a", "failed", T0 + 2),
                ("acme", "a", "failed", T0 + 3), ("acme", "b", "succeeded", T0 + 4),
                ("beta", "a", "failed", T0 + 5), ("acme", "a", "failed", T0 - 50)]
    for tenant, agent, status, at in outcomes:
        run, _ = store.create_run(NewRun(tenant_id=tenant, agent=agent, input="x"), now=at)
        store.transition_run(tenant, run.id, status, allowed_from={"queued"}, now=at)
    store.create_run(NewRun(tenant_id="acme", agent="a", input="still queued"), now=T0 + 1)

    # Of an agent the store keeps versions of, only its current version's runs.
    old = store.put_agent("acme", "c", {"name": "c"}, now=T0)
    new = store.put_agent("acme", "c", {"name": "c", "model": "m2"}, now=T0)
    for version, status in ((old.version, "failed"), (new.version, "succeeded"),
                            (None, "failed")):
        run, _ = store.create_run(NewRun(tenant_id="acme", agent="c", input="x",
                                         agent_version=version), now=T0 + 6)
        store.transition_run("acme", run.id, status, allowed_from={"queued"}, now=T0 + 6)

    found = store.agent_outcomes(since=T0, until=T0 + 10)
    assert [(o.tenant_id, o.agent, o.total, o.failed) for o in found] == [
        ("acme", "a", 3, 2), ("acme", "b", 1, 0), ("acme", "c", 2, 1), ("beta", "a", 1, 1)]


def test_signals_keep_each_observers_newest_and_drop_the_old(backends: Backends) -> None:
    store = backends.store
    for at in (T0, T0 + 5, T0 + 10):
        store.put_signals([SignalRecord(observer="one", at=at, name="queue.due", value=at - T0),
                           SignalRecord(observer="one", at=at, name="worker.in_use",
                                        subject="w", value=1)],
                          keep_after=T0 + 4)
    store.put_signals([SignalRecord(observer="two", at=T0 + 8, name="queue.due", value=3)],
                      keep_after=T0 + 4)

    newest = store.latest_signals(since=T0)
    assert [(s.observer, s.at, s.name, s.value) for s in newest] == [
        ("one", T0 + 10, "queue.due", 10.0), ("one", T0 + 10, "worker.in_use", 1.0),
        ("two", T0 + 8, "queue.due", 3.0)]
    assert [s.observer for s in store.latest_signals(since=T0 + 9)] == ["one", "one"]
    # Past the retention, all of observer two's and the older of one's are gone.
    store.put_signals([], keep_after=T0 + 9)
    assert [(s.observer, s.at) for s in store.latest_signals(since=T0 - 100)] == [
        ("one", T0 + 10), ("one", T0 + 10)]


def diagnosis(kind: str, subject: str = "", confidence: float = 0.7) -> DiagnosisRecord:
    return DiagnosisRecord(kind=kind, subject=subject, confidence=confidence,
                           summary=f"{kind} {subject}",
                           evidence=[{"signal": "x", "value": 1.0, "rule": ">= 1"}])


def test_diagnoses_open_refresh_clear_and_are_dropped_later(backends: Backends) -> None:
    store = backends.store
    held = store.note_diagnoses([diagnosis("worker_dead", "w1"), diagnosis("backlog_growing")],
                                now=T0, keep_after=T0 - 100)
    assert sorted((d.kind, d.subject) for d in held) == [("backlog_growing", ""),
                                                         ("worker_dead", "w1")]
    first = {d.kind: d for d in held}

    held = store.note_diagnoses([diagnosis("worker_dead", "w1", confidence=0.9)],
                                now=T0 + 1, keep_after=T0 - 100)
    [dead] = held
    assert dead.id == first["worker_dead"].id  # the same diagnosis, refreshed
    assert (dead.confidence, dead.first_seen, dead.last_seen) == (0.9, T0, T0 + 1)
    assert dead.evidence == [{"signal": "x", "value": 1.0, "rule": ">= 1"}]
    everything = store.list_diagnoses()
    backlog = next(d for d in everything if d.kind == "backlog_growing")
    assert backlog.cleared_at == T0 + 1 and backlog.last_seen == T0

    # It comes back: a new diagnosis, the cleared one stays on record.
    store.note_diagnoses([diagnosis("worker_dead", "w1"), diagnosis("backlog_growing")],
                         now=T0 + 2, keep_after=T0 - 100)
    kinds = [(d.kind, d.cleared_at is None) for d in store.list_diagnoses()]
    assert sorted(kinds) == [("backlog_growing", False), ("backlog_growing", True),
                             ("worker_dead", True)]
    # Those cleared before keep_after go (the first backlog_growing); open ones never do.
    store.note_diagnoses([], now=T0 + 3, keep_after=T0 + 2.5)
    assert store.list_diagnoses(open_only=True) == []
    assert sorted(d.kind for d in store.list_diagnoses()) == ["backlog_growing", "worker_dead"]
    store.note_diagnoses([], now=T0 + 4, keep_after=T0 + 3.5)
    assert store.list_diagnoses() == []
