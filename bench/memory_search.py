"""Knowledge search at scale: P50/P99 of full-text, exact-vector, approximate
(HNSW) and hybrid search at 10k and 100k chunks on SQLite, the approximate
index's recall@10 against exact search, and minilm's embedding throughput.

The chunks are synthetic and seeded: 60 words each from a Zipf-distributed
vocabulary of 20,000 made-up words, and 384-dimensional unit vectors, not
minilm's (embedding 100k chunks would take about 20 minutes here), of two
kinds, both clustered by topic (one topic per 100 chunks):

- `realistic`: as sentence embeddings are, each topic's chunks vary along a
  few directions of their own (a centre plus a 16-dimensional topic subspace,
  spread 0.15 a direction, isotropic noise 0.01 a dimension): text about one
  thing differs in a few ways, not in all 384. Queries are new draws of the
  same kind (a topic, a point in its subspace), not copies of chunks.
- `isotropic` (the worst case, this bench's only kind before): centre plus
  Gaussian noise 0.6 in every one of the 384 dimensions, queries a random
  chunk plus noise 0.3 a dimension. Every chunk of a topic is then about as
  far from a query as every other, the case approximate indexes do worst on.

Queries are 3 words of the same vocabulary and a vector. Each search is what
`Knowledge.search` does after the query is embedded: rank (FTS5 bm25 over at
most 1000 matches; numpy dot product over the in-process matrix, or the HNSW
index where the collection has one; both, 50 candidates each, fused by RRF),
then read the 10 chunks' text and document. Hybrid here runs the two rankings
one after the other (in `Knowledge` full text runs on a thread while the query
is embedded), and uses HNSW where `Knowledge` would (from 20,000 chunks,
homeo.memory.vectors.ANN_MIN).
The baselines, in the same run: a bare FTS5 `MATCH ... ORDER BY rank LIMIT
10` on the same table, and a bare numpy matrix-vector product with
argpartition. Query embedding is timed apart (minilm, one text).

The filled databases are kept in --cache (a second run skips filling); the
HNSW index is built again each run, as a restarted server builds it.

    .venv/bin/python bench/memory_search.py
    .venv/bin/python bench/memory_search.py --sizes 10000 --queries 100 --vectors realistic
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import numpy as np
from _common import machine, table

from homeo.backends import open_backends
from homeo.memory.embedder import Embedder, content_hash
from homeo.memory.fusion import HYBRID_K, HYBRID_TEXT_WEIGHT, reciprocal_rank_fusion
from homeo.memory.knowledge import query_terms
from homeo.memory.store import EmbeddingModel, NewChunk, NewDocument, open_store
from homeo.memory.vectors import FLOAT32, ApproximateIndex, VectorIndex, normalized, top_k

DIMENSIONS = 384
WORDS_PER_CHUNK = 60
CHUNKS_PER_DOCUMENT = 1000
MODEL = EmbeddingModel("random-unit", DIMENSIONS)
EVAL_DOCS = Path(__file__).parent.parent / "tests" / "memory" / "data" / "eval_docs.json"
CACHE = Path("/tmp/homeo-bench-cache/memory_search")


def vocabulary(rng: np.random.Generator, size: int = 20_000) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, rng.integers(4, 10))) for _ in range(size)]


def zipf_words(rng: np.random.Generator, words: list[str], count: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, count), len(words)) - 1
    return [words[rank] for rank in ranks]


TOPIC_SIZE = 100  # chunks per topic
LATENT = 16  # the directions a realistic topic's chunks vary along


class Vectors:
    """Seeded unit vectors of one kind: `chunks(n)` for the collection, then
    `queries(n)` near them (see the module's docstring)."""

    def __init__(self, kind: str, rng: np.random.Generator, size: int) -> None:
        self.kind = kind
        self.rng = rng
        topics = max(1, size // TOPIC_SIZE)
        self.centres = rng.standard_normal((topics, DIMENSIONS)).astype(np.float32)
        if kind == "realistic":
            self.centres = normalized(self.centres)
            self.bases = (rng.standard_normal((topics, LATENT, DIMENSIONS)) / np.sqrt(LATENT)
                          ).astype(np.float32)
        self.matrix = np.empty((0, DIMENSIONS), dtype=np.float32)

    def _draw(self, count: int) -> np.ndarray:
        rng = self.rng
        which = rng.integers(0, len(self.centres), count)
        if self.kind == "isotropic":
            noise = 0.6 * rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
            return normalized(self.centres[which] + noise)
        spread = 0.15 * rng.standard_normal((count, LATENT)).astype(np.float32)
        out = self.centres[which] + 0.01 * rng.standard_normal((count, DIMENSIONS)
                                                                ).astype(np.float32)
        for topic in np.unique(which):  # one topic at a time: n x 16 x 384 would not fit
            rows = which == topic
            out[rows] += spread[rows] @ self.bases[topic]
        return normalized(out)

    def chunks(self, count: int) -> np.ndarray:
        self.matrix = self._draw(count)
        return self.matrix

    def queries(self, count: int) -> np.ndarray:
        if self.kind == "realistic":
            return self._draw(count)
        near = self.matrix[self.rng.integers(0, len(self.matrix), count)]
        return normalized(near + 0.3 * self.rng.standard_normal((count, DIMENSIONS)
                                                                ).astype(np.float32))


def fill(store, rng: np.random.Generator, words: list[str], vectors: np.ndarray) -> None:
    for first in range(0, len(vectors), CHUNKS_PER_DOCUMENT):
        pieces = []
        for index in range(first, min(first + CHUNKS_PER_DOCUMENT, len(vectors))):
            text = " ".join(zipf_words(rng, words, WORDS_PER_CHUNK))
            pieces.append(NewChunk(index - first, text, 0, len(text), content_hash(text),
                                   vectors[index].astype(FLOAT32).tobytes()))
        body = "\n\n".join(piece.text for piece in pieces)
        store.put_document("bench", "kb", NewDocument(None, None, "text", body,
                                                      content_hash(body)), pieces, MODEL)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1000,
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000)


def measure(kind: str, size: int, queries: int, seed: int, cache: Path) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    words = vocabulary(rng)
    vectors = Vectors(kind, rng, size)
    matrix = vectors.chunks(size)
    path = cache / f"{kind}-{size}-{seed}.db"
    done = path.with_suffix(".filled")  # written once the fill committed
    if not done.exists():
        for stale in cache.glob(f"{path.name}*"):
            stale.unlink()
    backends = open_backends(f"sqlite:///{path}")
    store = open_store(backends)
    started = time.perf_counter()
    if not done.exists():
        fill(store, rng, words, matrix)
        done.write_text("filled\n")
    filled = time.perf_counter() - started
    index = VectorIndex(background=False, threads=2)  # the build on both cores: runs are short
    version = store.collection_version("bench", "kb")
    started = time.perf_counter()
    loaded = index.load("bench", "kb", store.vector_table("bench", "kb"))
    load_seconds = time.perf_counter() - started
    assert loaded is not None
    approximate = loaded.approximate
    if approximate is None:  # under ANN_MIN: Knowledge would not build one; the bench does
        approximate = ApproximateIndex(DIMENSIONS, threads=2)
        approximate.sync(loaded)
    asks = list(zip((" ".join(zipf_words(rng, words, 3)) for _ in range(queries)),
                    vectors.queries(queries), strict=True))
    database = backends.shared

    def text(query: str, vector: np.ndarray) -> object:
        found = store.text_search("bench", "kb", query_terms(query), 10)
        return store.get_chunks("bench", "kb", [i for i, _ in found])

    def exact(query: str, vector: np.ndarray) -> object:
        current = index.cached("bench", "kb", store.collection_version("bench", "kb"))
        found = current.exact(vector, 10)
        return store.get_chunks("bench", "kb", [i for i, _ in found])

    def ann(query: str, vector: np.ndarray) -> object:
        index.cached("bench", "kb", store.collection_version("bench", "kb"))
        found = approximate.search(vector, 10)
        return store.get_chunks("bench", "kb", [i for i, _ in found])

    def hybrid(query: str, vector: np.ndarray) -> object:
        current = index.cached("bench", "kb", store.collection_version("bench", "kb"))
        by_text = store.text_search("bench", "kb", query_terms(query), 50)
        by_vector = current.search(vector, 50)
        fused = reciprocal_rank_fusion([[i for i, _ in by_text], [i for i, _ in by_vector]],
                                       HYBRID_K, (HYBRID_TEXT_WEIGHT, 1.0))
        return store.get_chunks("bench", "kb", [i for i, _ in fused[:10]])

    with database.read() as db:  # the collection's own FTS5 table
        fts = db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'memory_terms_%'"
                         " AND sql LIKE 'CREATE VIRTUAL TABLE%'").fetchone()[0]

    def bare_fts(query: str, vector: np.ndarray) -> object:
        match = " OR ".join(f'"{term}"' for term in query_terms(query))
        with database.read() as db:
            return db.execute(f"SELECT rowid FROM {fts} WHERE {fts} MATCH ?"
                              " ORDER BY rank LIMIT 10", (match,)).fetchall()

    def bare_numpy(query: str, vector: np.ndarray) -> object:
        return top_k(loaded.matrix, vector, 10)

    calls = {"full text": text, "bare FTS5 MATCH (unbounded)": bare_fts,
             "exact vectors": exact, "bare numpy top-k": bare_numpy,
             f"ANN (HNSW, M {approximate.m}, ef {approximate.ef_for(10)})": ann,
             "hybrid (RRF)": hybrid}
    timings: dict[str, list[float]] = {name: [] for name in calls}
    recall = [len({i for i, _ in approximate.search(vector, 10)}
                  & {i for i, _ in loaded.exact(vector, 10)}) / 10 for _, vector in asks]
    assert version is not None
    for query, vector in asks[:10]:  # warm the caches
        for call in calls.values():
            call(query, vector)
    for query, vector in asks:  # alternate, so machine noise hits all alike
        for name, call in calls.items():
            started = time.perf_counter()
            call(query, vector)
            timings[name].append(time.perf_counter() - started)
    backends.close()
    rows = []
    for name, samples in timings.items():
        p50, p99 = percentiles(samples)
        rows.append([kind, f"{size:,}", name, f"{p50:.2f}", f"{p99:.2f}"])
    rows.append([kind, f"{size:,}", f"ANN recall@10 against exact: {np.mean(recall):.3f}",
                 "", ""])
    fill_note = f"filled in {filled:.0f} s" if filled > 1 else "filled before (cached)"
    rows.append([kind, f"{size:,}", f"({fill_note}; vectors loaded and HNSW built in"
                 f" {load_seconds:.0f} s)", "", ""])
    return rows


async def embedding_rate(texts: int) -> tuple[float, float, float]:
    """Chunks per second through `Embedder.embed` (minilm, batches of 64),
    and P50 / P99 ms of one query text."""
    from homeo.llm.providers.minilm import MiniLM

    samples = [text for text in json.loads(EVAL_DOCS.read_text()).values()]
    chunks = [f"{samples[i % len(samples)]} ({i})" for i in range(texts)]
    embedder = Embedder(MiniLM(), "embedding")
    await embedder.embed(chunks[:64])  # load the weights
    started = time.perf_counter()
    await embedder.embed(chunks)
    rate = texts / (time.perf_counter() - started)
    single = []
    for index in range(100):
        started = time.perf_counter()
        await embedder.embed([f"how do I fix error E40{index:02d} on my dishwasher"])
        single.append(time.perf_counter() - started)
    p50, p99 = percentiles(single)
    return rate, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--embed", type=int, default=512, help="chunks embedded for the rate")
    parser.add_argument("--vectors", nargs="+", choices=["realistic", "isotropic"],
                        default=["realistic", "isotropic"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="where filled databases are kept between runs")
    arguments = parser.parse_args()
    arguments.cache.mkdir(parents=True, exist_ok=True)
    print(machine())
    rows = []
    for kind in arguments.vectors:
        for size in arguments.sizes:
            rows += measure(kind, size, arguments.queries, arguments.seed, arguments.cache)
    print(table(["vectors", "chunks", "search (k=10, SQLite)", "P50 ms", "P99 ms"], rows))
    rate, p50, p99 = asyncio.run(embedding_rate(arguments.embed))
    print(f"minilm through Embedder.embed: {rate:.0f} chunks/s (eval-set chunks of"
          f" ~300 characters, batches of 64); one query: P50 {p50:.1f} ms, P99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
