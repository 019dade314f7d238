"""`homeo agents versions` and `homeo eval run|compare`: agent versions with
their KPIs, and evaluation suites run against a version (evolve/).

Like `homeo runs`, no server is needed: these open the database the settings
name. `homeo eval run` publishes the agents folder (the version to evaluate is
one of its agents' versions) and serves the queue here until its runs end.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from homeo.cli_common import (
    CONTEXT,
    AgentsDir,
    DatabaseUrl,
    DataDir,
    Tenant,
    fail,
    opened,
    settings_or_exit,
    tenant_runtime,
)
from homeo.evolve.stats import Estimate
from homeo.observe import logs

eval_app = typer.Typer(help="Run evaluation suites against agent versions and compare them.",
                       no_args_is_help=True, context_settings=CONTEXT)

Json = Annotated[bool, typer.Option("--json", help="Print JSON, as the HTTP API returns it.")]


def _ci(estimate: Estimate, digits: int = 2) -> str:
    if estimate.value is None:
        return "-"
    if estimate.n < 2:
        return f"{estimate.value:.{digits}f}"
    return f"{estimate.value:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def agent_versions(
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Every version of an agent, oldest first, with its KPIs and 95% intervals."""
    from homeo.evolve.kpis import version_kpis

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        versions = version_kpis(runtime.backends.store, settings.default_tenant, name)
    if not versions:
        fail(f"agent {name!r} has no versions for tenant {settings.default_tenant!r};"
             " `homeo agents` lists the agents folder, and `homeo serve`, `homeo worker` or"
             " `homeo run` publish it")
    if as_json:
        print(json.dumps({"agent": name, "versions": [v.model_dump(mode="json")
                                                      for v in versions]}))
        return
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"{'VERSION':<14}{'RUNS':>5}  {'SUCCESS':<20}{'P50':>8}{'P95':>8}  "
              f"{'TOKENS/RUN':<12}{'COST/RUN':<10}{'TOOL ERR':>8}  EVAL SCORE", markup=False)
    for v in versions:
        cost = "-" if v.cost_per_run.value is None else f"${v.cost_per_run.value:.4f}"
        tokens = "-" if v.tokens_per_run.value is None else f"{v.tokens_per_run.value:.0f}"
        mark = "*" if v.current else " "
        out.print(f"{v.version + mark:<14}{v.runs:>5}  {_ci(v.success_rate):<20}"
                  f"{_seconds(v.latency_p50):>8}{_seconds(v.latency_p95):>8}  {tokens:<12}"
                  f"{cost:<10}{v.tool_errors:>8}  {_ci(v.eval_score)}"
                  + (f" ({v.eval_cases} cases)" if v.eval_cases else ""), markup=False)
    out.print("* current version; intervals are 95% (Wilson for rates, Student's t for means)",
              markup=False)


@eval_app.command("run")
def eval_run(
    suite: Annotated[Path, typer.Argument(help="The suite: a .yaml or .jsonl file of cases.")],
    agent: Annotated[str, typer.Option(
        "--agent", help="NAME or NAME@VERSION (default: the agent's current version).")],
    report: Annotated[Path | None, typer.Option(
        help="Where to write the JSON report [DATA_DIR/evals/EVAL_ID.json].")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64,
                                             help="Runs at once in this process.")] = 1,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS|local",
        help="Run the cases as tasks on the Ray cluster at ADDRESS, or on a local Ray instance"
             " (`local`, bound to 127.0.0.1). Needs homeo's ray extra.")] = None,
    slice_size: Annotated[int | None, typer.Option(
        min=1, help="With --ray: cases per Ray task.")] = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    agents_dir: AgentsDir = None,
) -> None:
    """Run every case of SUITE as a run of the agent version, score it, print
    a table and write a JSON report; the results are kept for `eval compare`.
    The runs run in this process, or with --ray as Ray tasks."""
    from homeo.evolve.evals import SuiteError, load_suite, run_suite

    name, _, version = agent.partition("@")
    try:
        cases = load_suite(suite)
    except SuiteError as error:
        fail(str(error), code=2)
    settings = settings_or_exit(data_dir=data_dir, database_url=database_url,
                                agents_dir=agents_dir)
    logs.configure("warning", settings.log_json)  # the worker's info lines would bury the table
    tenant_id = settings.default_tenant
    with opened(settings) as runtime:
        store = runtime.backends.store
        record = store.get_agent(tenant_id, name)
        if record is None:
            known = ", ".join(a.name for a in store.list_agents(tenant_id)) or "none"
            fail(f"unknown agent {name!r}; agents defined: {known}", code=2)
        if not version:
            version = record.version or ""
        elif store.get_agent_version(tenant_id, name, version) is None:
            fail(f"agent {name!r} has no version {version!r}; `homeo agents versions {name}`"
                 " lists them", code=2)
        if ray is None:
            result = asyncio.run(run_suite(
                runtime.backends, cases, tenant_id=tenant_id, agent=name, version=version,
                worker=runtime.worker(concurrency), models=runtime.models.get))
        else:
            result = _run_on_ray(ray, slice_size, settings, runtime, cases, name, version)
    path = report or settings.data_dir / "evals" / f"{result.eval_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.model_dump_json(indent=2))
    if as_json:
        print(result.model_dump_json())
        return
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"{'CASE':<24}{'STATUS':<11}{'SCORE':>6}  {'PASS':<5} CHECKS", markup=False)
    for case in result.cases:
        checks = "; ".join(f"{c['kind']} {c['score']:g}: {c['reason']}" for c in case.checks)
        out.print(f"{case.case_id:<24}{case.status:<11}{case.score:>6.2f}  "
                  f"{'yes' if case.passed else 'no':<5} {checks}", markup=False)
    out.print(f"{result.suite} on {name}@{version}: score {_ci(result.score)},"
              f" passed {sum(c.passed for c in result.cases)}/{len(result.cases)}"
              f" ({_ci(result.pass_rate)}); report {path}", markup=False)


def _run_on_ray(address: str, slice_size: int | None, settings, runtime, cases,  # noqa: ANN001
                name: str, version: str):  # noqa: ANN202 (an EvalReport)
    from homeo.batch.on_ray import RayMissing, RayUnavailable, connect
    from homeo.evolve.evals import run_suite
    from homeo.evolve.on_ray import served_on_ray

    try:
        ray = connect(address)
    except RayMissing as error:
        fail(str(error), code=2)
    except RayUnavailable as error:
        fail(str(error))
    try:
        serve = served_on_ray(ray, settings, settings.default_tenant, slice_size=slice_size)
        return asyncio.run(run_suite(
            runtime.backends, cases, tenant_id=settings.default_tenant, agent=name,
            version=version, serve=serve, models=runtime.models.get))
    except ray.exceptions.RayError as error:
        fail(f"a Ray task failed beyond its retries ({str(error).strip().splitlines()[0]});"
             " the runs that ended are kept; run the evaluation again")
    finally:
        ray.shutdown()


@eval_app.command("compare")
def eval_compare(
    agent: Annotated[str, typer.Option("--agent", help="The agent's name.")],
    suite: Annotated[str | None, typer.Option(help="Only this suite (its name).")] = None,
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Each version's evaluation results side by side: mean score and pass
    rate with 95% intervals, and each case's latest score per version."""
    from homeo.evolve.compare import compare_versions

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        table = compare_versions(runtime.backends.store, settings.default_tenant, agent,
                                 suite=suite)
    if not table.versions:
        fail(f"no evaluation results for agent {agent!r}"
             + (f" on suite {suite!r}" if suite else "")
             + f"; run `homeo eval run SUITE --agent {agent}` first")
    if as_json:
        print(table.model_dump_json())
        return
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"{'VERSION':<14}{'CASES':>6}  {'SCORE':<20}PASS RATE", markup=False)
    for row in table.versions:
        out.print(f"{row.version:<14}{row.cases:>6}  {_ci(row.score):<20}{_ci(row.pass_rate)}",
                  markup=False)
    names = [row.version for row in table.versions]
    out.print("CASE".ljust(24) + "".join(name.ljust(14) for name in names), markup=False)
    for case_id, scores in table.case_scores.items():
        out.print(case_id[:23].ljust(24) + "".join(
            ("-" if scores.get(name) is None else f"{scores[name]:.2f}").ljust(14)
            for name in names), markup=False)
