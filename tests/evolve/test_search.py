"""NSGA-II search over genomes on a real SQLite store: the front it returns is
non-dominated, one seed gives one search, a SIGKILLed search resumes to the
same end, and budgets stop it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homeo.backends import open_backends
from homeo.evolve.genome import Genome, Space
from homeo.evolve.pareto import dominates
from homeo.evolve.search import Fitness, Search, SearchConfig, SearchState

SPACE = Space(prompt_segments=["Be brief.", "Show your work.", "Check twice.", "Be kind."],
              models=["test:small", "test:large"], max_steps=(1, 8),
              tools=["t1", "t2", "t3"], max_prompt_segments=4)
ORIGIN = Genome(prompt=("Be brief.",), model="test:small", temperature=0.0, max_steps=2,
                tools=("t1",))


async def fitness_of(genome: Genome, parents: list[str]) -> Fitness:
    """A landscape with a real trade-off: the large model, more steps and
    "Check twice." score higher and cost more tokens."""
    large = genome.model == "test:large"
    score = (0.4 * large + 0.05 * genome.max_steps + 0.1 * ("Check twice." in genome.prompt)
             + 0.05 * len(genome.tools) - 0.1 * abs(genome.temperature - 0.3))
    tokens = (100 if large else 20) * genome.max_steps + 10 * len(genome.prompt)
    version = hashlib.sha256(genome.key().encode()).hexdigest()[:12]
    return Fitness(score=round(score, 6), tokens=tokens, version=version)


def run_search(url: str, **config: object) -> SearchState:
    backends = open_backends(url)
    try:
        settings = SearchConfig(search_id="s", **{"generations": 5, "population": 6,
                                                  "seed": 11, **config})
        return asyncio.run(Search(backends.store, settings, SPACE, ORIGIN, fitness_of).run())
    finally:
        backends.close()


def summary(state: SearchState) -> list[tuple[str, float, int]]:
    return [(c.genome.key(), c.fitness.score, c.fitness.tokens) for c in state.population]


def test_the_front_is_non_dominated_and_improves_on_the_origin(tmp_path: Path) -> None:
    state = run_search(f"sqlite:///{tmp_path / 'a.db'}")
    assert state.generation == 4 and len(state.population) == 6
    points = [c.objectives() for c in state.population]
    front = state.front()
    assert front
    for candidate in front:
        assert not any(dominates(p, candidate.objectives()) for p in points)
    for candidate in state.population:
        if candidate not in front:
            assert any(dominates(f.objectives(), candidate.objectives()) for f in front)
    best = max(c.fitness.score for c in state.population)
    assert best > asyncio.run(fitness_of(ORIGIN, [])).score
    bred = [c for c in state.population if c.generation > 0]
    assert bred and all(c.parents for c in bred)
    assert state.evaluations > 6


def test_one_seed_gives_one_search(tmp_path: Path) -> None:
    first = run_search(f"sqlite:///{tmp_path / 'a.db'}")
    again = run_search(f"sqlite:///{tmp_path / 'b.db'}")
    other = run_search(f"sqlite:///{tmp_path / 'c.db'}", seed=12)
    assert summary(again) == summary(first)
    assert summary(other) != summary(first)


def test_budgets_end_the_search_early(tmp_path: Path) -> None:
    state = run_search(f"sqlite:///{tmp_path / 'a.db'}", budget_tokens=500)
    assert state.stopped == "budget-tokens"
    assert state.tokens >= 500 and state.generation < 4
    ticks = iter(range(1000))
    backends = open_backends(f"sqlite:///{tmp_path / 'b.db'}")
    config = SearchConfig(search_id="s", generations=5, population=6, budget_seconds=3)
    timed = asyncio.run(Search(backends.store, config, SPACE, ORIGIN, fitness_of,
                               clock=lambda: float(next(ticks))).run())
    backends.close()
    assert timed.stopped == "budget-seconds" and timed.evaluations == 3


CHILD = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_search import ORIGIN, SPACE, fitness_of
from homeo.backends import open_backends
from homeo.evolve.search import Search, SearchConfig

async def hang_in_generation_3(genome, parents):
    state = search.load()
    if state is not None and state.generation >= 2:
        Path({marker!r}).write_text("generation 2 kept")
        await asyncio.Event().wait()
    return await fitness_of(genome, parents)

backends = open_backends({url!r})
search = Search(backends.store, SearchConfig(search_id="s", generations=5, population=6,
                seed=11), SPACE, ORIGIN, hang_in_generation_3)
asyncio.run(search.run())
"""


@pytest.mark.slow
def test_a_killed_search_resumes_to_the_same_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    marker = tmp_path / "marker"
    code = CHILD.format(tests=str(Path(__file__).parent), marker=str(marker), url=url)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", code], env=env,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the search never reached generation 3"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    backends = open_backends(url)
    kept = Search(backends.store, SearchConfig(search_id="s", generations=5, population=6),
                  SPACE, ORIGIN, fitness_of).load()
    backends.close()
    assert kept is not None and kept.generation == 2
    resumed = run_search(url)
    uninterrupted = run_search(f"sqlite:///{tmp_path / 'whole.db'}")
    assert resumed.generation == 4
    assert summary(resumed) == summary(uninterrupted)
