"""A second real embedding model for tests: words hashed into 64 dimensions
(the hashing trick), so tests can change the embedding model and see homeo
refuse to mix its vectors with minilm's."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from homeo.llm.base import Embeddings, Message, Model, ModelError, ModelResponse, ToolSpec, Usage

DIMENSIONS = 64


class HashingEmbedder(Model):
    name = "hashing"

    async def request(self, messages: list[Message], tools: list[ToolSpec] | None = None, *,
                      max_tokens: int | None = None, temperature: float | None = None,
                      json_schema: dict[str, Any] | None = None) -> ModelResponse:
        raise ModelError("hashing makes embeddings only")

    async def embed(self, texts: list[str]) -> Embeddings:
        vectors = []
        for text in texts:
            vector = [0.0] * DIMENSIONS
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.sha256(word.encode()).digest()
                vector[digest[0] % DIMENSIONS] += 1.0 if digest[1] % 2 else -1.0
            vectors.append(vector)
        words = sum(len(text.split()) for text in texts)
        return Embeddings(vectors=vectors, usage=Usage(input_tokens=words), model="hashing-64")
