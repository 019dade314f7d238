"""Genome operators: bounded by their space, reproducible under a seed."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from homeo.engine.agents import AgentSpec
from homeo.evolve.genome import (Genome, Space, crossover, from_spec, mutate, mutate_prompt,
                                 random_genome)

SPACE = Space(prompt_segments=["Be brief.", "Show your work.", "Use the calculator.",
                               "Answer in English."],
              models=["test:a", "test:b"], temperature=(0.0, 1.0), max_steps=(1, 6),
              tools=["homeo.examples.tools:calculate", "homeo.examples.tools:echo"],
              patterns=["tool_calling", "plan_execute"], max_prompt_segments=3)


def within(genome: Genome) -> bool:
    return (set(genome.prompt) <= set(SPACE.prompt_segments)
            and len(set(genome.prompt)) == len(genome.prompt)
            and genome.model in SPACE.models and 0.0 <= genome.temperature <= 1.0
            and 1 <= genome.max_steps <= 6 and set(genome.tools) <= set(SPACE.tools)
            and genome.pattern in SPACE.patterns)


def lineage(seed: int) -> list[Genome]:
    rng = random.Random(seed)
    population = [random_genome(SPACE, rng) for _ in range(6)]
    for _ in range(30):
        a, b = rng.sample(population, 2)
        population.append(mutate(crossover(a, b, rng), SPACE, rng))
    return population


def test_operators_stay_in_the_space_and_repeat_under_a_seed() -> None:
    first = lineage(3)
    assert all(within(genome) for genome in first)
    assert all(len(genome.prompt) <= 3 for genome in first[:6])
    assert lineage(3) == first
    assert lineage(4) != first
    assert len({genome.key() for genome in first}) > 10


def test_mutation_always_changes_something() -> None:
    rng = random.Random(1)
    genome = random_genome(SPACE, rng)
    for _ in range(50):
        child = mutate(genome, SPACE, rng, rate=0.05)
        assert child != genome
        genome = child


def test_prompt_mutation_moves() -> None:
    rng = random.Random(0)
    seen = {mutate_prompt(("Be brief.", "Show your work."), SPACE, rng) for _ in range(200)}
    assert ("Show your work.", "Be brief.") in seen          # swap
    assert ("Be brief.",) in seen and ("Show your work.",) in seen  # drop
    assert any(len(p) == 3 for p in seen)                    # add
    assert any(len(p) == 2 and "Use the calculator." in p for p in seen)  # replace
    assert mutate_prompt((), Space(models=["m"]), rng) == ()


def test_crossover_takes_each_gene_from_a_parent() -> None:
    rng = random.Random(5)
    a = Genome(prompt=("Be brief.", "Show your work."), model="test:a", temperature=0.1,
               max_steps=2, tools=(), pattern="tool_calling")
    b = Genome(prompt=("Use the calculator.",), model="test:b", temperature=0.9,
               max_steps=5, tools=("homeo.examples.tools:echo",), pattern="plan_execute")
    children = [crossover(a, b, rng) for _ in range(100)]
    for child in children:
        for gene in ("model", "temperature", "max_steps", "tools", "pattern"):
            assert getattr(child, gene) in (getattr(a, gene), getattr(b, gene))
        assert set(child.prompt) <= set(a.prompt) | set(b.prompt)
    assert {child.model for child in children} == {"test:a", "test:b"}


def test_a_genome_applies_to_and_comes_from_an_agent() -> None:
    spec = AgentSpec(name="calc", model="test:a", system_prompt="Be brief.", max_steps=4,
                     tools=["homeo.examples.tools:calculate"])
    genome = from_spec(spec)
    assert genome.apply(spec) == spec.model_copy(update={"temperature": 0.0})
    changed = Genome(prompt=("Be brief.", "Show your work."), model="test:b",
                     temperature=0.5, max_steps=3, tools=(), pattern="plan_execute")
    applied = changed.apply(spec)
    assert (applied.system_prompt, applied.model, applied.temperature, applied.max_steps,
            applied.tools, applied.pattern) == ("Be brief.\nShow your work.", "test:b", 0.5, 3,
                                                [], "plan_execute")
    around = Space.around(spec)
    assert around.models == ["test:a"] and around.max_steps == (1, 8)


def test_a_space_rejects_bad_ranges() -> None:
    with pytest.raises(ValidationError, match="temperature range"):
        Space(models=["m"], temperature=(1.5, 0.5))
    with pytest.raises(ValidationError, match="max_steps range"):
        Space(models=["m"], max_steps=(0, 3))
