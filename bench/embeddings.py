"""The minilm embedding model: cold load, one-text latency, batch throughput, RSS.

Runs all-MiniLM-L6-v2 (or --path) through homeo's `MiniLM.embed`. The
baseline, in the same run, is `SentenceTransformer.encode` called directly on
the same texts (no event loop, thread hop, validation, token count or list
conversion), so the reader sees what homeo adds. Load time and memory come
from fresh subprocesses (cold); latency and throughput from one process that
holds both and alternates between them call by call.

    .venv/bin/python bench/embeddings.py
    .venv/bin/python bench/embeddings.py --calls 500 --batches 40 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import machine, table

# Runs in a child process: prints one JSON line of figures. "cold-*" loads one
# way and reports load time and memory; "warm" loads both ways and times them
# call by call, alternately, so machine noise hits both alike.
CHILD = r"""
import asyncio, json, os, random, resource, sys, time
mode, path, calls, batches, batch_size = sys.argv[1], sys.argv[2] or None, *map(int, sys.argv[3:6])

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

from homeo.llm.providers.minilm import MiniLM
path = path or str(MiniLM().path)
rss_before = rss_mib()
loop = asyncio.new_event_loop()
steps = {}

def load_homeo():
    model = MiniLM(path, batch_size=batch_size)
    return lambda texts: loop.run_until_complete(model.embed(texts)).vectors

def load_direct():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    began = time.perf_counter()
    from sentence_transformers import SentenceTransformer
    steps.update(imported=time.perf_counter() - began, rss_imported=rss_mib() - rss_before)
    began = time.perf_counter()
    encoder = SentenceTransformer(path, device="cpu")
    steps.update(loaded=time.perf_counter() - began, rss_weights=rss_mib() - rss_before)
    return lambda texts: encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)

if mode.startswith("cold"):
    began = time.perf_counter()
    embed = load_homeo() if mode == "cold-homeo" else load_direct()
    embed(["warm up"])
    first_call = time.perf_counter() - began
    import torch
    print(json.dumps({"first_call": first_call, "rss_added": rss_mib() - rss_before,
                      "rss_before": rss_before, "threads": torch.get_num_threads(), **steps}))
    sys.exit()

WORDS = ("the a model agent queue worker request memory tool sandbox durable run step store "
         "database answer question search index vector token cluster retry budget latency "
         "python server network file record checkpoint event policy user text").split()
rng = random.Random(7)
def sentence():
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + "."
singles = [sentence() for _ in range(calls)]
batch_texts = [[sentence() for _ in range(batch_size)] for _ in range(batches)]
ways = {"homeo": load_homeo(), "direct": load_direct()}
for embed in ways.values():
    for text in singles[:10]:
        embed([text])
latencies = {name: [] for name in ways}
batch_seconds = {name: 0.0 for name in ways}
for index, text in enumerate(singles):
    order = list(ways) if index % 2 else list(ways)[::-1]
    for name in order:
        start = time.perf_counter()
        ways[name]([text])
        latencies[name].append(time.perf_counter() - start)
for index, texts in enumerate(batch_texts):
    order = list(ways) if index % 2 else list(ways)[::-1]
    for name in order:
        start = time.perf_counter()
        ways[name](texts)
        batch_seconds[name] += time.perf_counter() - start
print(json.dumps({"latencies": latencies, "batch_seconds": batch_seconds,
                  "texts": batches * batch_size,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(mode: str, path: str, calls: int, batches: int, batch_size: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, path, str(calls), str(batches), str(batch_size)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    if done.returncode != 0:
        sys.exit(f"the {mode} child failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def percentile(samples: list[float], percent: int) -> float:
    """The `percent`-th percentile of `samples`, in milliseconds."""
    return 1000 * statistics.quantiles(samples, n=100, method="inclusive")[percent - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="timed one-text calls per path")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per path")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch")
    parser.add_argument("--rounds", type=int, default=3,
                        help="cold-start processes per path, alternated; medians are shown")
    parser.add_argument("--path", default="",
                        help="a sentence-transformers directory; empty means the shipped MiniLM")
    args = parser.parse_args()
    print(f"embeddings: cold start x{args.rounds} per path; then, in one process, "
          f"{args.calls} one-text calls and {args.batches} batches of {args.batch_size} texts"
          " (8-30 words each) per path, alternated")
    print(f"machine: {machine()}\n")
    cold: dict[str, list[dict]] = {"cold-direct": [], "cold-homeo": []}
    for _ in range(args.rounds):
        for mode, runs in cold.items():
            runs.append(measure(mode, args.path, args.calls, args.batches, args.batch_size))
    warm = measure("warm", args.path, args.calls, args.batches, args.batch_size)
    figures = {}
    for name in ("direct", "homeo"):
        runs = cold[f"cold-{name}"]
        latencies = warm["latencies"][name]
        figures[name] = {
            "first_call": statistics.median(run["first_call"] for run in runs),
            "rss_added": statistics.median(run["rss_added"] for run in runs),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "mean": 1000 * statistics.fmean(latencies),
            "texts_per_s": warm["texts"] / warm["batch_seconds"][name],
        }
    direct, homeo = figures["direct"], figures["homeo"]
    rows = [
        [label, f"{f['first_call']:.2f}", f"{f['rss_added']:.0f}", f"{f['p50']:.2f}",
         f"{f['p99']:.2f}", f"{f['mean']:.2f}", f"{f['texts_per_s']:.0f}"]
        for label, f in (("SentenceTransformer.encode (baseline)", direct),
                         ("homeo MiniLM.embed", homeo))
    ]
    rows.append(["homeo - baseline", f"{homeo['first_call'] - direct['first_call']:+.2f}",
                 f"{homeo['rss_added'] - direct['rss_added']:+.0f}",
                 f"{homeo['p50'] - direct['p50']:+.2f}", f"{homeo['p99'] - direct['p99']:+.2f}",
                 f"{homeo['mean'] - direct['mean']:+.2f}",
                 f"{homeo['texts_per_s'] / direct['texts_per_s']:.2f}x"])
    print(table(["path", "import+load+first call s", "RSS added MiB", "one text P50 ms",
                 "P99 ms", "mean ms", f"texts/s (batches of {args.batch_size})"], rows))
    before = cold["cold-homeo"][0]

    def step(key: str) -> float:
        return statistics.median(run[key] for run in cold["cold-direct"])

    print(f"\ncold start and RSS: fresh processes, median of {args.rounds}; RSS added = after"
          f" the first call minus before the import ({before['rss_before']:.0f} MiB: Python with"
          f" homeo imported). Of the baseline's: import sentence-transformers"
          f" {step('imported'):.2f} s and {step('rss_imported'):.0f} MiB, then load the weights"
          f" {step('loaded'):.2f} s and {step('rss_weights') - step('rss_imported'):.0f} MiB."
          f"\ntorch threads: {before['threads']}. Latency and throughput: one process holding"
          f" both, calls alternated (peak RSS {warm['peak_rss']:.0f} MiB with two copies of the"
          " weights).")


if __name__ == "__main__":
    main()
