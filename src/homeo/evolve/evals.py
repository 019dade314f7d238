"""Evaluation suites: cases run as real runs of one agent version, then scored.

A suite is a YAML file (`name`, `cases`) or a JSONL file (one case a line; the
suite is named after the file). A case has an `id`, an `input`, and under
`expect` one or more checks:

- `exact`: the output equals this text (surrounding whitespace aside);
- `contains`: the output contains this text, or each text of a list;
- `regex`: the output matches this Python regular expression (`re.search`);
- `json_schema`: the output is JSON that matches this schema;
- `tools_called` / `tools_not_called`: tools the run must / must not call;
- `judge`: `{rubric, model, pass_score}`: a model alias grades the output
  against the rubric with a structured answer `{"score": 0..1, "reason"}`;
  it passes at `pass_score` (default 0.5) or above.

A check scores 1 or 0 (the judge its score); a case scores the mean of its
checks, and passes when every check does. A run that did not succeed scores 0
on every check. Every case's result is stored per agent version, so versions
compare on the same suite (`homeo eval compare`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from homeo.backends import Backends
from homeo.engine.submit import submit_run
from homeo.engine.worker import Worker
from homeo.evolve.stats import SCORE, Estimate, mean, wilson
from homeo.ids import new_id
from homeo.llm.base import Message, Model, ModelError
from homeo.llm.structured import InvalidSchema, check_schema, problem_with, request_structured
from homeo.store.base import Store
from homeo.store.models import EvalResult, NewRun, Run, Step

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1},
                   "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}
JUDGE_PROMPT = (
    "You grade an AI agent's answer against a rubric. Reply with JSON only:"
    ' {"score": a number from 0 (fails the rubric) to 1 (meets it fully), "reason": one'
    " sentence}."
)


class SuiteError(ValueError):
    """A suite file that cannot be read; the message names the file and the fix."""


class Judge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rubric: str = Field(min_length=1)
    model: str = "default"
    pass_score: float = Field(0.5, ge=0, le=1)


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: str | None = None
    contains: list[str] | None = None
    regex: str | None = None
    json_schema: dict[str, Any] | None = None
    tools_called: list[str] = Field(default_factory=list)
    tools_not_called: list[str] = Field(default_factory=list)
    judge: Judge | None = None

    @field_validator("contains", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return value

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                check_schema(value)
            except InvalidSchema as error:
                raise ValueError(str(error)) from None
        return value

    def checks(self) -> list[str]:
        given = [name for name in ("exact", "contains", "regex", "json_schema", "judge")
                 if getattr(self, name) is not None]
        return given + [name for name in ("tools_called", "tools_not_called")
                        if getattr(self, name)]


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    input: str = Field(min_length=1)
    expect: Expect


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    cases: list[Case] = Field(min_length=1)


def load_suite(path: Path) -> Suite:
    """The suite in a .yaml/.yml or .jsonl file; SuiteError says what is wrong."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SuiteError(f"{path}: cannot read the suite: {error.strerror}") from None
    try:
        if path.suffix == ".jsonl":
            cases = [json.loads(line) for line in text.splitlines() if line.strip()]
            data: Any = {"name": path.stem, "cases": cases}
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise SuiteError(f"{path}: a suite is a .yaml, .yml or .jsonl file")
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise SuiteError(f"{path}: cannot parse the suite: {error}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a YAML suite is a mapping with 'name' and 'cases'")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SuiteError(f"{path}: {where}: {first['msg']}") from None
    seen: set[str] = set()
    for case in suite.cases:
        if not case.expect.checks():
            raise SuiteError(f"{path}: case {case.id!r}: expect has no check; give at least one"
                             " of exact, contains, regex, json_schema, tools_called,"
                             " tools_not_called, judge")
        if case.id in seen:
            raise SuiteError(f"{path}: case id {case.id!r} is used twice; ids must be unique")
        seen.add(case.id)
    return suite


class EvalReport(BaseModel):
    eval_id: str
    suite: str
    agent: str
    agent_version: str
    score: Estimate
    pass_rate: Estimate
    cases: list[EvalResult]


ModelLookup = Callable[[str], Model]
# Works the queue until the runs with these ids have ended.
Serve = Callable[[list[str]], Awaitable[None]]


async def run_suite(
    backends: Backends,
    suite: Suite,
    *,
    tenant_id: str,
    agent: str,
    version: str,
    models: ModelLookup,
    worker: Worker | None = None,
    serve: Serve | None = None,
    now: Callable[[], float] = time.time,
    poll_seconds: float = 0.05,
) -> EvalReport:
    """Submit every case as a run of `agent` at `version`, have them run until
    they have all ended (or wait for a person), score each run, and store the
    results. The runs run here, on `worker`, or elsewhere: `serve` gets their
    ids and returns once they have ended (as Ray tasks, evolve/on_ray.py)."""
    if serve is None:
        if worker is None:
            raise ValueError("run_suite needs a worker, or a serve to run the cases elsewhere")
        serve = served_here(backends, worker, tenant_id, poll_seconds)
    elif worker is not None:
        raise ValueError("run_suite runs the cases on a worker or through serve, not both")
    eval_id = new_id("eval", now())
    submitted = []
    for case in suite.cases:
        run, _ = await asyncio.to_thread(submit_run, backends, NewRun(
            tenant_id=tenant_id, agent=agent, input=case.input, agent_version=version,
            idempotency_key=f"{eval_id}:{case.id}"))
        submitted.append((case, run.id))
    await serve([run_id for _, run_id in submitted])
    results = []
    for case, run_id in submitted:
        run = await asyncio.to_thread(backends.store.get_run, tenant_id, run_id)
        steps = await asyncio.to_thread(backends.store.list_steps, tenant_id, run_id)
        checks = await score(case.expect, run, steps, models)
        values = [check["score"] for check in checks]
        results.append(EvalResult(
            tenant_id=tenant_id, eval_id=eval_id, suite=suite.name, agent=agent,
            agent_version=version, case_id=case.id, run_id=run_id, status=run.status,
            score=sum(values) / len(values), passed=all(check["passed"] for check in checks),
            checks=checks, at=now()))
    await asyncio.to_thread(backends.store.put_eval_results, results)
    return report_of(eval_id, suite.name, agent, version, results)


def served_here(backends: Backends, worker: Worker, tenant_id: str, poll_seconds: float
                ) -> Serve:
    """Serve: `worker` works the queue in this process until the runs have ended."""
    async def serve(run_ids: list[str]) -> None:
        await serve_until_ended(backends, worker, tenant_id, run_ids, poll_seconds)
    return serve


async def serve_until_ended(backends: Backends, worker: Worker, tenant_id: str,
                             run_ids: list[str], poll_seconds: float) -> None:
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        pending = list(run_ids)
        while pending and not serving.done():
            statuses = [await asyncio.to_thread(backends.store.run_status, tenant_id, run_id)
                        for run_id in pending]
            pending = [run_id for run_id, status in zip(pending, statuses, strict=True)
                       if status in ("queued", "running")]
            if pending:
                await asyncio.sleep(poll_seconds)
    finally:
        stop.set()
        await serving


def evaluations(store: Store, tenant_id: str, agent: str) -> list[EvalReport]:
    """The agent's stored evaluations, newest first, each with its cases."""
    grouped: dict[str, list[EvalResult]] = {}
    for result in store.list_eval_results(tenant_id, agent):
        grouped.setdefault(result.eval_id, []).append(result)
    reports = [report_of(eval_id, cases[0].suite, agent, cases[0].agent_version, cases)
               for eval_id, cases in grouped.items()]
    return sorted(reports, key=lambda report: max(case.at for case in report.cases),
                  reverse=True)


def report_of(eval_id: str, suite: str, agent: str, version: str,
              results: list[EvalResult]) -> EvalReport:
    return EvalReport(eval_id=eval_id, suite=suite, agent=agent, agent_version=version,
                      score=mean([r.score for r in results], SCORE),
                      pass_rate=wilson(sum(r.passed for r in results), len(results)),
                      cases=results)


async def score(expect: Expect, run: Run, steps: list[Step],
                models: ModelLookup) -> list[dict[str, Any]]:
    """Each check's {"kind", "score", "passed", "reason"} for the ended `run`."""
    kinds = expect.checks()
    if run.status != "succeeded":
        why = f"the run {run.status}" + (f": {run.error}" if run.error else "")
        return [_check(kind, False, why) for kind in kinds]
    output = run.output or ""
    called = {step.name for step in steps if step.kind == "tool" and step.status == "succeeded"}
    checks = []
    for kind in kinds:
        if kind == "exact":
            ok = output.strip() == (expect.exact or "").strip()
            checks.append(_check(kind, ok, "equal" if ok else f"got {output[:200]!r}"))
        elif kind == "contains":
            missing = [text for text in expect.contains or [] if text not in output]
            checks.append(_check(kind, not missing, "all found" if not missing
                                 else f"missing {missing!r} in {output[:200]!r}"))
        elif kind == "regex":
            ok = re.search(expect.regex or "", output) is not None
            checks.append(_check(kind, ok, "matches" if ok else f"no match in {output[:200]!r}"))
        elif kind == "json_schema":
            problem = problem_with(output, check_schema(expect.json_schema or {}))
            checks.append(_check(kind, problem is None, problem or "matches the schema"))
        elif kind == "tools_called":
            missing = [tool for tool in expect.tools_called if tool not in called]
            checks.append(_check(kind, not missing, "all called" if not missing
                                 else f"not called: {', '.join(missing)}"))
        elif kind == "tools_not_called":
            used = [tool for tool in expect.tools_not_called if tool in called]
            checks.append(_check(kind, not used, "none called" if not used
                                 else f"called: {', '.join(used)}"))
        elif kind == "judge" and expect.judge is not None:
            checks.append(await _judge(expect.judge, run.input, output, models))
    return checks


def _check(kind: str, ok: bool, reason: str) -> dict[str, Any]:
    return {"kind": kind, "score": 1.0 if ok else 0.0, "passed": ok, "reason": reason}


async def _judge(judge: Judge, task: str, output: str, models: ModelLookup) -> dict[str, Any]:
    try:
        model = await asyncio.to_thread(models, judge.model)
        response = await request_structured(model, [
            Message(role="system", content=JUDGE_PROMPT),
            Message(role="user", content=f"Rubric: {judge.rubric}\n\nTask: {task}\n\n"
                                         f"Answer: {output}"),
        ], JUDGE_SCHEMA, max_tokens=200, temperature=0)
    except ModelError as error:
        return {"kind": "judge", "score": 0.0, "passed": False,
                "reason": f"the judge model {judge.model!r} failed: {error}"}
    verdict = json.loads(response.message.content)
    value = float(verdict["score"])
    return {"kind": "judge", "score": value, "passed": value >= judge.pass_score,
            "reason": str(verdict["reason"])}
