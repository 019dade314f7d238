"""Resident memory of `homeo serve` with knowledge loaded, against the same
server idle, in one run.

One `homeo serve` (SQLite, no workers) is started on a fresh data dir, then:

1. idle: the server up, nothing searched yet (the baseline);
2. embedder loaded: one small document added through the API, which loads
   the `embedding` alias (ONNX Runtime by default; `--runtime
   sentence-transformers` for torch);
3. N chunks loaded: N more chunks of synthetic text and seeded unit vectors
   written straight into the store under the collection's own model (so
   nothing is embedded N times), then searched through the API until the
   server holds the collection's vectors (and, from 20,000 chunks, its HNSW
   index) in memory.

RSS is read from /proc/PID/status (VmRSS) of the server process after each
step.

    .venv/bin/python bench/serve_rss.py
    .venv/bin/python bench/serve_rss.py --chunks 10000,100000 --runtime sentence-transformers
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _common import free_port, machine, table

HOMEO = Path(sys.executable).with_name("homeo")
START_DEADLINE_SECONDS = 120.0
DIMENSIONS = 384


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start(data_dir: Path, runtime: str) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    env.update(HOMEO_EMBED_RUNTIME=runtime, HOMEO_LOG_LEVEL="warning")
    errors = (data_dir.parent / "serve.err").open("wb")
    process = subprocess.Popen(
        [str(HOMEO), "serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=errors)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"homeo serve did not start: {Path(errors.name).read_text()[-2000:]}")
        try:
            if client.get("/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    key = re.findall(r"hk_[0-9a-f]{16}_[A-Za-z0-9_-]+", Path(errors.name).read_text())[0]
    client.headers["authorization"] = f"Bearer {key}"
    return process, client


def fill(data_dir: Path, chunks: int, seed: int) -> None:
    """`chunks` synthetic chunks, in documents of 100, under the model the
    collection already has."""
    from homeo.backends import open_backends
    from homeo.memory.store import EmbeddingModel, NewChunk, NewDocument, open_store

    backends = open_backends(f"sqlite:///{data_dir / 'homeo.db'}")
    try:
        store = open_store(backends)
        collection = store.get_collection("default", "bench")
        assert collection is not None and collection.model and collection.dimensions
        model = EmbeddingModel(collection.model, collection.dimensions)
        rng = np.random.default_rng(seed)
        words = [f"w{n}" for n in range(20_000)]
        for start_at in range(0, chunks, 100):
            pieces, text_parts, offset = [], [], 0
            for position in range(min(100, chunks - start_at)):
                text = " ".join(rng.choice(words, 60))
                vector = rng.normal(size=collection.dimensions).astype(np.float32)
                vector /= np.linalg.norm(vector)
                digest = hashlib.sha256(text.encode()).hexdigest()
                pieces.append(NewChunk(position, text, offset, offset + len(text), digest,
                                       vector.astype("<f4").tobytes()))
                text_parts.append(text)
                offset += len(text) + 2
            body = "\n\n".join(text_parts)
            store.put_document("default", "bench",
                               NewDocument(f"doc {start_at}", f"doc-{start_at}", "text", body,
                                           hashlib.sha256(body.encode()).hexdigest()),
                               pieces, model)
    finally:
        backends.close()


def measure(chunks: int, runtime: str, seed: int) -> list[tuple[str, float]]:
    with tempfile.TemporaryDirectory(prefix="homeo-rss-") as folder:
        data_dir = Path(folder) / "data"
        process, client = start(data_dir, runtime)
        try:
            figures = [("idle (baseline)", rss_mib(process.pid))]
            added = client.post("/v1/collections/bench/documents",
                                json={"text": "The lighthouse keeper logs the lamp at dusk."})
            added.raise_for_status()
            figures.append(("embedder loaded", rss_mib(process.pid)))
            fill(data_dir, chunks, seed)
            for query in ("lighthouse lamp", "w17 w42", "keeper at dusk"):
                client.get("/v1/collections/bench/search",
                           params={"q": query, "k": 10}).raise_for_status()
            figures.append((f"{chunks:,} chunks searched", rss_mib(process.pid)))
            return figures
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", default="10000", help="comma-separated collection sizes")
    parser.add_argument("--runtime", default="auto",
                        choices=["auto", "onnx", "sentence-transformers"])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(machine())
    rows = []
    for chunks in [int(n) for n in args.chunks.split(",")]:
        figures = measure(chunks, args.runtime, args.seed)
        idle = figures[0][1]
        rows += [[chunks, step, f"{rss:.0f}", f"{rss - idle:+.0f}"] for step, rss in figures]
    print(f"homeo serve, HOMEO_EMBED_RUNTIME={args.runtime}")
    print(table(["collection", "step", "RSS MiB", "vs idle MiB"], rows))


if __name__ == "__main__":
    main()
