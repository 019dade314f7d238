"""The genome an evolutionary search varies, and its variation operators.

A genome is the part of an agent that the search may change: the system
prompt (as an ordered list of segments drawn from a pool), the model alias,
the temperature, max_steps, the subset of the agent's tools it may use, and
its pattern. A `Space` bounds each gene. Every operator takes a
`random.Random`, so a search under one seed makes the same genomes every time.

Operators:
- mutation, gene by gene with probability `rate`: a prompt gains, loses,
  swaps or replaces a segment; the model and pattern are redrawn; temperature
  moves by a Gaussian step clipped to its range; max_steps moves by +-1..2;
  one tool is toggled.
- crossover: one-point crossover of the two prompts' segment lists, uniform
  crossover of every other gene.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field, model_validator

from homeo.engine.agents import AgentSpec, Pattern


class Space(BaseModel):
    """What the search may try; each list must be non-empty where a gene draws from it."""

    model_config = ConfigDict(extra="forbid")

    prompt_segments: list[str] = Field(default_factory=list)
    models: list[str] = Field(min_length=1)
    temperature: tuple[float, float] = (0.0, 1.0)
    max_steps: tuple[int, int] = (1, 10)
    tools: list[str] = Field(default_factory=list)
    patterns: list[Pattern] = Field(default_factory=lambda: ["tool_calling"], min_length=1)
    max_prompt_segments: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> Space:
        low, high = self.temperature
        if not 0 <= low <= high <= 2:
            raise ValueError(f"temperature range {self.temperature} must lie within 0..2,"
                             " low first")
        low_steps, high_steps = self.max_steps
        if not 1 <= low_steps <= high_steps <= 100:
            raise ValueError(f"max_steps range {self.max_steps} must lie within 1..100,"
                             " low first")
        return self

    @classmethod
    def around(cls, spec: AgentSpec, prompt_segments: list[str] | None = None,
               models: list[str] | None = None) -> Space:
        """A space centred on a published agent: its own model, tools and pattern."""
        segments = prompt_segments if prompt_segments is not None else (
            [spec.system_prompt] if spec.system_prompt else [])
        return cls(prompt_segments=segments, models=models or [spec.model],
                   max_steps=(1, max(spec.max_steps * 2, 2)), tools=list(spec.tools),
                   patterns=[spec.pattern])


class Genome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: tuple[str, ...] = ()
    model: str
    temperature: float
    max_steps: int
    tools: tuple[str, ...] = ()
    pattern: Pattern = "tool_calling"

    def key(self) -> str:
        """A stable identity, so one genome is evaluated once per search."""
        return self.model_dump_json()

    def apply(self, spec: AgentSpec) -> AgentSpec:
        """`spec` with this genome's genes in place of its own."""
        return spec.model_copy(update={
            "system_prompt": "\n".join(self.prompt), "model": self.model,
            "temperature": self.temperature, "max_steps": self.max_steps,
            "tools": list(self.tools), "pattern": self.pattern})


def from_spec(spec: AgentSpec) -> Genome:
    """The genome an agent has now: the seed of a search."""
    return Genome(prompt=(spec.system_prompt,) if spec.system_prompt else (),
                  model=spec.model, temperature=spec.temperature or 0.0,
                  max_steps=spec.max_steps, tools=tuple(spec.tools), pattern=spec.pattern)


def random_genome(space: Space, rng: random.Random) -> Genome:
    count = rng.randint(0, min(len(space.prompt_segments), space.max_prompt_segments))
    return Genome(
        prompt=tuple(rng.sample(space.prompt_segments, count)),
        model=rng.choice(space.models),
        temperature=round(rng.uniform(*space.temperature), 2),
        max_steps=rng.randint(*space.max_steps),
        tools=tuple(tool for tool in space.tools if rng.random() < 0.5),
        pattern=rng.choice(space.patterns))


def mutate_prompt(prompt: tuple[str, ...], space: Space, rng: random.Random) -> tuple[str, ...]:
    """Add, drop, swap or replace one segment (whichever the prompt allows)."""
    segments = list(prompt)
    unused = [s for s in space.prompt_segments if s not in segments]
    moves = []
    if unused and len(segments) < space.max_prompt_segments:
        moves.append("add")
    if segments:
        moves.append("drop")
    if len(segments) >= 2:
        moves.append("swap")
    if segments and unused:
        moves.append("replace")
    if not moves:
        return prompt
    move = rng.choice(moves)
    if move == "add":
        segments.insert(rng.randint(0, len(segments)), rng.choice(unused))
    elif move == "drop":
        segments.pop(rng.randrange(len(segments)))
    elif move == "swap":
        i, j = rng.sample(range(len(segments)), 2)
        segments[i], segments[j] = segments[j], segments[i]
    else:
        segments[rng.randrange(len(segments))] = rng.choice(unused)
    return tuple(segments)


def mutate(genome: Genome, space: Space, rng: random.Random, rate: float = 0.3) -> Genome:
    """`genome` with each gene changed with probability `rate` (at least one changes
    when the space allows any change)."""
    genes = dict(genome.model_dump())
    for attempt in range(8):
        # The last attempt changes every gene, so a low rate cannot leave a clone.
        rate = 1.0 if attempt == 7 else rate
        if rng.random() < rate:
            genes["prompt"] = mutate_prompt(tuple(genes["prompt"]), space, rng)
        if rng.random() < rate:
            genes["model"] = rng.choice(space.models)
        if rng.random() < rate:
            low, high = space.temperature
            genes["temperature"] = round(min(high, max(low, genes["temperature"]
                                                       + rng.gauss(0, 0.2))), 2)
        if rng.random() < rate:
            low_steps, high_steps = space.max_steps
            step = rng.choice((-2, -1, 1, 2))
            genes["max_steps"] = min(high_steps, max(low_steps, genes["max_steps"] + step))
        if rng.random() < rate and space.tools:
            toggled = rng.choice(space.tools)
            kept = set(genes["tools"]) ^ {toggled}
            genes["tools"] = tuple(tool for tool in space.tools if tool in kept)
        if rng.random() < rate:
            genes["pattern"] = rng.choice(space.patterns)
        child = Genome(**genes)
        if child != genome:
            return child
    return Genome(**genes)


def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
    """One-point crossover of the prompts, uniform crossover of the other genes."""
    cut_a = rng.randint(0, len(a.prompt))
    cut_b = rng.randint(0, len(b.prompt))
    prompt: list[str] = []
    for segment in a.prompt[:cut_a] + b.prompt[cut_b:]:
        if segment not in prompt:
            prompt.append(segment)
    genes = {name: getattr(rng.choice((a, b)), name)
             for name in ("model", "temperature", "max_steps", "tools", "pattern")}
    return Genome(prompt=tuple(prompt), **genes)
