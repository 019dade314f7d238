"""Choose hybrid search's fusion (RRF's k and the weight of the full-text
list) on one half of the labelled set in tests/memory/data, and report it on
the other half, which the choice never saw.

The split is fixed: a query goes to the tuning half when the sha256 of its
text is even, else to the held-out half. Each query's full-text and vector
rankings (50 candidates each, as `Knowledge.search` fuses) are computed once
with the real all-MiniLM-L6-v2; every (k, weight) on the grid then fuses
them and is scored by nDCG@10 over documents, ties broken by recall@10.

    .venv/bin/python bench/fusion_tuning.py
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import tempfile
from pathlib import Path

from _common import machine, table

from homeo.backends import open_backends
from homeo.llm.providers.minilm import MiniLM
from homeo.memory.embedder import Embedder
from homeo.memory.extract import from_text
from homeo.memory.fusion import reciprocal_rank_fusion
from homeo.memory.knowledge import Knowledge
from homeo.memory.store import open_store

DATA = Path(__file__).parent.parent / "tests" / "memory" / "data"
K_GRID = (5, 10, 20, 30, 60, 100)
WEIGHT_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def held_out(query: str) -> bool:
    return hashlib.sha256(query.encode()).digest()[-1] % 2 == 1


def scores(ranked: list[str], relevant: set[str]) -> tuple[float, float]:
    """(recall@10, nDCG@10) of a ranking of documents."""
    gain = sum(1 / math.log2(place + 2) for place, doc in enumerate(ranked[:10])
               if doc in relevant)
    ideal = sum(1 / math.log2(place + 2) for place in range(min(len(relevant), 10)))
    return len(relevant & set(ranked[:10])) / len(relevant), gain / ideal


async def rankings() -> list[tuple[dict, list[str], list[str], dict[int, str]]]:
    """Per query: (query, text ranking, vector ranking as chunk ids, chunk -> document)."""
    docs = json.loads((DATA / "eval_docs.json").read_text())
    queries = json.loads((DATA / "eval_queries.json").read_text())
    backends = open_backends(f"sqlite:///{tempfile.mkdtemp(prefix='homeo-fusion-')}/f.db")
    knowledge = Knowledge(open_store(backends), Embedder(MiniLM(), "embedding"))
    try:
        for name, text in docs.items():
            await knowledge.add("eval", "kb", from_text(text, "markdown"), source=name)
        found = []
        for query in queries:
            by_mode = {}
            sources: dict[int, str] = {}
            for mode in ("text", "vector"):
                hits = await knowledge.search("eval", "kb", query["q"], 50, mode)
                by_mode[mode] = [hit.chunk.id for hit in hits]
                sources.update((hit.chunk.id, hit.chunk.source) for hit in hits)
            found.append((query, by_mode["text"], by_mode["vector"], sources))
        return found
    finally:
        backends.close()


def evaluate(found, k: int | None, weight: float | None) -> tuple[float, float]:
    """Mean (recall@10, nDCG@10); k None: text alone (weight 1) or vectors alone (weight 0)."""
    pairs = []
    for query, text, vector, sources in found:
        if k is None:
            chunks = text if weight == 1 else vector
        else:
            chunks = [i for i, _ in reciprocal_rank_fusion([text, vector], k, (weight, 1.0))]
        ranked = list(dict.fromkeys(sources[i] for i in chunks))
        pairs.append(scores(ranked, set(query["relevant"])))
    return (sum(r for r, _ in pairs) / len(pairs), sum(n for _, n in pairs) / len(pairs))


def main() -> None:
    print(machine())
    found = asyncio.run(rankings())
    tuning = [row for row in found if not held_out(row[0]["q"])]
    test = [row for row in found if held_out(row[0]["q"])]
    grid = {(k, w): evaluate(tuning, k, w) for k in K_GRID for w in WEIGHT_GRID}
    best = max(grid, key=lambda kw: (grid[kw][1], grid[kw][0]))
    rows = []
    for name, (k, w) in (("full text alone", (None, 1)), ("vectors alone", (None, 0)),
                         ("hybrid, RRF k=60, equal weights (before)", (60, 1.0)),
                         (f"hybrid, RRF k={best[0]}, text weight {best[1]} (chosen)", best)):
        tune_r, tune_n = evaluate(tuning, k, w)
        test_r, test_n = evaluate(test, k, w)
        rows.append([name, f"{tune_r:.3f}", f"{tune_n:.3f}", f"{test_r:.3f}", f"{test_n:.3f}"])
    print(f"{len(tuning)} tuning queries, {len(test)} held out")
    print(table(["method", "tune recall@10", "tune nDCG@10", "held-out recall@10",
                 "held-out nDCG@10"], rows))


if __name__ == "__main__":
    main()
