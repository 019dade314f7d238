"""`homeo agents canary|promote|rollback`: champion and challenger versions
of an agent (homeo.engine.canary)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from homeo.cli_audit import audit_log_or_exit
from homeo.cli_common import DatabaseUrl, DataDir, Tenant, fail, print_json, tenant_runtime

Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Name = Annotated[str, typer.Argument(help="The agent's name.")]
By = Annotated[str, typer.Option("--by", help="Who makes the change (kept with the canary).")]


def _act(tenant: str | None, data_dir: Any, database_url: str | None,
         act: Callable[[Any, Any], Any]) -> Any:
    """`act(store, settings)` on the tenant's store (`settings.default_tenant`
    is the tenant); an ended canary is audited."""
    from homeo.audit import canary_event
    from homeo.engine.canary import Canary, CanaryError

    with tenant_runtime(tenant, data_dir, database_url) as (settings, runtime):
        store = runtime.backends.store
        try:
            result = act(store, settings)
        except CanaryError as error:
            fail(str(error))
        ended = result[0] if isinstance(result, tuple) else result
        audit = audit_log_or_exit(settings, store)
        if isinstance(ended, Canary) and ended.status != "active" and audit is not None:
            audit.record(ended.tenant_id, canary_event(ended))
    return result


def _show(canary: Any, as_json: bool) -> None:
    if as_json:
        print_json(canary.model_dump(mode="json"))
        return
    print(f"{canary.agent}: {canary.status}; champion {canary.champion}, challenger"
          f" {canary.challenger} at {canary.share:.0%} of new runs (judged at"
          f" {canary.min_runs} ended runs of each)")
    found = canary.evidence
    if found.get("why"):
        print(f"  {found['why']}")


def canary_command(
    name: Name,
    challenger: Annotated[str | None, typer.Option(
        help="Start a canary: the version that gets a share of the new runs.")] = None,
    share: Annotated[float, typer.Option(help="With --challenger: the share of new runs.")] = 0.1,
    min_runs: Annotated[int, typer.Option(
        help="With --challenger: ended runs of each version before promoting.")] = 20,
    judge: Annotated[bool, typer.Option(
        "--judge", help="Judge the active canary now (workers do it every"
                        " HOMEO_SWEEP_SECONDS).")] = False,
    by: By = "cli",
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show the agent's canary; start one with --challenger; judge it with --judge.

    A canary sends --share of the agent's new runs to the challenger version;
    once each version has --min-runs ended runs, the challenger is promoted
    (its definition becomes the agent's) if it succeeds as often, and rolled
    back if it is worse (a one-sided two-proportion test)."""
    from homeo.engine import canary as canaries

    now = time.time()

    def act(store: Any, settings: Any) -> Any:
        tenant_id = settings.default_tenant
        if challenger is not None:
            return canaries.start(store, tenant_id, name, challenger, share,
                                  min_runs=min_runs, by=by, now=now)
        found = canaries.get(store, tenant_id, name, now)
        if found is None:
            raise canaries.CanaryError(
                f"agent {name!r} has no canary; start one with --challenger VERSION")
        if not judge:
            return found
        from homeo.observe.slo.definitions import load_slos

        return canaries.judge(store, found, by=by, now=now, slos=load_slos(settings.slo_file))

    _show(_act(tenant, data_dir, database_url, act), as_json)


def promote_command(
    name: Name,
    version: Annotated[str, typer.Argument(help="The version to make current.")],
    by: By = "cli",
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Make VERSION the agent's definition (ending its canary, if one is running)."""
    from homeo.engine import canary as canaries

    ended = _act(tenant, data_dir, database_url, lambda store, settings: canaries.promote(
        store, settings.default_tenant, name, version, by=by, now=time.time()))
    if as_json:
        print_json({"agent": name, "current": version,
                    "canary": None if ended is None else ended.model_dump(mode="json")})
        return
    print(f"{name} now runs version {version}"
          + ("" if ended is None else f" (its canary: {ended.status})"))


def rollback_command(
    name: Name,
    by: By = "cli",
    tenant: Tenant = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Roll back the agent's running canary, or, with none, make its previous
    version current again."""
    from homeo.engine import canary as canaries

    ended, current = _act(tenant, data_dir, database_url, lambda store, settings:
                          canaries.rollback(store, settings.default_tenant, name, by=by,
                                            now=time.time()))
    if as_json:
        print_json({"agent": name, "current": current,
                    "canary": None if ended is None else ended.model_dump(mode="json")})
        return
    print(f"{name} now runs version {current}"
          + ("" if ended is None else f" (challenger {ended.challenger} rolled back)"))
