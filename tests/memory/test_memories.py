"""What an agent's memory keeps, on a scripted stream of memories with the
real all-MiniLM-L6-v2: trivia refused with a reason, duplicates and
paraphrases merged, contradictions resolved by recency, recall ranked by
relevance and strength, TTL and decay pruned, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from homeo.backends import Backends
from homeo.llm.providers.minilm import MiniLM
from homeo.memory.agent_memory import open_agent_memory_store
from homeo.memory.embedder import Embedder
from homeo.memory.lifecycle import DAY, Policy, claim_of, strength, triage
from homeo.memory.memories import Memories
from homeo.memory.store import KnowledgeError

pytestmark = pytest.mark.slow  # loads the embedding model

# (text, the action expected, a word the reason must hold)
STREAM = [
    ("Hi there!", "refused", "greeting"),
    ("ok thanks", "refused", "greeting"),
    ("2024-05-01T09:30:00Z", "refused", "date or time"),
    ("It is 3:45 pm now", "refused", "date or time"),
    ("The AWS key for staging is AKIAIOSFODNN7EXAMPLE", "refused", "AWS_ACCESS_KEY_ID"),
    ("Paris rocks", "refused", "too short"),
    ("Dana Reyes leads the platform team", "stored", "new"),
    ("The deploy server is db-7 in Frankfurt", "stored", "new"),
    ("the deploy server was db-7 in Frankfurt.", "merged", "says again"),
    ("The user's favourite colour is blue", "stored", "new"),
    ("User's favorite color is blue", "merged", "near-duplicate"),
    ("The office wifi password rotates every Monday", "stored", "new"),
    ("The office wifi password changes each Monday", "merged", "near-duplicate"),
    ("The deploy server is now db-9 in Frankfurt", "superseded", "contradicts"),
    ("The user's favourite colour is green", "superseded", "contradicts"),
    ("The customer prefers email over phone calls", "stored", "new"),
    ("Backups of the billing database run nightly at 02:00 UTC", "stored", "new"),
]


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


def memories_on(backends: Backends, model: MiniLM, policy: Policy = Policy()) -> Memories:
    return Memories(open_agent_memory_store(backends), Embedder(model, "embedding"), policy)


def test_the_stream_keeps_only_what_is_new_and_says_why(backends: Backends,
                                                        minilm: MiniLM) -> None:
    memories = memories_on(backends, minilm)

    async def feed() -> list:
        return [await memories.remember("acme", "agent:desk", text, now=1000.0 + i)
                for i, (text, _, _) in enumerate(STREAM)]

    decisions = asyncio.run(feed())
    for (text, action, why), decision in zip(STREAM, decisions, strict=True):
        assert (decision.action, why in decision.reason) == (action, True), (text, decision)
    live = memories.store.list_memories("acme", "agent:desk")
    assert sorted(m.text for m in live) == sorted([
        "Dana Reyes leads the platform team",
        "The office wifi password rotates every Monday",
        "The deploy server is now db-9 in Frankfurt",
        "The user's favourite colour is green",
        "The customer prefers email over phone calls",
        "Backups of the billing database run nightly at 02:00 UTC",
    ])
    seen = {m.text: m.seen for m in live}
    assert seen["The office wifi password rotates every Monday"] == 2
    # The old claims are kept, marked with what replaced them.
    every = {m.text: m for m in memories.store.list_memories("acme", superseded=True)}
    blue = every["The user's favourite colour is blue"]
    assert blue.superseded_by == every["The user's favourite colour is green"].id
    assert blue.seen == 2  # the paraphrase was merged into it before green replaced it
    db7 = every["The deploy server is db-7 in Frankfurt"]
    assert db7.superseded_by == every["The deploy server is now db-9 in Frankfurt"].id

    recalled = asyncio.run(memories.recall("acme", "agent:desk", "which server do we deploy to?",
                                           3, now=2000.0))
    assert recalled[0].memory.text == "The deploy server is now db-9 in Frankfurt"
    assert all("db-7" not in hit.memory.text for hit in recalled)
    # Another scope, another tenant: nothing.
    assert asyncio.run(memories.recall("acme", "agent:other", "deploy server", now=2000.0)) == []
    assert asyncio.run(memories.recall("globex", None, "deploy server", now=2000.0)) == []


def test_recall_prefers_the_stronger_of_two_equal_matches(backends: Backends,
                                                          minilm: MiniLM) -> None:
    memories = memories_on(backends, minilm, Policy(half_life=10 * DAY))

    async def store() -> None:
        await memories.remember("acme", "run:r1", "The blue team owns the billing service",
                                importance=0.2, now=0.0)
        await memories.remember("acme", "run:r1", "The red team owns the billing service",
                                importance=1.0, now=0.0)

    asyncio.run(store())
    hits = asyncio.run(memories.recall("acme", "run:r1", "team owns billing service", 2,
                                       now=5 * DAY))
    assert [hit.memory.text for hit in hits][0] == "The red team owns the billing service"
    assert hits[0].strength > hits[1].strength
    # Recall used them: their decay starts again from now.
    assert {m.last_used_at for m in memories.store.list_memories("acme")} == {5 * DAY}


def test_ttl_and_decay_are_pruned_and_recall_never_returns_them(backends: Backends,
                                                                minilm: MiniLM) -> None:
    memories = memories_on(backends, minilm, Policy(half_life=10 * DAY, floor=0.05))

    async def store() -> None:
        await memories.remember("acme", "tenant", "The demo room is booked for the offsite",
                                ttl=2 * DAY, now=0.0)
        await memories.remember("acme", "tenant", "Somebody mentioned a picnic by the lake",
                                importance=0.1, now=0.0)
        await memories.remember("acme", "tenant", "The company was founded in Lisbon in 2011",
                                importance=1.0, now=0.0)

    asyncio.run(store())
    assert asyncio.run(memories.recall("acme", "tenant", "demo room booking", now=3 * DAY,
                                       touch=False))[0].memory.text != (
        "The demo room is booked for the offsite")
    pruned = asyncio.run(memories.prune(now=20 * DAY))
    assert (pruned.expired, pruned.decayed, pruned.superseded) == (1, 1, 0)
    assert [m.text for m in memories.store.list_memories("acme")] == [
        "The company was founded in Lisbon in 2011"]


def test_bad_importance_or_ttl_is_refused(backends: Backends, minilm: MiniLM) -> None:
    memories = memories_on(backends, minilm)
    with pytest.raises(KnowledgeError, match="importance"):
        asyncio.run(memories.remember("acme", "tenant", "The sky is blue today", importance=2))
    with pytest.raises(KnowledgeError, match="ttl"):
        asyncio.run(memories.remember("acme", "tenant", "The sky is blue today", ttl=0))


def test_the_rules_on_their_own() -> None:
    assert triage("Good morning everyone!") is not None
    assert triage("Monday 09:00") is not None
    assert triage("Standup is on Monday at 09:00") is None
    assert "too long" in (triage("word " * 1000) or "")
    claim = claim_of("The Deploy Server was db-7.")
    assert claim is not None and (claim.subject, claim.relation, claim.value) == (
        "deploy server", "is", "db 7")
    assert claim_of("Alice works for Globex") == claim_of("alice worked at globex")
    assert claim_of("Dana Reyes leads the platform team") is None
    assert strength(0.8, 0.0, 30 * DAY, Policy(half_life=30 * DAY)) == pytest.approx(0.4)
