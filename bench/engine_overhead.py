"""Engine overhead: what one checkpointed step costs, against no checkpoint and LangGraph.

One agent, run many times: a tool-calling loop whose scripted model asks for K
tool calls (one per turn) and then answers, with a trivial tool. That is
2K+1 steps per run (K+1 model turns, K tool calls). No network, no LLM: what
is measured is the engine and its persistence alone.

The same loop, in one process and one run of this script:

  minimal loop      the baseline: a plain async loop that calls the same
                    ScriptedModel and the same tool the way homeo does
                    (arguments validated, a sync tool in a thread), no state
                    copies, nothing persisted
  homeo nodes       homeo's own ModelNode/ToolNode driven in a loop with no
                    store: the engine's state handling without durability
  homeo execute     homeo's `execute` with the SQLite store (a file): each
                    step is begun and completed in the database, with the
                    run's checkpoint, before the next one starts
  LangGraph ...     a model node + tool node StateGraph with the same K
                    calls, with no checkpointer, with SqliteSaver and
                    durability="sync" (each checkpoint written before the next
                    step, like homeo), and with its default durability="async"

Both SQLite files use WAL and synchronous=NORMAL (homeo's setting; SqliteSaver
is given the same pragma so neither pays an fsync the other does not).

    .venv/bin/python bench/engine_overhead.py
    .venv/bin/python bench/engine_overhead.py --runs 500 --tool-calls 10
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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from _common import machine, table

from homeo.engine.graph import END, RunState, RunContext
from homeo.engine.react import tool_calling_graph
from homeo.engine.runner import execute
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.store.models import NewRun
from homeo.tools.registry import Tool, from_function

SYSTEM_PROMPT = "You count words with the echo tool, then answer in one short sentence."
TASK = "Echo each of these words back one at a time: alpha beta gamma delta epsilon zeta."


def echo(text: str) -> str:
    """Return the text unchanged.

    Args:
        text: what to echo
    """
    return text


ECHO = from_function(echo)


def script(tool_calls: int) -> Callable[[list[Message], list[ToolSpec]], Message | str]:
    """The model's behaviour: one tool call per turn until `tool_calls` results are in."""

    def reply(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
        results = sum(1 for message in messages if message.role == "tool")
        if results < tool_calls:
            return tool_call("echo", text=f"word {results}")
        return "done"

    return reply


# --- the three ways to run it --------------------------------------------------


async def minimal_run(tool_calls: int) -> int:
    """The baseline: the loop with nothing but the model, the tool and a message list."""
    model = ScriptedModel(script(tool_calls))
    specs = [ECHO.spec]
    tools: dict[str, Tool] = {ECHO.name: ECHO}
    messages = [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=TASK)]
    steps = 0
    while True:
        message = (await model.request(messages, specs)).message
        messages.append(message)
        steps += 1
        if not message.tool_calls:
            assert message.content == "done"
            return steps
        for call in message.tool_calls:
            tool = tools[call.name]
            arguments = tool.validate(call.arguments)
            result = await asyncio.to_thread(tool.function, **arguments)
            messages.append(
                Message(role="tool", content=result, tool_call_id=call.id, name=call.name)
            )
            steps += 1


async def homeo_nodes_run(tool_calls: int) -> int:
    """homeo's graph nodes, run in a loop with no store."""
    graph = tool_calling_graph(ScriptedModel(script(tool_calls)), [ECHO], max_steps=tool_calls + 1)
    state = RunState(messages=[Message(role="system", content=SYSTEM_PROMPT),
                               Message(role="user", content=TASK)])
    context = RunContext(tenant_id="bench", run_id="run_bench")
    current, steps = graph.start, 0
    while current != END:
        outcome = await graph.node(current).run(state, context)
        state, current = outcome.state, outcome.next
        steps += 1
    assert state.output == "done"
    return steps


def homeo_execute_runner(
    tool_calls: int, path: Path
) -> tuple[Callable[[int], Any], Callable[[], None]]:
    from homeo.backends import open_backends

    backends = open_backends(f"sqlite:///{path}")
    store = backends.store

    async def run_once(tool_calls: int) -> int:
        graph = tool_calling_graph(
            ScriptedModel(script(tool_calls)), [ECHO], max_steps=tool_calls + 1
        )
        run, _ = store.create_run(NewRun(tenant_id="bench", agent="bench", input=TASK))
        output = await execute(store, run, graph, system_prompt=SYSTEM_PROMPT,
                               max_total_steps=2 * tool_calls + 1)
        assert output == "done"
        return 2 * tool_calls + 1

    def close() -> None:
        """Check that every step really is in the database, with the run's checkpoint."""
        run = store.list_runs("bench", limit=1)[0]
        steps = store.list_steps("bench", run.id)
        assert len(steps) == 2 * tool_calls + 1, len(steps)
        assert all(step.status == "succeeded" for step in steps)
        assert run.checkpoint is not None and run.checkpoint["seq"] == len(steps)
        backends.close()

    return run_once, close


class LoopState(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]
    pending: list[dict[str, Any]]
    turns: int
    output: str | None


def langgraph_builder(tool_calls: int) -> Any:
    """The same loop as a LangGraph StateGraph: messages are plain dicts (JSON)."""
    from langgraph.graph import END as LG_END
    from langgraph.graph import START, StateGraph

    reply = script(tool_calls)

    def model(state: LoopState) -> dict[str, Any]:
        history = [Message.model_validate(m) for m in state["messages"]]
        answer = reply(history, [ECHO.spec])
        message = answer if isinstance(answer, Message) else Message(role="assistant",
                                                                      content=answer)
        update: dict[str, Any] = {"messages": [message.model_dump()], "turns": state["turns"] + 1}
        if message.tool_calls:
            update["pending"] = [call.model_dump() for call in message.tool_calls]
        else:
            update["output"] = message.content
        return update

    def tools(state: LoopState) -> dict[str, Any]:
        call, *rest = state["pending"]
        arguments = ECHO.validate(call["arguments"])
        result = ECHO.function(**arguments)
        tool_message = Message(role="tool", content=result, tool_call_id=call["id"],
                               name=call["name"])
        return {"messages": [tool_message.model_dump()], "pending": rest}

    builder = StateGraph(LoopState)
    builder.add_node("model", model)
    builder.add_node("tools", tools)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", lambda s: "tools" if s["pending"] else LG_END,
                                  ["tools", LG_END])
    builder.add_conditional_edges("tools", lambda s: "tools" if s["pending"] else "model",
                                  ["tools", "model"])
    return builder


def langgraph_runner(
    tool_calls: int, path: Path | None, durability: str | None
) -> tuple[Callable[[int], int], Callable[[], None]]:
    builder = langgraph_builder(tool_calls)
    connection = None
    if path is None:
        graph = builder.compile()
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        connection = sqlite3.connect(path, check_same_thread=False)
        saver = SqliteSaver(connection)
        saver.setup()  # sets WAL
        connection.execute("PRAGMA synchronous=NORMAL")  # homeo's setting, for a fair fight
        graph = builder.compile(checkpointer=saver)
    counter = iter(range(10**9))
    start = {
        "messages": [Message(role="system", content=SYSTEM_PROMPT).model_dump(),
                     Message(role="user", content=TASK).model_dump()],
        "pending": [],
        "turns": 0,
        "output": None,
    }
    extra = {} if durability is None else {"durability": durability}

    def run_once(_: int) -> int:
        config = {"configurable": {"thread_id": f"run-{next(counter)}"}, "recursion_limit": 10_000}
        final = graph.invoke(start, config, **extra)
        assert final["output"] == "done" and final["turns"] == tool_calls + 1
        return 2 * tool_calls + 1

    def close() -> None:
        if connection is not None:
            rows = connection.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
            assert rows > 0, "SqliteSaver wrote no checkpoints"
            connection.close()

    return run_once, close


# --- timing --------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    run_once: Callable[[int], Any]  # returns the steps it took (maybe as a coroutine)
    close: Callable[[], None] = lambda: None
    is_async: bool = False


def time_runs(variant: Variant, runs: int, tool_calls: int) -> tuple[float, int]:
    """Seconds for `runs` runs, and the steps they took."""

    async def many() -> int:
        return sum([await variant.run_once(tool_calls) for _ in range(runs)])

    gc.collect()
    began = time.perf_counter()
    if variant.is_async:
        steps = asyncio.run(many())
    else:
        steps = sum(variant.run_once(tool_calls) for _ in range(runs))
    return time.perf_counter() - began, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Cost per checkpointed step: homeo against no persistence and LangGraph.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=200, help="timed runs per variant per round")
    parser.add_argument("--tool-calls", type=int, default=5,
                        help="tool calls per run (steps per run = 2K+1)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs per variant first")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds, variants interleaved; the median is shown")
    parser.add_argument("--no-langgraph", action="store_true", help="skip the LangGraph rows")
    args = parser.parse_args(argv)
    tool_calls = args.tool_calls
    steps_per_run = 2 * tool_calls + 1

    with_langgraph = not args.no_langgraph
    if with_langgraph:
        try:
            import langgraph.checkpoint.sqlite  # noqa: F401
            import langgraph.graph  # noqa: F401
        except ImportError as error:
            print(f"skipping LangGraph ({error.name} missing): pip install -e '.[bench]'",
                  file=sys.stderr)
            with_langgraph = False

    print(f"engine overhead: {args.runs} runs x {steps_per_run} steps ({tool_calls} tool calls),"
          f" {args.warmup} warm-up runs, median of {args.repeat} rounds", flush=True)
    print(f"machine: {machine()}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="homeo-bench-engine-"))
    homeo_run, homeo_close = homeo_execute_runner(tool_calls, scratch / "homeo.db")
    variants = [
        Variant("minimal loop, in memory (baseline)", minimal_run, is_async=True),
        Variant("homeo nodes, in memory", homeo_nodes_run, is_async=True),
        Variant("homeo execute, SQLite store", homeo_run, homeo_close, is_async=True),
    ]
    if with_langgraph:
        import langgraph

        version = getattr(langgraph, "__version__", None)
        if version is None:
            from importlib.metadata import version as dist_version

            version = dist_version("langgraph")
        variants += [
            Variant(f"LangGraph {version}, no checkpointer",
                    *langgraph_runner(tool_calls, None, None)),
            Variant("LangGraph + SqliteSaver, durability=sync",
                    *langgraph_runner(tool_calls, scratch / "lg-sync.db", "sync")),
            Variant("LangGraph + SqliteSaver, durability=async (default)",
                    *langgraph_runner(tool_calls, scratch / "lg-async.db", "async")),
        ]

    timings: dict[str, list[float]] = {v.name: [] for v in variants}
    try:
        for variant in variants:
            time_runs(variant, args.warmup, tool_calls)
        for round_ in range(args.repeat):
            for variant in variants if round_ % 2 == 0 else reversed(variants):
                seconds, steps = time_runs(variant, args.runs, tool_calls)
                assert steps == args.runs * steps_per_run, (variant.name, steps)
                timings[variant.name].append(seconds / steps)
            print(f"  round {round_ + 1} of {args.repeat} done", file=sys.stderr, flush=True)
    finally:
        for variant in variants:
            variant.close()
        for path in scratch.iterdir():
            path.unlink()
        scratch.rmdir()

    per_step = {name: statistics.median(found) for name, found in timings.items()}
    baseline = per_step[variants[0].name]
    durable_homeo = per_step["homeo execute, SQLite store"]
    langgraph_sync = per_step.get("LangGraph + SqliteSaver, durability=sync")
    rows = []
    for variant in variants:
        seconds = per_step[variant.name]
        rows.append([
            variant.name,
            f"{1 / seconds:,.0f}",
            f"{seconds * 1e6:,.0f}",
            f"+{(seconds - baseline) * 1e6:,.0f}" if variant is not variants[0] else "-",
            f"{seconds / langgraph_sync:.2f}x" if langgraph_sync else "n/a",
        ])
    print()
    print(table(["variant", "steps/s", "µs/step", "vs baseline µs/step", "vs LangGraph sync"],
                rows))
    print()
    nodes = per_step["homeo nodes, in memory"]
    print(f"cost of durability in homeo: {(durable_homeo - baseline) * 1e6:,.0f} µs per step"
          f" over the in-memory baseline ({durable_homeo / baseline:.1f}x): the store's"
          f" {(durable_homeo - nodes) * 1e6:,.0f} µs (begin, complete, status check) plus the"
          f" nodes' {(nodes - baseline) * 1e6:,.0f} µs (state copies, pydantic).")
    if langgraph_sync:
        ratio = durable_homeo / langgraph_sync
        print(f"homeo execute vs LangGraph + SqliteSaver (sync): {ratio:.2f}x the time per step"
              " (below 1 = homeo faster).")
    print("A step is one model turn or one tool call. homeo's figure includes creating the run"
          " row; LangGraph's includes its input checkpoint.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
