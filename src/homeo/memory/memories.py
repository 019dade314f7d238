"""The agent memory verbs: remember (keeping only what is new), recall, prune.

`remember` applies homeo.memory.lifecycle's rules in order (refuse trivia,
resolve a contradicting claim by recency, merge a near-duplicate, else store)
and says what it did and why (`Decision`). `recall` ranks a scope's live
memories by full text and vectors fused (reciprocal rank fusion), weighted by
each memory's decayed strength, and marks the recalled ones used.

An agent reaches its memory through `ScopedMemory` (a tenant, a scope, a TTL),
which the worker puts in each run's context when the agent's YAML has
`memory:`; the `remember` and `recall` tools (homeo.tools.memory_tools) call it.

Two calls that store into one scope at the same moment may both store a
near-duplicate (each checks before the other wrote); the next consolidation
of that scope does not merge them after the fact.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from homeo.db.dialect import clock
from homeo.memory.agent_memory import AgentMemoryStore, Memory, NewMemory, Pruned
from homeo.memory.embedder import Embedder
from homeo.memory.fusion import reciprocal_rank_fusion
from homeo.memory.knowledge import MAX_K, query_terms
from homeo.memory.lifecycle import Policy, claim_of, strength, triage
from homeo.memory.store import KnowledgeError
from homeo.memory.vectors import FLOAT32, to_bytes

Action = Literal["stored", "merged", "superseded", "refused"]
ScopeKind = Literal["tenant", "agent", "user", "run"]
DEFAULT_IMPORTANCE = 0.5


class UserRequired(KnowledgeError):
    """The agent's memory is per user, and the run names no user."""


def scope_of(kind: ScopeKind, *, agent: str, run_id: str, user: str | None = None) -> str:
    """The stored scope of an agent's memory: the whole tenant, the agent, the
    person the run works for (`user`), or one run."""
    if kind == "tenant":
        return "tenant"
    if kind == "user":
        if not user:
            raise UserRequired(
                f"agent {agent!r} keeps memory per user (`memory: {{scope: user}}`), and the"
                " run names no user: submit it with one (`user` in POST /v1/runs,"
                " `homeo run --user NAME`)")
        return f"user:{user}"
    return f"agent:{agent}" if kind == "agent" else f"run:{run_id}"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    memory: Memory | None = None  # the memory stored, or merged into
    replaced: list[int] = field(default_factory=list)  # memories it superseded
    similarity: float | None = None  # to the memory it was compared with, if any

    def as_dict(self) -> dict[str, Any]:
        said: dict[str, Any] = {"action": self.action, "reason": self.reason}
        if self.memory is not None:
            said["memory_id"] = self.memory.id
        if self.replaced:
            said["replaced"] = self.replaced
        if self.similarity is not None:
            said["similarity"] = round(self.similarity, 3)
        return said


@dataclass(frozen=True, slots=True)
class Recalled:
    memory: Memory
    score: float  # fused relevance times (0.5 + 0.5 * strength)
    strength: float


class Memories:
    def __init__(self, store: AgentMemoryStore, embedder: Embedder,
                 policy: Policy = Policy()) -> None:
        self.store = store
        self.embedder = embedder
        self.policy = policy

    async def remember(self, tenant_id: str, scope: str, text: str, *,
                       importance: float = DEFAULT_IMPORTANCE, ttl: float | None = None,
                       now: float | None = None) -> Decision:
        """Store `text` in the scope if it says something new (lifecycle.py)."""
        if not 0 < importance <= 1:
            raise KnowledgeError(f"importance must be in (0, 1], got {importance}")
        if ttl is not None and ttl <= 0:
            raise KnowledgeError(f"ttl must be positive seconds, got {ttl}")
        text = " ".join(text.split())
        at = clock(now)
        refused = triage(text, self.policy)
        if refused is not None:
            return Decision("refused", refused)
        expires_at = None if ttl is None else at + ttl
        claim = claim_of(text)
        model = await self.embedder.identity()
        vector = (await self.embedder.embed([text]))[0]
        live = await asyncio.to_thread(self.store.live, tenant_id, scope, now=at)
        same = [i for i, (m, d) in enumerate(zip(live.model, live.dimensions, strict=True))
                if (m, d) == (model.name, model.dimensions)]
        similarity = np.zeros(len(live.ids), dtype=np.float32)
        if same:
            matrix = np.frombuffer(b"".join(live.vectors[i] for i in same), dtype=FLOAT32)
            similarity[same] = matrix.reshape(len(same), model.dimensions) @ vector
        best = int(np.argmax(similarity)) if len(live.ids) else None
        new = NewMemory(scope, text, claim.key if claim else None, importance, expires_at,
                        model.name, model.dimensions, to_bytes(vector))

        if claim is not None:  # rule 2: one value per subject, the newest wins
            about = [i for i, key in enumerate(live.subjects) if key == claim.key]
            for i in about:
                earlier = claim_of(live.texts[i])
                if earlier is not None and earlier.value == claim.value:
                    return await self._merge(tenant_id, live.ids[i], new, float(similarity[i]),
                                             at, f"says again what memory {live.ids[i]} says"
                                             f" about {claim.subject!r}")
            if about:
                return await self._replace(tenant_id, [live.ids[i] for i in about], new, at,
                                           claim.subject, None)
        if best is not None and similarity[best] >= self.policy.merge_similarity:
            score = float(similarity[best])
            other = claim_of(live.texts[best])
            if claim is not None and other is not None and other.value != claim.value:
                return await self._replace(tenant_id, [live.ids[best]], new, at,
                                           claim.subject, score)
            return await self._merge(tenant_id, live.ids[best], new, score, at,
                                     f"a near-duplicate of memory {live.ids[best]} (cosine"
                                     f" {score:.3f} >= {self.policy.merge_similarity})")
        stored = await asyncio.to_thread(self.store.insert, tenant_id, new, now=at)
        return Decision("stored", "new to this scope", stored,
                        similarity=None if best is None else float(similarity[best]))

    async def _merge(self, tenant_id: str, memory_id: int, new: NewMemory, score: float,
                     at: float, reason: str) -> Decision:
        merged = await asyncio.to_thread(
            lambda: self.store.reinforce(tenant_id, memory_id, importance=new.importance,
                                         expires_at=new.expires_at, now=at))
        if merged is None:  # deleted meanwhile: what it said is new again
            stored = await asyncio.to_thread(self.store.insert, tenant_id, new, now=at)
            return Decision("stored", "new to this scope", stored)
        return Decision("merged", reason, merged, similarity=score)

    async def _replace(self, tenant_id: str, old: list[int], new: NewMemory, at: float,
                       subject: str, score: float | None) -> Decision:
        stored = await asyncio.to_thread(self.store.insert, tenant_id, new, now=at)
        await asyncio.to_thread(lambda: self.store.supersede(tenant_id, old, stored.id, now=at))
        listed = ", ".join(str(i) for i in old)
        return Decision("superseded", f"contradicts memory {listed} about {subject!r}: the"
                        " newer claim wins, the older is marked superseded", stored,
                        replaced=old, similarity=score)

    async def recall(self, tenant_id: str, scope: str | None, query: str, k: int = 5, *,
                     now: float | None = None, touch: bool = True) -> list[Recalled]:
        """The `k` live memories of the scope (None: every scope of the tenant)
        that best match `query`; with `touch`, they count as used now."""
        if not query.strip():
            raise KnowledgeError("the query is empty: say what to recall")
        if not 1 <= k <= MAX_K:
            raise KnowledgeError(f"k must be between 1 and {MAX_K}, got {k}")
        at = clock(now)
        wanted = max(k, 50)
        text = await asyncio.to_thread(lambda: self.store.text_search(
            tenant_id, scope, query_terms(query), wanted, now=at))
        live = await asyncio.to_thread(self.store.live, tenant_id, scope, now=at)
        model = await self.embedder.identity()
        same = [i for i, (m, d) in enumerate(zip(live.model, live.dimensions, strict=True))
                if (m, d) == (model.name, model.dimensions)]
        vector: list[int] = []
        if same:
            matrix = np.frombuffer(b"".join(live.vectors[i] for i in same), dtype=FLOAT32)
            scores = matrix.reshape(len(same), model.dimensions) @ (
                await self.embedder.embed_query(query))
            order = np.argsort(-scores, kind="stable")[:wanted]
            vector = [live.ids[same[int(row)]] for row in order]
        fused = reciprocal_rank_fusion([[i for i, _ in text], vector])
        found = {m.id: m for m in await asyncio.to_thread(
            self._memories, tenant_id, [i for i, _ in fused])}
        ranked = []
        for memory_id, relevance in fused:
            memory = found.get(memory_id)
            if memory is None:
                continue
            power = strength(memory.importance, memory.last_used_at, at, self.policy)
            ranked.append(Recalled(memory, relevance * (0.5 + 0.5 * power), power))
        ranked.sort(key=lambda hit: -hit.score)
        ranked = ranked[:k]
        if touch and ranked:
            await asyncio.to_thread(lambda: self.store.touch(
                tenant_id, [hit.memory.id for hit in ranked], now=at))
        return ranked

    def _memories(self, tenant_id: str, ids: list[int]) -> list[Memory]:
        return [m for m in (self.store.get(tenant_id, i) for i in ids) if m is not None]

    async def prune(self, *, now: float | None = None) -> Pruned:
        """Delete what expired, decayed under the floor, or was superseded long enough ago."""
        policy = self.policy
        return await asyncio.to_thread(lambda: self.store.prune(
            floor=policy.floor, half_life=policy.half_life,
            superseded_grace=policy.superseded_grace, now=now))

    def scoped(self, tenant_id: str, scope: str, *, ttl: float | None = None,
               importance: float = DEFAULT_IMPORTANCE) -> ScopedMemory:
        return ScopedMemory(self, tenant_id, scope, ttl, importance)


@dataclass(frozen=True, slots=True)
class ScopedMemory:
    """One run's memory: its tenant and scope fixed, as the agent's YAML says
    (homeo.tools.context.MemoryAccess)."""

    memories: Memories
    tenant_id: str
    scope: str
    ttl: float | None = None
    importance: float = DEFAULT_IMPORTANCE

    async def remember(self, text: str, importance: float | None = None) -> dict[str, Any]:
        decision = await self.memories.remember(
            self.tenant_id, self.scope, text,
            importance=self.importance if importance is None else importance, ttl=self.ttl)
        return decision.as_dict()

    async def recall(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        hits = await self.memories.recall(self.tenant_id, self.scope, query, k)
        return [{"memory_id": hit.memory.id, "text": hit.memory.text,
                 "importance": hit.memory.importance, "score": round(hit.score, 4)}
                for hit in hits]
