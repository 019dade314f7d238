"""`homeo evolve NAME --suite SUITE`: the genetic search (evolve/search.py)
over an agent's genome, from the command line.

Like `homeo eval run`, no server is needed: the agents folder is published,
and each candidate's suite runs are served here by a fresh worker. Candidates
are versions of the shadow agent NAME-evolve; the live agent is untouched. The
search's state is kept after every generation, so `--search-id ID` resumes a
stopped search (a finished one prints its front again without new runs).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from homeo.cli_common import (
    AgentsDir,
    DatabaseUrl,
    DataDir,
    Json,
    Tenant,
    fail,
    opened,
    settings_or_exit,
)
from homeo.evolve.genome import Genome
from homeo.evolve.search import Candidate, SearchState
from homeo.observe import logs


def genome_summary(genome: Genome) -> str:
    """One line: model, temperature, steps, tools (short names), prompt, pattern."""
    tools = ",".join(tool.rpartition(":")[2] for tool in genome.tools) or "none"
    return (f"{genome.model} t={genome.temperature:g} steps={genome.max_steps}"
            f" tools={tools} prompt={len(genome.prompt)} seg {genome.pattern}")


class GenerationBars:
    """The search's `progress` callback: one bar per generation, counting its
    evaluations (on stderr, so stdout keeps the table or the JSON)."""

    def __init__(self, progress: Progress, population: int) -> None:
        self.progress, self.population = progress, population
        self.bars: dict[int, TaskID] = {}
        self.done: dict[int, int] = {}

    def __call__(self, state: SearchState) -> None:
        # Generation 0 is evaluated before the first state is kept; after that
        # `state.generation` is the last finished one.
        generation = state.generation + 1 if state.population else 0
        for earlier, bar in self.bars.items():
            if earlier < generation:  # a generation may breed fewer than `population`
                self.progress.update(bar, total=self.done[earlier])
        if generation not in self.bars:
            self.bars[generation] = self.progress.add_task(
                f"generation {generation}", total=self.population, tokens=0)
            self.done[generation] = 0
        self.done[generation] += 1
        self.progress.update(self.bars[generation], completed=self.done[generation],
                             tokens=state.tokens)

    def finish(self) -> None:
        for generation, bar in self.bars.items():
            self.progress.update(bar, total=self.done[generation])


def _front_json(search_id: str, agent: str, suite: str, state: SearchState) -> dict:
    return {"search_id": search_id, "agent": agent, "suite": suite,
            "generation": state.generation, "evaluations": state.evaluations,
            "tokens": state.tokens, "seconds": state.seconds, "stopped": state.stopped,
            "front": [c.model_dump(mode="json") for c in _ordered(state.front())]}


def _ordered(front: list[Candidate]) -> list[Candidate]:
    """Best score first, then fewest tokens."""
    return sorted(front, key=lambda c: (-c.fitness.score, c.fitness.tokens, c.fitness.version))


def evolve(
    name: Annotated[str, typer.Argument(help="The agent to evolve (its current version).")],
    suite: Annotated[Path, typer.Option("--suite", help="The suite: a .yaml or .jsonl file.")],
    generations: Annotated[int, typer.Option(min=1, max=1000,
                                             help="Generations, the first included.")],
    population: Annotated[int, typer.Option(min=2, max=1000,
                                            help="Candidates kept each generation.")],
    seed: Annotated[int, typer.Option(help="One seed gives one search.")] = 0,
    budget_tokens: Annotated[int | None, typer.Option(
        min=1, help="Stop once the candidates' runs used this many tokens.")] = None,
    budget_seconds: Annotated[float | None, typer.Option(
        help="Stop once evaluations took this many seconds.")] = None,
    search_id: Annotated[str | None, typer.Option(
        help="Resume this search (or start one under this id) [a new id].")] = None,
    model: Annotated[list[str] | None, typer.Option(
        help="A model alias the search may try besides the agent's (repeatable).")] = None,
    prompt_segment: Annotated[list[str] | None, typer.Option(
        help="A system prompt segment the search may use (repeatable) [the agent's prompt].",
    )] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64,
                                             help="Runs at once in this process.")] = 1,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    agents_dir: AgentsDir = None,
) -> None:
    """Search NAME's genome (prompt, model, temperature, steps, tools, pattern)
    with NSGA-II for eval score up and tokens down; print the Pareto front."""
    from pydantic import ValidationError

    from homeo.engine.agents import AgentSpec
    from homeo.evolve.candidates import SuiteEvaluator
    from homeo.evolve.evals import SuiteError, load_suite
    from homeo.evolve.genome import Space, from_spec
    from homeo.evolve.search import Search, SearchConfig
    from homeo.ids import new_id
    from homeo.llm.resolve import UnknownModel

    if budget_seconds is not None and not budget_seconds > 0:
        fail(f"--budget-seconds must be more than 0, not {budget_seconds:g}", code=2)
    if search_id is not None and not search_id.strip():
        fail("--search-id must not be empty", code=2)
    try:
        cases = load_suite(suite)
    except SuiteError as error:
        fail(str(error), code=2)
    settings = settings_or_exit(data_dir=data_dir, database_url=database_url,
                                agents_dir=agents_dir, default_tenant=tenant)
    logs.configure("warning", settings.log_json)  # the worker's info lines would bury the bars
    tenant_id = settings.default_tenant
    search_id = search_id or new_id("evo")
    try:
        config = SearchConfig(search_id=search_id, tenant_id=tenant_id,
                              generations=generations, population=population, seed=seed,
                              budget_tokens=budget_tokens, budget_seconds=budget_seconds)
    except ValidationError as error:
        fail(f"bad search settings: {error.errors()[0]['msg']}", code=2)
    errors = Console(stderr=True, soft_wrap=True, highlight=False)
    with opened(settings) as runtime:
        store = runtime.backends.store
        record = store.get_agent(tenant_id, name)
        if record is None:
            known = ", ".join(a.name for a in store.list_agents(tenant_id)) or "none"
            fail(f"unknown agent {name!r}; agents defined for tenant {tenant_id!r}: {known}",
                 code=2)
        spec = AgentSpec.model_validate(record.spec)
        models = [spec.model] + [m for m in model or [] if m != spec.model]
        for alias in models[1:]:
            try:
                runtime.models.check(alias)
            except UnknownModel as error:
                fail(f"--model: {error}", code=2)
        try:
            space = Space.around(spec, prompt_segments=prompt_segment or None, models=models)
        except ValidationError as error:
            fail(f"cannot search agent {name!r}: {error.errors()[0]['msg']}", code=2)
        evaluator = SuiteEvaluator(runtime.backends, cases, tenant_id=tenant_id, agent=name,
                                   workers=lambda: runtime.worker(concurrency),
                                   models=runtime.models.get)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[tokens]} tokens used"), console=errors,
                      transient=False) as progress:
            bars = GenerationBars(progress, population)
            search = Search(store, config, space, from_spec(spec), evaluator,
                            progress=bars)
            resumed = search.load()
            if resumed is not None:
                errors.print(f"search {search_id}: resuming after generation"
                             f" {resumed.generation} ({resumed.evaluations} evaluations)"
                             + (f"; it stopped at its budget ({resumed.stopped}) and does not"
                                " go on: a new --search-id starts afresh"
                                if resumed.stopped else ""), markup=False)
            state = asyncio.run(search.run())
            bars.finish()
    result = _front_json(search_id, name, cases.name, state)
    if as_json:
        print(json.dumps(result))
        return
    _print_front(name, result, state)


def _print_front(name: str, result: dict, state: SearchState) -> None:
    from homeo.evolve.candidates import shadow_name

    shadow = shadow_name(name)
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"{'VERSION':<14}{'SCORE':>6}{'TOKENS':>8}{'GEN':>5}  GENOME", markup=False)
    for candidate in _ordered(state.front()):
        out.print(f"{candidate.fitness.version:<14}{candidate.fitness.score:>6.2f}"
                  f"{candidate.fitness.tokens:>8}{candidate.generation:>5}  "
                  f"{genome_summary(candidate.genome)}", markup=False)
    ended = f"; stopped early: {state.stopped}" if state.stopped else ""
    out.print(f"search {result['search_id']} of {name} on {result['suite']}: generation"
              f" {state.generation}, {state.evaluations} evaluations, {state.tokens} tokens"
              f"{ended}. Versions are of agent {shadow} (`homeo agents versions"
              f" {shadow}`); resume with --search-id {result['search_id']}", markup=False)
