"""Generations per hour of the genetic search on a toy suite.

A deliberately bad calculator agent (no tool, one step) is searched with
NSGA-II (`homeo evolve`, evolve/search.py) for G generations of population
P on a 4-case arithmetic suite, on a fresh SQLite file. The agent's model is
scripted (no model time): with the calculator tool and two steps it answers
right, otherwise it apologises, so the figures are what the search itself
costs per generation: registering each candidate as a version of the shadow
agent, submitting and serving its suite's runs, scoring them and keeping the
generation's state. The baseline, in the same run, evaluates the same number
of suites (one per candidate the search evaluated) against one fixed version
with `run_suite`: the runs and scoring alone.

    .venv/bin/python bench/evolve.py
    .venv/bin/python bench/evolve.py --generations 8 --population 6 --concurrency 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table  # noqa: E402

from homeo.config import Settings  # noqa: E402
from homeo.engine.agents import AgentSpec  # noqa: E402
from homeo.evolve.candidates import SuiteEvaluator  # noqa: E402
from homeo.evolve.evals import Case, Expect, Suite, run_suite  # noqa: E402
from homeo.evolve.genome import Space, from_spec  # noqa: E402
from homeo.evolve.search import Search, SearchConfig  # noqa: E402
from homeo.llm.base import Message, ToolSpec  # noqa: E402
from homeo.llm.providers.scripted import ScriptedModel, tool_call  # noqa: E402
from homeo.observe import logs  # noqa: E402
from homeo.runtime import Runtime  # noqa: E402

CALCULATE = "homeo.examples.tools:calculate"
SUITE = Suite(name="toy-arithmetic", cases=[
    Case(id=f"c{n}", input=f"{n}*7", expect=Expect(contains=[str(n * 7)]))
    for n in range(2, 6)])


def calc_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    task = next(m.content for m in messages if m.role == "user")
    results = [m.content for m in messages if m.role == "tool"]
    if results:
        return f"{task} = {results[-1]}"
    if tools:
        return tool_call("calculate", expression=task)
    return "Sorry, I cannot calculate without a tool."


def opened(folder: Path) -> Runtime:
    runtime = Runtime.open(Settings(data_dir=folder, poll_seconds=0.005))
    runtime.models.add("bench:calc", ScriptedModel(calc_model))
    runtime.agents.publish("default", {"calc": AgentSpec(name="calc", model="bench:calc",
                                                         max_steps=1, tools=[])})
    return runtime


async def search(folder: Path, generations: int, population: int, concurrency: int,
                 seed: int) -> tuple[float, int, float]:
    """Seconds, evaluations, the best score found."""
    runtime = opened(folder)
    try:
        store = runtime.backends.store
        spec = AgentSpec.model_validate(store.get_agent("default", "calc").spec)
        evaluate = SuiteEvaluator(runtime.backends, SUITE, tenant_id="default", agent="calc",
                                  workers=lambda: runtime.worker(concurrency),
                                  models=runtime.models.get, poll_seconds=0.005)
        space = Space(models=["bench:calc"], max_steps=(1, 3), tools=[CALCULATE])
        config = SearchConfig(search_id="bench", generations=generations,
                              population=population, seed=seed)
        began = time.perf_counter()
        state = await Search(store, config, space, from_spec(spec), evaluate).run()
        elapsed = time.perf_counter() - began
    finally:
        await runtime.aclose()
    return elapsed, state.evaluations, max(c.fitness.score for c in state.population)


async def baseline(folder: Path, evaluations: int, concurrency: int) -> float:
    runtime = opened(folder)
    try:
        version = runtime.backends.store.get_agent("default", "calc").version
        began = time.perf_counter()
        for _ in range(evaluations):
            await run_suite(runtime.backends, SUITE, tenant_id="default", agent="calc",
                            version=version, worker=runtime.worker(concurrency),
                            models=runtime.models.get, poll_seconds=0.005)
        return time.perf_counter() - began
    finally:
        await runtime.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2, help="runs at once per worker")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    logs.configure("warning", False)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        seconds, evaluations, best = asyncio.run(search(
            Path(tmp, "search"), args.generations, args.population, args.concurrency,
            args.seed))
        plain = asyncio.run(baseline(Path(tmp, "base"), evaluations, args.concurrency))
    cases = len(SUITE.cases)
    print(f"{args.generations} generations x population {args.population}, seed {args.seed},"
          f" {cases} cases per evaluation, {args.concurrency} runs at once; the bad agent"
          f" scores 0.00, the best candidate found {best:.2f}")
    print(table(["", "evaluations", "seconds", "evaluations/s", "generations/hour"], [
        ("homeo evolve (search)", evaluations, f"{seconds:.2f}",
         f"{evaluations / seconds:.2f}", f"{args.generations * 3600 / seconds:,.0f}"),
        ("baseline: the same suites, one version", evaluations, f"{plain:.2f}",
         f"{evaluations / plain:.2f}", ""),
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
