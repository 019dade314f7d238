"""Embeddings for knowledge, through a model alias (out of the box `embedding`:
all-MiniLM-L6-v2 in process), so the router's retries, breakers and fallbacks
apply as for any model call.

Texts go to the model in batches. Every vector is normalised to length 1.
The model's name and dimension are learnt from its first answer and checked
on every answer after: a fallback deployment that makes other vectors is
refused (`EmbeddingMismatch`), never mixed in. Queries are cached in process
by content hash; chunk vectors are cached by the store (a chunk whose text
the tenant already embedded with this model is not embedded again)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict

import numpy as np

from homeo.llm.base import Model, Usage
from homeo.memory.store import EmbeddingMismatch, EmbeddingModel
from homeo.memory.vectors import normalized


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Embedder:
    def __init__(self, model: Model, alias: str, *, batch_size: int = 64,
                 query_cache: int = 1024) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.alias = alias
        self.batch_size = batch_size
        self.usage = Usage()  # what every call so far used
        self._known: EmbeddingModel | None = None
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache = query_cache
        self._probe = asyncio.Lock()

    async def identity(self) -> EmbeddingModel:
        """The model's name and dimension: from its first answer, or one short probe."""
        if self._known is None:
            async with self._probe:
                if self._known is None:
                    await self.embed(["dimension probe"])
        assert self._known is not None
        return self._known

    async def embed(self, texts: list[str]) -> np.ndarray:
        """One normalised float32 row per text, in order."""
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            made = await self.model.embed(texts[start:start + self.batch_size])
            self.usage = self.usage + made.usage
            matrix = normalized(np.asarray(made.vectors, dtype=np.float32))
            self._check(EmbeddingModel(made.model or self.alias, int(matrix.shape[1])))
            rows.append(matrix)
        if not rows:
            return np.empty((0, 0), dtype=np.float32)
        return np.concatenate(rows)

    async def embed_query(self, text: str) -> np.ndarray:
        key = content_hash(text)
        cached = self._queries.get(key)
        if cached is not None:
            self._queries.move_to_end(key)
            return cached
        vector = (await self.embed([text]))[0]
        self._queries[key] = vector
        if len(self._queries) > self._query_cache:
            self._queries.popitem(last=False)
        return vector

    def _check(self, seen: EmbeddingModel) -> None:
        if self._known is None:
            self._known = seen
        elif seen != self._known:
            raise EmbeddingMismatch(
                f"the {self.alias!r} alias answered with {seen.name} ({seen.dimensions}"
                f" dimensions) after {self._known.name} ({self._known.dimensions}): its"
                " deployments make different vectors. Give the alias deployments of one"
                " embedding model (HOMEO_MODELS)")
