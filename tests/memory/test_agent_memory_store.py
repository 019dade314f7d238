"""The agent memory store's contract, on SQLite and PostgreSQL: rows with
vectors and full text per tenant and scope, merging, superseding, expiry,
and pruning that really deletes (the row, its vector, its full-text entry)."""

from __future__ import annotations

import numpy as np

from homeo.backends import Backends
from homeo.memory.agent_memory import AgentMemoryStore, NewMemory, open_agent_memory_store
from homeo.memory.vectors import to_bytes

DAY = 86400.0


def new(text: str, scope: str = "agent:a", *, importance: float = 0.5,
        expires_at: float | None = None, subject: str | None = None) -> NewMemory:
    vector = np.zeros(4, dtype=np.float32)
    vector[len(text) % 4] = 1.0
    return NewMemory(scope, text, subject, importance, expires_at, "m", 4, to_bytes(vector))


def store_of(backends: Backends) -> AgentMemoryStore:
    return open_agent_memory_store(backends)


def test_a_memory_is_stored_found_by_text_and_vector_and_listed(backends: Backends) -> None:
    store = store_of(backends)
    made = store.insert("acme", new("The deploy server is in Frankfurt"), now=100.0)
    assert made.text == "The deploy server is in Frankfurt" and made.seen == 1
    assert made.created_at == made.last_used_at == 100.0 and made.superseded_by is None
    assert store.text_search("acme", "agent:a", ["frankfurt"], 5, now=101.0)[0][0] == made.id
    assert store.text_search("acme", "agent:b", ["frankfurt"], 5, now=101.0) == []
    live = store.live("acme", "agent:a", now=101.0)
    assert live.ids == [made.id] and len(live.vectors[0]) == 16
    assert [m.id for m in store.list_memories("acme")] == [made.id]
    assert store.list_memories("acme", "agent:b") == []


def test_tenants_never_see_each_others_memories(backends: Backends) -> None:
    store = store_of(backends)
    made = store.insert("acme", new("Acme ships anvils by rail"), now=1.0)
    assert store.get("globex", made.id) is None
    assert store.list_memories("globex") == []
    assert store.text_search("globex", None, ["anvils"], 5, now=2.0) == []
    assert store.live("globex", None, now=2.0).ids == []
    assert store.reinforce("globex", made.id, importance=1.0, expires_at=None) is None
    store.supersede("globex", [made.id], by=999)
    store.touch("globex", [made.id], now=50.0)
    assert not store.delete("globex", made.id)
    kept = store.get("acme", made.id)
    assert kept is not None and kept.superseded_by is None and kept.last_used_at == 1.0


def test_reinforcing_keeps_the_higher_importance_and_later_expiry(backends: Backends) -> None:
    store = store_of(backends)
    made = store.insert("acme", new("Backups run nightly at two", importance=0.8,
                                    expires_at=500.0), now=1.0)
    merged = store.reinforce("acme", made.id, importance=0.3, expires_at=900.0, now=10.0)
    assert merged is not None
    assert (merged.seen, merged.importance, merged.expires_at) == (2, 0.8, 900.0)
    assert merged.last_used_at == 10.0 and merged.created_at == 1.0
    forever = store.reinforce("acme", made.id, importance=0.9, expires_at=None, now=11.0)
    assert forever is not None and forever.expires_at is None and forever.importance == 0.9


def test_superseded_and_expired_memories_are_not_live(backends: Backends) -> None:
    store = store_of(backends)
    old = store.insert("acme", new("The release branch is r41"), now=1.0)
    newer = store.insert("acme", new("The release branch is r42"), now=2.0)
    store.supersede("acme", [old.id], by=newer.id, now=3.0)
    brief = store.insert("acme", new("The standup moved to noon", expires_at=50.0), now=4.0)
    assert store.live("acme", "agent:a", now=10.0).ids == [newer.id, brief.id]
    assert store.live("acme", "agent:a", now=60.0).ids == [newer.id]
    assert [i for i, _ in store.text_search("acme", None, ["release"], 5, now=10.0)] == [newer.id]
    assert store.text_search("acme", None, ["standup"], 5, now=60.0) == []
    replaced = store.get("acme", old.id)
    assert replaced is not None and (replaced.superseded_by, replaced.superseded_at) == (
        newer.id, 3.0)
    assert [m.id for m in store.list_memories("acme", superseded=True)] == [
        brief.id, newer.id, old.id]


def test_pruning_deletes_rows_vectors_and_full_text(backends: Backends) -> None:
    store = store_of(backends)
    expired = store.insert("acme", new("The wifi code changes weekly", expires_at=10.0), now=0.0)
    faded = store.insert("globex", new("Someone mentioned a picnic", importance=0.1), now=0.0)
    kept = store.insert("acme", new("The CEO is Dana Reyes", importance=1.0), now=0.0)
    old = store.insert("acme", new("The office is in Leeds"), now=0.0)
    newer = store.insert("acme", new("The office is in York"), now=1.0)
    store.supersede("acme", [old.id], by=newer.id, now=1.0)
    # 20 days: 0.1 has decayed under 0.05 (half-life 10 days), 1.0 and 0.5 have not.
    pruned = store.prune(floor=0.05, half_life=10 * DAY, superseded_grace=7 * DAY,
                         now=20 * DAY)
    assert (pruned.expired, pruned.decayed, pruned.superseded) == (1, 1, 1)
    for tenant, gone in [("acme", expired), ("globex", faded), ("acme", old)]:
        assert store.get(tenant, gone.id) is None
    assert {m.id for m in store.list_memories("acme", superseded=True)} == {kept.id, newer.id}
    # The full-text entries went with the rows: nothing matches their words.
    for word in ["wifi", "picnic", "leeds"]:
        assert store.text_search("acme", None, [word], 5, now=0.0) == []
        assert store.text_search("globex", None, [word], 5, now=0.0) == []
    with backends.shared.read() as db:
        rows = db.execute("SELECT COUNT(*) AS n FROM agent_memories").fetchone()
    assert rows["n"] == 2
    if backends.url.startswith("sqlite"):
        with backends.shared.read() as db:
            fts = db.execute("SELECT COUNT(*) AS n FROM agent_memories_terms").fetchone()
        assert fts["n"] == 2
    assert store.prune(floor=0.05, half_life=10 * DAY, superseded_grace=7 * DAY,
                       now=20 * DAY).total == 0


def test_a_deleted_memory_is_gone_with_its_full_text(backends: Backends) -> None:
    store = store_of(backends)
    made = store.insert("acme", new("The on-call phone is orange"), now=1.0)
    assert store.delete("acme", made.id)
    assert not store.delete("acme", made.id)
    assert store.get("acme", made.id) is None
    assert store.text_search("acme", None, ["orange"], 5, now=2.0) == []
