"""The minilm embedding model on its two runtimes, side by side: cold start, RSS,
one-text latency and batch throughput.

Three ways to embed the same texts with the same all-MiniLM-L6-v2 weights:

- `SentenceTransformer.encode` called directly (the baseline: no event loop,
  thread hop, validation, token count or list conversion);
- homeo's `MiniLM.embed` on sentence-transformers and torch;
- homeo's `MiniLMOnnx.embed` on ONNX Runtime (the export that
  `homeo models convert-minilm` makes; the default when it exists).

Load time and memory come from fresh subprocesses, one per way (cold: RSS of
the whole process after loading and one embed, and what the load added); latency
and throughput from one process that holds all three and alternates between
them call by call, so machine noise hits all alike. Every way runs on the same
number of CPU threads (--threads, homeo's default 1).

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

WAYS = {
    "direct": "SentenceTransformer.encode (baseline)",
    "homeo-st": "homeo minilm on sentence-transformers",
    "homeo-onnx": "homeo minilm on ONNX Runtime",
}

# Runs in a child process: prints one JSON line of figures. "cold-WAY" loads one
# way and reports load time and memory; "warm" loads every way and times them
# call by call, alternately.
CHILD = r"""
import asyncio, json, os, random, resource, sys, time
mode, onnx_dir, calls, batches, batch_size, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

import homeo.llm.providers.minilm_onnx as minilm_onnx
onnx_dir = onnx_dir or str(minilm_onnx.default_onnx_dir())
rss_before = rss_mib()
loop = asyncio.new_event_loop()

def load_homeo_st():
    from homeo.llm.providers.minilm import MiniLM
    model = MiniLM(batch_size=batch_size, threads=threads)
    return lambda texts: loop.run_until_complete(model.embed(texts)).vectors

def load_homeo_onnx():
    model = minilm_onnx.MiniLMOnnx(onnx_dir, batch_size=batch_size, threads=threads)
    return lambda texts: loop.run_until_complete(model.embed(texts)).vectors

def load_direct():
    from homeo.llm.providers.minilm import shared_encoder
    import torch
    encoder = shared_encoder(threads=threads)
    torch.set_num_threads(threads)
    return lambda texts: encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)

LOADERS = {"direct": load_direct, "homeo-st": load_homeo_st, "homeo-onnx": load_homeo_onnx}

if mode.startswith("cold-"):
    began = time.perf_counter()
    embed = LOADERS[mode[5:]]()
    embed(["warm up"])
    first_call = time.perf_counter() - began
    rss = rss_mib()
    # What a process keeps after its largest batch: batch_size chunks of 256 word pieces.
    embed([" ".join(["durable queue worker lease"] * 80)] * batch_size)
    print(json.dumps({"first_call": first_call, "rss": rss, "rss_added": rss - rss_before,
                      "rss_batch": rss_mib(), "rss_before": rss_before,
                      "torch": "torch" in sys.modules}))
    sys.exit()

WORDS = ("the a model agent queue worker request memory tool sandbox durable run step store "
         "database answer question search index vector token cluster retry budget latency "
         "python server network file record checkpoint event policy user text").split()
rng = random.Random(7)
def sentence():
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + "."
def chunk():  # a knowledge chunk: a paragraph of 60-200 words
    return " ".join(sentence() for _ in range(rng.randint(3, 9)))
singles = [sentence() for _ in range(calls)]
batch_texts = [[chunk() for _ in range(batch_size)] for _ in range(batches)]
ways = {name: load() for name, load in LOADERS.items()}
for embed in ways.values():
    for text in singles[:10]:
        embed([text])
    embed(batch_texts[0])
latencies = {name: [] for name in ways}
batch_seconds = {name: 0.0 for name in ways}
names = list(ways)
for index, text in enumerate(singles):
    for name in names[index % 3:] + names[:index % 3]:
        start = time.perf_counter()
        ways[name]([text])
        latencies[name].append(time.perf_counter() - start)
for index, texts in enumerate(batch_texts):
    for name in names[index % 3:] + names[:index % 3]:
        start = time.perf_counter()
        ways[name](texts)
        batch_seconds[name] += time.perf_counter() - start
print(json.dumps({"latencies": latencies, "batch_seconds": batch_seconds,
                  "texts": batches * batch_size,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(mode: str, args: argparse.Namespace) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, args.onnx_dir, str(args.calls), str(args.batches),
         str(args.batch_size), str(args.threads)],
        capture_output=True, text=True, timeout=1200, check=False,
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
    parser.add_argument("--calls", type=int, default=200, help="timed one-text calls per way")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per way")
    parser.add_argument("--batch-size", type=int, default=64, help="chunks per batch")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of every way")
    parser.add_argument("--rounds", type=int, default=3,
                        help="cold-start processes per way, alternated; medians are shown")
    parser.add_argument("--onnx-dir", default="",
                        help="the ONNX export; empty means the default (beside the venv)")
    args = parser.parse_args()
    print(f"embeddings: cold start x{args.rounds} per way; then, in one process, {args.calls}"
          f" one-text calls (8-30 words) and {args.batches} batches of {args.batch_size} chunks"
          f" (60-200 words) per way, alternated; {args.threads} CPU thread(s) each")
    print(f"machine: {machine()}\n")
    cold: dict[str, list[dict]] = {name: [] for name in WAYS}
    for _ in range(args.rounds):
        for name, runs in cold.items():
            runs.append(measure(f"cold-{name}", args))
    warm = measure("warm", args)
    figures = {}
    for name in WAYS:
        runs = cold[name]
        latencies = warm["latencies"][name]
        figures[name] = {
            "first_call": statistics.median(run["first_call"] for run in runs),
            "rss": statistics.median(run["rss"] for run in runs),
            "rss_added": statistics.median(run["rss_added"] for run in runs),
            "rss_batch": statistics.median(run["rss_batch"] for run in runs),
            "torch": runs[0]["torch"],
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "texts_per_s": warm["texts"] / warm["batch_seconds"][name],
        }
    base = figures["direct"]
    rows = [
        [label, f"{f['first_call']:.2f}", f"{f['rss']:.0f}", f"{f['rss_added']:.0f}",
         f"{f['rss_batch']:.0f}", "yes" if f["torch"] else "no", f"{f['p50']:.2f}",
         f"{f['p99']:.2f}", f"{f['texts_per_s']:.1f}",
         f"{f['texts_per_s'] / base['texts_per_s']:.2f}x"]
        for label, f in ((WAYS[name], figures[name]) for name in WAYS)
    ]
    print(table(["way", "import+load+first call s", "RSS MiB", "RSS added MiB",
                 f"RSS after {args.batch_size} long chunks MiB", "torch",
                 "one text P50 ms", "P99 ms", f"chunks/s (batches of {args.batch_size})",
                 "vs baseline"], rows))
    before = cold["homeo-onnx"][0]["rss_before"]
    print(f"\ncold start and RSS: fresh processes, median of {args.rounds}; RSS = the whole"
          f" process after loading and one embed; added = minus before loading ({before:.0f} MiB:"
          f" Python with homeo imported); then after one batch of {args.batch_size} chunks of"
          f" 256 word pieces. Latency and throughput: one process holding all"
          f" three, calls alternated (peak RSS {warm['peak_rss']:.0f} MiB).")


if __name__ == "__main__":
    main()
