"""Sandbox cold start and throughput: `python3 -c 'print(1)'` in the sandbox
against the same command run plainly, in one run of this script.

  plain python3       subprocess.run of /usr/bin/python3 -c 'print(1)': the baseline
  bwrap only          the same bwrap command line, no seccomp filter, no cgroup
  homeo sandbox       homeo.sandbox.run: bwrap + seccomp + a fresh cgroup per run
                      (memory, pids, cpu) + a scratch folder, files collected,
                      everything removed afterwards

Each is run --runs times in a row (cold: a new process tree every time) after
a few warm-up runs; P50 and P99 of the wall time. Then throughput: --workers
threads each calling homeo.sandbox.run in a loop for --seconds.

    .venv/bin/python bench/sandbox_startup.py
    .venv/bin/python bench/sandbox_startup.py --runs 300 --workers 4 --seconds 10
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import machine, table

from homeo.sandbox import Limits, bwrap, layers, run

COMMAND = ["python3", "-c", "print(1)"]


def timed(call: Callable[[], object], runs: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def throughput(workers: int, seconds: float, limits: Limits) -> tuple[int, float]:
    done = [0] * workers
    stop = time.monotonic() + seconds

    def loop(index: int) -> None:
        while time.monotonic() < stop:
            result = run(COMMAND, limits)
            assert result.stdout == b"1\n", result
            done[index] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="threads for throughput")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput duration")
    options = parser.parse_args()
    print(machine())
    active = layers.require()
    print(f"layers: {', '.join(active.names)}")
    limits = Limits(memory_bytes="256M", pids=64, cpu=1.0, timeout_seconds="10s")

    def plain() -> None:
        subprocess.run(["/usr/bin/python3", "-c", "print(1)"], check=True, capture_output=True)

    with tempfile.TemporaryDirectory() as folder:
        scratch, etc = Path(folder, "scratch"), Path(folder, "etc")
        scratch.mkdir()
        bwrap.write_sandbox_etc(etc)
        bare = bwrap.argv(active.bwrap, COMMAND, scratch=scratch, etc=etc, seccomp_fd=None)

        def bwrap_only() -> None:
            subprocess.run(bare, check=True, capture_output=True)

        def sandboxed() -> None:
            result = run(COMMAND, limits)
            assert result.stdout == b"1\n", result

        rows = []
        baseline = None
        for name, call in (("plain python3", plain), ("bwrap only", bwrap_only),
                           ("homeo sandbox", sandboxed)):
            samples = timed(call, options.runs)
            p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
            baseline = baseline if baseline is not None else p50
            rows.append([name, options.runs, f"{p50:.1f}", f"{p99:.1f}",
                         f"{statistics.mean(samples) * 1000:.1f}", f"+{p50 - baseline:.1f}"])
    print(f"\ncold start of {' '.join(COMMAND)!r}, ms")
    print(table(["", "runs", "P50", "P99", "mean", "P50 over plain"], rows))

    count, elapsed = throughput(options.workers, options.seconds, limits)
    print(f"\nthroughput: {options.workers} threads calling homeo.sandbox.run for "
          f"{options.seconds:g} s")
    print(table(["workers", "runs", "seconds", "runs/s"],
                [[options.workers, count, f"{elapsed:.1f}", f"{count / elapsed:.1f}"]]))


if __name__ == "__main__":
    sys.exit(main())
