"""Threads and OpenMP wait policy for the in-process models, idle and on a busy machine.

The local chat model (llama.cpp through xllamacpp) and the minilm embedder
on torch both run on OpenMP (minilm on ONNX Runtime has its own pool, measured
for threads only). When other processes compete for the cores, an
OpenMP thread that finished its share spins waiting for the others, burning
the time slice a straggler needs. This measures, for each model:

- threads 1 and 2 (and each library's default, the baseline: what homeo did
  before HOMEO_LOCAL_THREADS / HOMEO_EMBED_THREADS existed);
- OMP_WAIT_POLICY unset (libgomp spins a while before sleeping) and PASSIVE;
- an idle machine, and one where this script keeps busy-loop processes
  running (pinned to the last cores; started and stopped here).

Each measurement runs in a fresh subprocess, since the wait policy is read
when OpenMP loads. Chat: tokens/s and one call's latency P50/P95 (a call is
one agent step); embeddings: texts/s in batches of 32.

    .venv/bin/python bench/local_threads.py
    .venv/bin/python bench/local_threads.py --calls 12 --busy 1 --models chat
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from contextlib import contextmanager
from collections.abc import Iterator

from _common import machine, table

# Runs in a child process: prints one JSON line of figures.
CHILD = r"""
import asyncio, json, os, sys, time
kind, threads, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
threads = None if threads == "default" else int(threads)
from homeo.llm.base import Message
if kind == "chat":
    from homeo.llm.providers.local import LocalModel
    model = LocalModel(threads=threads, n_ctx=2048)
    prompts = ["What is the capital of France?", "Name three colours.",
               "Why is the sky blue?", "Say hello in French."]
    async def one(i):
        began = time.perf_counter()
        reply = await model.request([Message(role="user", content=prompts[i % len(prompts)])],
                                    max_tokens=48, temperature=0)
        return time.perf_counter() - began, reply.usage.output_tokens
else:
    if kind == "embed-onnx":
        from homeo.llm.providers.minilm_onnx import MiniLMOnnx, default_onnx_dir
        model = MiniLMOnnx(default_onnx_dir(), threads=threads or len(os.sched_getaffinity(0)))
    else:
        from homeo.llm.providers.minilm import MiniLM
        model = MiniLM(threads=threads)
    texts = [f"sentence number {i} about a cat that sat on a mat" for i in range(32)]
    async def one(i):
        began = time.perf_counter()
        await model.embed(texts)
        return time.perf_counter() - began, len(texts)
async def main():
    await one(0)  # load and warm up
    results = [await one(i) for i in range(calls)]
    print(json.dumps({"seconds": [r[0] for r in results], "units": [r[1] for r in results]}))
asyncio.run(main())
"""

BUSY = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


@contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """`count` busy-loop processes, each pinned to one of the last cores."""
    cores = sorted(os.sched_getaffinity(0))
    loops = [subprocess.Popen([sys.executable, "-c", BUSY, str(cores[-1 - i % len(cores)])])
             for i in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def measure(kind: str, threads: str, policy: str, calls: int) -> dict[str, float]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run([sys.executable, "-c", CHILD, kind, threads, str(calls)], env=env,
                          capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    seconds, units = figures["seconds"], figures["units"]
    cuts = statistics.quantiles(seconds, n=20) if len(seconds) > 1 else seconds * 19
    return {"rate": sum(units) / sum(seconds), "p50": statistics.median(seconds),
            "p95": cuts[18]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=8, help="measured calls per setting")
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes when busy")
    parser.add_argument("--models", default="chat,embed,embed-onnx",
                        help="a comma-separated choice of chat, embed, embed-onnx")
    args = parser.parse_args()
    print(machine())
    for kind in args.models.split(","):
        # ONNX Runtime has its own thread pool (not OpenMP), whose threads never
        # spin in homeo: only the thread count matters. Its default is one
        # thread per usable core.
        settings = ([("default", "default"), ("1", "default"), ("2", "default")]
                    if kind == "embed-onnx" else
                    [("default", "default"), ("1", "default"), ("2", "default"),
                     ("1", "PASSIVE"), ("2", "PASSIVE")])
        unit = "tokens/s" if kind == "chat" else "texts/s"
        rows = []
        for load in ("idle", "busy"):
            baseline = None
            for threads, policy in settings:
                if load == "busy":
                    with busy_loops(args.busy):
                        got = measure(kind, threads, policy, args.calls)
                else:
                    got = measure(kind, threads, policy, args.calls)
                baseline = baseline or got
                rows.append([load, threads, policy, f"{got['rate']:.1f}",
                             f"{got['rate'] / baseline['rate']:.2f}x",
                             f"{got['p50'] * 1000:.0f}", f"{got['p95'] * 1000:.0f}"])
        name = {"chat": "local chat model (SmolLM2-135M, 48 tokens a call)",
                "embed": "minilm embeddings on torch (batches of 32 texts)",
                "embed-onnx": "minilm embeddings on ONNX Runtime (batches of 32 texts)"}[kind]
        print(f"\n{name}; busy = {args.busy} busy-loop process(es) on the last core(s);"
              f" baseline = each library's default threads and wait policy")
        print(table(["machine", "threads", "OMP_WAIT_POLICY", unit, "vs baseline",
                     "P50 ms", "P95 ms"], rows))


if __name__ == "__main__":
    main()
