"""NSGA-II over agent genomes: eval score up, cost (tokens) down.

Generation 0 is the agent's own genome and `population - 1` random ones. Each
later generation breeds `population` children from the survivors (binary
tournament on front then crowding, crossover then mutation), evaluates the new
ones, and keeps the best `population` of parents and children
(`pareto.select`). After every generation the whole state is kept in the store
(`put_evolve_generation`), so a search that stops (a crash, a kill) resumes
from its last finished generation; a generation's random draws come from
`Random(f"{seed}:{generation}")`, so a resumed search makes the same choices as
one that never stopped, and one seed gives one search.

A token or time budget ends the search between evaluations; what was
evaluated by then still counts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, Field

from homeo.evolve import pareto
from homeo.evolve.genome import Genome, Space, crossover, mutate, random_genome
from homeo.store.base import Store


class Fitness(BaseModel):
    """What one evaluation of a genome measured: the suite's mean score, the
    tokens its runs used, and the agent version it ran as."""

    score: float
    tokens: int
    version: str


class Candidate(BaseModel):
    genome: Genome
    fitness: Fitness
    parents: list[str] = Field(default_factory=list)  # the parents' versions
    generation: int

    def objectives(self) -> tuple[float, float]:
        return (self.fitness.score, -float(self.fitness.tokens))


class SearchState(BaseModel):
    generation: int = 0
    population: list[Candidate] = Field(default_factory=list)
    evaluations: int = 0
    tokens: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why it ended early: "budget-tokens", "budget-seconds"

    def front(self) -> list[Candidate]:
        points = [c.objectives() for c in self.population]
        return [self.population[i] for i in pareto.pareto_front(points)]


class SearchConfig(BaseModel):
    search_id: str = Field(min_length=1)
    tenant_id: str = "default"
    generations: int = Field(ge=1, le=1000)
    population: int = Field(ge=2, le=1000)
    seed: int = 0
    budget_tokens: int | None = Field(None, ge=1)
    budget_seconds: float | None = Field(None, gt=0)
    mutation_rate: float = Field(0.3, ge=0, le=1)
    crossover_rate: float = Field(0.9, ge=0, le=1)


Evaluate = Callable[[Genome, list[str]], Awaitable[Fitness]]
Progress = Callable[[SearchState], None]


class Search:
    def __init__(self, store: Store, config: SearchConfig, space: Space, origin: Genome,
                 evaluate: Evaluate, *, clock: Callable[[], float] = time.monotonic,
                 progress: Progress | None = None) -> None:
        self.store, self.config, self.space, self.origin = store, config, space, origin
        self.evaluate, self.clock, self.progress = evaluate, clock, progress

    def load(self) -> SearchState | None:
        """The state after the last finished generation; None for a new search."""
        kept = self.store.latest_evolve_generation(self.config.tenant_id, self.config.search_id)
        return None if kept is None else SearchState.model_validate(kept[1])

    async def run(self) -> SearchState:
        """Run (or resume) the search to its last generation or its budget."""
        state = self.load()
        if state is None:
            state = SearchState()
            state.population = await self._evaluate_all(state, self._first(), 0)
            self._keep(state)
        while state.generation + 1 < self.config.generations and state.stopped is None:
            generation = state.generation + 1
            children = await self._evaluate_all(state, self._breed(state, generation), generation)
            pool = state.population + children
            survivors = pareto.select([c.objectives() for c in pool], self.config.population)
            state.population = [pool[i] for i in sorted(survivors)]
            state.generation = generation
            self._keep(state)
        return state

    def _first(self) -> list[tuple[Genome, list[str]]]:
        rng = random.Random(f"{self.config.seed}:0")
        genomes = [self.origin]
        for _ in range(self.config.population * 20):
            if len(genomes) == self.config.population:
                break
            genome = random_genome(self.space, rng)
            if genome not in genomes:
                genomes.append(genome)
        return [(genome, []) for genome in genomes]

    def _breed(self, state: SearchState, generation: int) -> list[tuple[Genome, list[str]]]:
        rng = random.Random(f"{self.config.seed}:{generation}")
        points = [c.objectives() for c in state.population]
        rank, crowd = pareto.ranks(points)

        def tournament() -> Candidate:
            i, j = rng.sample(range(len(state.population)), 2)
            best = min((i, j), key=lambda k: (rank[k], -crowd[k], k))
            return state.population[best]

        seen = {c.genome for c in state.population}
        children: list[tuple[Genome, list[str]]] = []
        for _ in range(self.config.population * 20):
            if len(children) == self.config.population:
                break
            a, b = tournament(), tournament()
            if rng.random() < self.config.crossover_rate:
                genome = crossover(a.genome, b.genome, rng)
                parents = sorted({a.fitness.version, b.fitness.version})
            else:
                genome, parents = a.genome, [a.fitness.version]
            genome = mutate(genome, self.space, rng, self.config.mutation_rate)
            if genome not in seen:
                seen.add(genome)
                children.append((genome, parents))
        return children

    async def _evaluate_all(self, state: SearchState, genomes: list[tuple[Genome, list[str]]],
                            generation: int) -> list[Candidate]:
        evaluated = []
        for genome, parents in genomes:
            stop = self._over_budget(state)
            if stop is not None:
                state.stopped = stop
                break
            started = self.clock()
            fitness = await self.evaluate(genome, parents)
            state.seconds += self.clock() - started
            state.tokens += fitness.tokens
            state.evaluations += 1
            evaluated.append(Candidate(genome=genome, fitness=fitness, parents=parents,
                                       generation=generation))
            if self.progress is not None:
                self.progress(state)
        return evaluated

    def _over_budget(self, state: SearchState) -> str | None:
        if self.config.budget_tokens is not None and state.tokens >= self.config.budget_tokens:
            return "budget-tokens"
        if (self.config.budget_seconds is not None
                and state.seconds >= self.config.budget_seconds):
            return "budget-seconds"
        return None

    def _keep(self, state: SearchState) -> None:
        self.store.put_evolve_generation(self.config.tenant_id, self.config.search_id,
                                         state.generation, state.model_dump(mode="json"))
