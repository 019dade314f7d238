"""The in-process local model: load time, prompt and generation tokens/s, RSS.

Runs the shipped SmolLM2 GGUF (or --path) through homeo's LocalModel, in a
fresh subprocess per measurement so load time and memory are cold. The
baseline, in the same run, is the same prompt through xllamacpp directly
(no homeo rendering, grammar or parsing), so the reader sees what homeo adds.

    .venv/bin/python bench/local_model.py
    .venv/bin/python bench/local_model.py --runs 5 --max-tokens 128 --path model.gguf
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import machine, table

PROMPT = "Explain in a few sentences why the sky is blue."

# Runs in a child process: prints one JSON line of figures.
CHILD = r"""
import asyncio, json, resource, sys, time
mode, path, runs, max_tokens, prompt = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
from homeo.llm.providers.local import LocalModel, default_model_path
from homeo.llm.base import Message
path = path or str(default_model_path())
began = time.perf_counter()
if mode == "homeo":
    model = LocalModel(path, threads=2)
    ask = lambda: asyncio.run(model.request([Message(role="user", content=prompt)],
                                            max_tokens=max_tokens, temperature=0))
    first = ask()
else:
    import xllamacpp as x
    params = x.CommonParams(); params.model.path = path; params.n_ctx = 2048
    params.n_parallel = 1; params.cpuparams.n_threads = 2; params.warmup = False
    params.verbosity = 1
    server = x.Server(params)
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0}
    ask = lambda: server.handle_chat_completions(dict(body))
    first = ask()
first_call = time.perf_counter() - began
samples = []
for _ in range(runs):
    start = time.perf_counter()
    reply = ask()
    seconds = time.perf_counter() - start
    usage = reply.usage.model_dump() if mode == "homeo" else reply["usage"]
    out = usage["output_tokens"] if mode == "homeo" else usage["completion_tokens"]
    inp = usage["input_tokens"] if mode == "homeo" else usage["prompt_tokens"]
    timings = {} if mode == "homeo" else reply.get("timings", {})
    samples.append({"seconds": seconds, "in": inp, "out": out,
                    "prompt_tps": timings.get("prompt_per_second"),
                    "gen_tps": timings.get("predicted_per_second")})
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"first_call": first_call, "samples": samples, "rss_mib": rss}))
"""


def measure(mode: str, path: str, runs: int, max_tokens: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, path, str(runs), str(max_tokens), PROMPT],
        capture_output=True, text=True, check=True, timeout=600,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    samples = data["samples"]
    out_tokens = sum(s["out"] for s in samples)
    seconds = sum(s["seconds"] for s in samples)
    return {
        "first_call": data["first_call"],
        "median_call": statistics.median(s["seconds"] for s in samples),
        "tokens_per_s": out_tokens / seconds,
        "in_tokens": samples[0]["in"],
        "out_tokens": statistics.median(s["out"] for s in samples),
        "rss_mib": data["rss_mib"],
        "prompt_tps": _median_or_none([s["prompt_tps"] for s in samples]),
        "gen_tps": _median_or_none([s["gen_tps"] for s in samples]),
    }


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed calls after the first")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per call")
    parser.add_argument("--path", default="", help="a GGUF file; empty means the shipped SmolLM2")
    args = parser.parse_args()
    print(f"local model: {args.runs} calls of up to {args.max_tokens} tokens after a first call")
    print(f"machine: {machine()}\n")
    rows = []
    for mode, label in (("direct", "xllamacpp directly (baseline)"),
                        ("homeo", "homeo LocalModel")):
        figures = measure(mode, args.path, args.runs, args.max_tokens)
        rows.append([label, f"{figures['first_call']:.2f}", f"{figures['median_call']:.2f}",
                     f"{figures['in_tokens']}", f"{figures['out_tokens']:.0f}",
                     f"{figures['tokens_per_s']:.0f}", _shown(figures["prompt_tps"]),
                     _shown(figures["gen_tps"]), f"{figures['rss_mib']:.0f}"])
    print(table(["path", "load+first call s", "median call s", "prompt tokens",
                 "output tokens", "output tokens/s (whole call)", "prompt tok/s (llama.cpp)",
                 "generation tok/s (llama.cpp)", "peak RSS MiB"], rows))
    print("\nwhole-call tokens/s = output tokens / wall time, prompt processing included;"
          " the llama.cpp columns are its own timings (repeated prompts hit its prompt cache, so the prompt rate covers few tokens; homeo's LocalModel does not expose"
          " them); peak RSS is the child process's, weights included.")


if __name__ == "__main__":
    main()
