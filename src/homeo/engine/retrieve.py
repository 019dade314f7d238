"""Retrieval-augmented answering: a step that puts the chunks of the agent's
collections most relevant to the task into the model's context, numbered,
with their sources, before the first model turn.

    knowledge: {collections: [handbook, faq], k: 4}   # mode: hybrid | text | vector

The `retrieve` step runs first (visible in the run's steps): it searches each
collection for the run's task (homeo.memory.knowledge, the tenant's own
collections only), fuses the lists by reciprocal rank, keeps the best `k`,
and adds them to the system prompt as `[1] Title (source, part n)` blocks
with the instruction to cite them by number. Its output lists the sources,
and `RunState.data["sources"]` keeps them for the rest of the run, so an
answer's `[1]` can be followed back to the document and chunk it came from.
A collection that does not exist (yet) adds nothing and is named in the
output under `missing`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from homeo.engine.errors import RetryableError, RunFailed
from homeo.engine.graph import Graph, Node, Outcome, RunContext, RunState
from homeo.engine.react import task_of
from homeo.llm.base import Message, ModelError

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RETRIEVE_NODE = "retrieve"
RRF_K = 60
CITE = ("Answer from these sources when they help, and cite each source you use by its"
        " number in brackets, like [1]. If they do not hold the answer, say so.")


class KnowledgePolicy(BaseModel):
    """Which collections an agent answers from, and how many chunks it is given."""

    model_config = ConfigDict(extra="forbid")
    collections: list[str] = Field(min_length=1, max_length=8)
    k: int = Field(4, ge=1, le=20)
    mode: Literal["hybrid", "text", "vector"] = "hybrid"
    # Characters of each chunk shown to the model (a small model's context is short).
    max_chars: int = Field(1500, ge=100, le=20_000)

    def model_post_init(self, __context: Any) -> None:
        import re

        for name in self.collections:
            if not re.fullmatch(COLLECTION_PATTERN, name):
                raise ValueError(f"collection name {name!r} is not allowed: use 1 to 64"
                                 " letters, digits, '.', '_' or '-', starting with a letter"
                                 " or digit")


class RetrieveNode(Node):
    kind = "retrieve"

    def __init__(self, policy: KnowledgePolicy, then: str, name: str = RETRIEVE_NODE) -> None:
        super().__init__(name)
        self.policy = policy
        self.then = then

    def describe(self, state: RunState) -> Any:
        return {"query": task_of(state), "collections": self.policy.collections,
                "k": self.policy.k}

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        from homeo.memory.store import CollectionNotFound, KnowledgeError

        if context.knowledge is None:
            raise RunFailed("this agent answers from collections (knowledge:), but the worker"
                            " has no knowledge store: set HOMEO_MEMORY_EMBEDDING_MODEL to an"
                            " embedding model alias")
        query = task_of(state)
        rankings: list[list[Any]] = []
        missing: list[str] = []
        for collection in self.policy.collections:
            try:
                hits = await context.knowledge.search(context.tenant_id, collection, query,
                                                      self.policy.k, self.policy.mode)
            except CollectionNotFound:
                missing.append(collection)
                continue
            except KnowledgeError as error:
                raise RunFailed(f"knowledge: collection {collection!r}: {error}") from error
            except ModelError as error:
                if error.retryable:
                    raise RetryableError(f"knowledge: embedding the task: {error}") from error
                raise RunFailed(f"knowledge: embedding the task: {error}") from error
            rankings.append([(collection, hit) for hit in hits])
        chosen = _fuse(rankings)[: self.policy.k]
        sources = [_source(n, collection, hit) for n, (collection, hit) in
                   enumerate(chosen, start=1)]
        messages = list(state.messages)
        if chosen:
            block = "\n\n".join(
                f"[{source['n']}] {_label(source)}\n{hit.chunk.text[: self.policy.max_chars]}"
                for source, (_, hit) in zip(sources, chosen, strict=True))
            added = f"Sources:\n\n{block}\n\n{CITE}"
            if messages and messages[0].role == "system":
                messages[0] = Message(role="system", content=f"{messages[0].content}\n\n{added}")
            else:
                messages.insert(0, Message(role="system", content=added))
        new = state.model_copy(update={"messages": messages,
                                       "data": {**state.data, "sources": sources}})
        output: dict[str, Any] = {"query": query, "sources": sources}
        if missing:
            output["missing"] = missing
        return Outcome(output=output, state=new, next=self.then)


def _fuse(rankings: list[list[Any]]) -> list[Any]:
    """The collections' lists fused by reciprocal rank, best first."""
    scores: dict[tuple[str, int], float] = {}
    items: dict[tuple[str, int], Any] = {}
    for ranking in rankings:
        for rank, (collection, hit) in enumerate(ranking, start=1):
            key = (collection, hit.chunk.id)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            items[key] = (collection, hit)
    return [items[key] for key in sorted(scores, key=lambda key: -scores[key])]


def _source(n: int, collection: str, hit: Any) -> dict[str, Any]:
    chunk = hit.chunk
    return {"n": n, "collection": collection, "document_id": chunk.document_id,
            "title": chunk.title, "source": chunk.source, "position": chunk.position,
            "chunk_id": chunk.id, "start": chunk.start, "end": chunk.end}


def _label(source: dict[str, Any]) -> str:
    where = ", ".join(str(part) for part in (source["source"],) if part)
    title = source["title"] or source["document_id"]
    part = f"part {source['position'] + 1}"
    return f"{title} ({where}, {part})" if where else f"{title} ({part})"


def with_retrieval(graph: Graph, policy: KnowledgePolicy) -> Graph:
    """`graph` with a retrieve step before its start."""
    if RETRIEVE_NODE in graph.nodes:
        raise ValueError(f"the graph already has a node named {RETRIEVE_NODE!r}; rename it"
                         " to use knowledge:")
    node = RetrieveNode(policy, then=graph.start)
    return Graph(nodes={RETRIEVE_NODE: node, **graph.nodes}, start=RETRIEVE_NODE)
