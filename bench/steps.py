"""Durable steps per second on SQLite: homeo's runner against LangGraph + SqliteSaver.

The same graph on both: a chain of N trivial nodes, each appending one message
to the state. No model, no tool: what is measured is the run loop and its
persistence alone. Each step's checkpoint is written before the next starts:

  homeo execute   `homeo.engine.runner.execute` on a SQLite file: every step
                  begun and completed in the database (the step's delta
                  checkpoint and the run's latest state in one transaction)
  LangGraph       a StateGraph of the same N nodes, compiled with SqliteSaver
                  and run with durability="sync"

Both files use WAL and synchronous=NORMAL (homeo's setting; SqliteSaver is
given the same pragma so neither pays an fsync the other does not). Also
shown: homeo's nodes in a loop with nothing stored, which says how much of
homeo's figure is the store.

    .venv/bin/python bench/steps.py
    .venv/bin/python bench/steps.py --runs 100 --nodes 20 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from _common import machine, table

from homeo.engine.graph import END, Graph, Node, Outcome, RunContext, RunState
from homeo.engine.runner import execute
from homeo.llm.base import Message
from homeo.store.models import NewRun

TEXT = "a line of text that a trivial node appends to the conversation"


class Append(Node):
    """Appends one message, then goes on to `following`."""

    kind = "append"

    def __init__(self, name: str, following: str) -> None:
        super().__init__(name)
        self.following = following

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        message = Message(role="assistant", content=f"{self.name}: {TEXT}")
        updated = state.model_copy(update={"messages": [*state.messages, message]})
        return Outcome(state=updated, next=self.following)


def chain(nodes: int) -> Graph:
    names = [f"n{index}" for index in range(nodes)]
    return Graph(nodes={name: Append(name, names[i + 1] if i + 1 < nodes else END)
                        for i, name in enumerate(names)}, start=names[0])


def homeo_runner(nodes: int, path: Path) -> tuple[Callable[[], Any], Callable[[], None]]:
    from homeo.backends import open_backends

    backends = open_backends(f"sqlite:///{path}")
    store, graph = backends.store, chain(nodes)

    async def once() -> int:
        run, _ = store.create_run(NewRun(tenant_id="bench", agent="chain", input="go"))
        await execute(store, run, graph, max_total_steps=nodes)
        return nodes

    def close() -> None:
        """Check that every step is in the database, and the state at the last one."""
        run = store.list_runs("bench", limit=1)[0]
        steps = store.list_steps("bench", run.id)
        assert len(steps) == nodes and all(step.status == "succeeded" for step in steps)
        last = store.checkpoint_at("bench", run.id, nodes - 1)
        assert last == run.checkpoint and len(last["state"]["messages"]) == nodes + 1
        backends.close()

    return once, close


def homeo_nodes(nodes: int) -> Callable[[], Any]:
    graph = chain(nodes)
    context = RunContext(tenant_id="bench", run_id="run_bench")

    async def once() -> int:
        state = RunState(messages=[Message(role="user", content="go")])
        current = graph.start
        while current != END:
            outcome = await graph.node(current).run(state, context)
            state, current = outcome.state, outcome.next
        return nodes

    return once


class ChainState(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]


def langgraph_runner(nodes: int, path: Path) -> tuple[Callable[[], int], Callable[[], None]]:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END as LG_END
    from langgraph.graph import START, StateGraph

    builder = StateGraph(ChainState)
    names = [f"n{index}" for index in range(nodes)]
    for name in names:
        def append(state: ChainState, name: str = name) -> dict[str, Any]:
            message = Message(role="assistant", content=f"{name}: {TEXT}")
            return {"messages": [message.model_dump()]}
        builder.add_node(name, append)
    builder.add_edge(START, names[0])
    for here, there in zip(names, [*names[1:], LG_END], strict=True):
        builder.add_edge(here, there)
    connection = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(connection)
    saver.setup()  # sets WAL
    connection.execute("PRAGMA synchronous=NORMAL")  # homeo's setting, for a fair fight
    graph = builder.compile(checkpointer=saver)
    counter = iter(range(10**9))
    start = {"messages": [Message(role="user", content="go").model_dump()]}

    def once() -> int:
        config = {"configurable": {"thread_id": f"run-{next(counter)}"},
                  "recursion_limit": nodes + 10}
        final = graph.invoke(start, config, durability="sync")
        assert len(final["messages"]) == nodes + 1
        return nodes

    def close() -> None:
        rows = connection.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
        assert rows > 0, "SqliteSaver wrote no checkpoints"
        connection.close()

    return once, close


def timed(once: Callable[[], Any], runs: int, is_async: bool) -> tuple[float, float]:
    """Seconds per step over `runs` runs: wall clock, and CPU time of this
    process (all its threads), which other work on a busy machine inflates less."""

    async def many() -> int:
        return sum([await once() for _ in range(runs)])

    gc.collect()
    began, cpu = time.perf_counter(), time.process_time()
    steps = asyncio.run(many()) if is_async else sum(once() for _ in range(runs))
    return (time.perf_counter() - began) / steps, (time.process_time() - cpu) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Durable steps per second: homeo's runner against LangGraph + SqliteSaver.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=100, help="timed runs per variant per round")
    parser.add_argument("--nodes", type=int, default=20, help="steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per variant first")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds, variants interleaved; the median is shown")
    args = parser.parse_args(argv)
    try:
        import langgraph.checkpoint.sqlite  # noqa: F401
    except ImportError as error:
        print(f"LangGraph is the baseline and is missing ({error.name}):"
              " pip install -e '.[bench]'", file=sys.stderr)
        return 2
    from importlib.metadata import version

    print(f"durable steps: {args.runs} runs x {args.nodes} steps, {args.warmup} warm-up runs,"
          f" median of {args.repeat} rounds", flush=True)
    print(f"machine: {machine()}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="homeo-bench-steps-"))
    homeo_once, homeo_close = homeo_runner(args.nodes, scratch / "homeo.db")
    graph_once, graph_close = langgraph_runner(args.nodes, scratch / "langgraph.db")
    lg = (f"LangGraph {version('langgraph')} + SqliteSaver"
          f" {version('langgraph-checkpoint-sqlite')}, durability=sync")
    variants: dict[str, tuple[Callable[[], Any], bool]] = {
        "homeo execute, SQLite store": (homeo_once, True),
        lg: (graph_once, False),
        "homeo nodes, nothing stored": (homeo_nodes(args.nodes), True),
    }
    per_step: dict[str, list[float]] = {name: [] for name in variants}
    cpu_per_step: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for once, is_async in variants.values():
            timed(once, args.warmup, is_async)
        for round_ in range(args.repeat):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                wall, cpu = timed(*variants[name][:1], args.runs, variants[name][1])
                per_step[name].append(wall)
                cpu_per_step[name].append(cpu)
            print(f"  round {round_ + 1} of {args.repeat} done", file=sys.stderr, flush=True)
    finally:
        homeo_close()
        graph_close()
        for path in scratch.iterdir():
            path.unlink()
        scratch.rmdir()

    median = {name: statistics.median(found) for name, found in per_step.items()}
    cpu = {name: statistics.median(found) for name, found in cpu_per_step.items()}
    baseline, cpu_baseline = median[lg], cpu[lg]
    print()
    print(table(["variant", "steps/s", "µs/step", "vs LangGraph", "CPU µs/step", "vs LangGraph"],
                [[name, f"{1 / seconds:,.0f}", f"{seconds * 1e6:,.0f}",
                  f"{seconds / baseline:.2f}x", f"{cpu[name] * 1e6:,.0f}",
                  f"{cpu[name] / cpu_baseline:.2f}x"] for name, seconds in median.items()]))
    print()
    homeo, homeo_cpu = median["homeo execute, SQLite store"], cpu["homeo execute, SQLite store"]
    print(f"homeo's cost per durable step: {homeo / baseline:.2f}x LangGraph's"
          f" ({homeo * 1e6:,.0f} against {baseline * 1e6:,.0f} µs; below 1 = homeo cheaper);"
          f" in CPU time {homeo_cpu / cpu_baseline:.2f}x ({homeo_cpu * 1e6:,.0f} against"
          f" {cpu_baseline * 1e6:,.0f} µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
