"""Evaluate a genome for real: keep it as a version of the agent, run the
suite against that version, and measure the mean score and the tokens used.

Candidates never touch the live agent: each is kept as a version of a
shadow agent, NAME-evolve (`shadow_name`), and the suite's runs are submitted
with that version. The genetic lineage (which candidates' versions a child was
bred from) is kept in the search state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from homeo.backends import Backends
from homeo.engine.agents import AgentSpec
from homeo.engine.worker import Worker
from homeo.evolve.evals import ModelLookup, Suite, run_suite
from homeo.evolve.genome import Genome
from homeo.evolve.search import Fitness


def shadow_name(agent: str) -> str:
    """The agent a search of `agent` keeps its candidates on."""
    return f"{agent[:57]}-evolve"


class SuiteEvaluator:
    """`workers` makes the worker that serves one evaluation's runs (a worker
    serves one evaluation and stops)."""

    def __init__(self, backends: Backends, suite: Suite, *, tenant_id: str, agent: str,
                 workers: Callable[[], Worker], models: ModelLookup, author: str = "evolve",
                 poll_seconds: float = 0.05) -> None:
        record = backends.store.get_agent(tenant_id, agent)
        if record is None:
            raise ValueError(f"agent {agent!r} is not defined for tenant {tenant_id!r}")
        self.backends, self.suite, self.tenant_id, self.agent = backends, suite, tenant_id, agent
        self.base = AgentSpec.model_validate(record.spec)
        self.workers, self.models, self.author = workers, models, author
        self.poll_seconds = poll_seconds

    @property
    def shadow(self) -> str:
        return shadow_name(self.agent)

    def register(self, genome: Genome) -> str:
        """Keep `genome` as a version of the shadow agent; its version."""
        spec = genome.apply(self.base).model_copy(update={"name": self.shadow})
        kept = self.backends.store.put_agent(self.tenant_id, self.shadow,
                                             spec.model_dump(mode="json"), author=self.author)
        return str(kept.version)

    async def __call__(self, genome: Genome, parents: list[str]) -> Fitness:
        version = await asyncio.to_thread(self.register, genome)
        report = await run_suite(self.backends, self.suite, tenant_id=self.tenant_id,
                                 agent=self.shadow, version=version, worker=self.workers(),
                                 models=self.models, poll_seconds=self.poll_seconds)
        tokens = 0
        for result in report.cases:
            run = await asyncio.to_thread(self.backends.store.get_run, self.tenant_id,
                                          result.run_id)
            if run is not None:
                tokens += run.input_tokens + run.output_tokens
        return Fitness(score=report.score.value or 0.0, tokens=tokens, version=version)
