"""Database bytes per step with and without retention.

R runs of S steps each (default 10,000 x 20) are written to a SQLite store the
way the runner writes them: every step begun, then completed with the run's
new checkpoint (each step appends one message of about 200 characters to the
conversation), and the run finished. Time is simulated: one run finishes
every `--run-seconds` (60 s), and with retention on, pruning runs every
`--prune-every` runs with a retention of `--retention` (1 day = the last
1,440 runs keep their per-step checkpoints).

Printed for both: the database file, the bytes in use (pages minus free
pages: SQLite reuses freed pages, it does not give them back without VACUUM),
and bytes per step. The baseline, in the same run: what the per-step
checkpoints would take if every step stored the whole state again (as
LangGraph's checkpointers do), computed from the same states.

    .venv/bin/python bench/retention.py                # 10,000 runs x 20 steps
    .venv/bin/python bench/retention.py --runs 1000    # a quick run
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, table

from homeo.backends import open_backends
from homeo.engine import prune
from homeo.engine.graph import RunState
from homeo.llm.base import Message
from homeo.sandbox.limits import parse_duration
from homeo.store.models import NewRun

LINE = "a step's message: a tool result or a model turn of about two hundred characters, " * 2


def write_runs(path: Path, runs: int, steps: int, *, run_seconds: float,
               retention: float | None, prune_every: int) -> tuple[int, int]:
    """Write the runs; return the bytes of whole-state checkpoints they would
    have stored, and the checkpoints retention removed."""
    backends = open_backends(f"sqlite:///{path}")
    store = backends.store
    whole_bytes = removed = 0
    now = 1_700_000_000.0
    try:
        for index in range(runs):
            run, _ = store.create_run(NewRun(tenant_id="bench", agent="a", input="go"), now=now)
            state = RunState(messages=[Message(role="user", content="go")]).model_dump()
            previous = {"seq": 0, "next": None, "state": state}
            for seq in range(steps):
                store.begin_step("bench", run.id, seq, "model", "model", None, now=now)
                message = {"role": "assistant", "content": f"{seq} {LINE}"}
                state = {**state, "messages": [*state["messages"], message],
                         "model_turns": seq + 1}
                checkpoint = {"seq": seq + 1, "next": "model", "state": state}
                store.complete_step("bench", run.id, seq, {"content": message["content"][:40]},
                                    checkpoint, previous=previous, now=now)
                whole_bytes += len(json.dumps(checkpoint, separators=(",", ":")))
                previous = checkpoint
            store.transition_run("bench", run.id, "succeeded", allowed_from={"queued"},
                                 output="done", now=now)
            now += run_seconds
            if retention is not None and (index + 1) % prune_every == 0:
                removed += prune.prune(store, older_than=retention, now=now).checkpoints
    finally:
        backends.close()
    return whole_bytes, removed


def sizes(path: Path) -> tuple[int, int]:
    """The file's bytes (WAL checkpointed into it), and the bytes of pages in use."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    return path.stat().st_size, (pages - free) * page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Database bytes per step with and without checkpoint retention.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20, help="steps per run")
    parser.add_argument("--run-seconds", type=float, default=60.0,
                        help="simulated seconds between two runs' ends")
    parser.add_argument("--retention", default="1d", help="HOMEO_CHECKPOINT_RETENTION")
    parser.add_argument("--prune-every", type=int, default=500,
                        help="prune after this many runs (the scheduled job)")
    args = parser.parse_args(argv)
    retention = parse_duration(args.retention)
    total_steps = args.runs * args.steps
    print(f"retention: {args.runs:,} runs x {args.steps} steps, a run ends every"
          f" {args.run_seconds:g} simulated s; retention {args.retention}, pruned every"
          f" {args.prune_every} runs", flush=True)
    print(f"machine: {machine()}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="homeo-bench-retention-"))
    rows = []
    try:
        for label, kept in (("retention off", None), (f"retention {args.retention}", retention)):
            path = scratch / f"{'off' if kept is None else 'on'}.db"
            began = time.perf_counter()
            whole, removed = write_runs(path, args.runs, args.steps, run_seconds=args.run_seconds,
                                        retention=kept, prune_every=args.prune_every)
            seconds = time.perf_counter() - began
            file_bytes, used = sizes(path)
            rows.append([label, f"{file_bytes / 2**20:,.1f}", f"{used / 2**20:,.1f}",
                         f"{used / total_steps:,.0f}", f"{removed:,}", f"{seconds:,.0f}"])
            print(f"  {label} done in {seconds:,.0f} s", file=sys.stderr, flush=True)
    finally:
        for path in scratch.iterdir():
            path.unlink()
        scratch.rmdir()
    print()
    print(table(["homeo", "file MiB", "in use MiB", "bytes/step in use", "checkpoints pruned",
                 "seconds"], rows))
    print()
    print(f"baseline: whole-state checkpoints of the same steps would be {whole / 2**20:,.1f} MiB"
          f" of JSON alone ({whole / total_steps:,.0f} bytes/step), before any other column,"
          " and grow without bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
