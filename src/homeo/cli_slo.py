"""`homeo slo`: each SLO's value, error budget left and burn rates, from the
store (every process's runs and steps); `homeo slo rules` and `homeo slo
dashboard` write the Prometheus rules and Grafana dashboard for the same SLOs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from homeo.cli_common import (
    CONTEXT,
    DatabaseUrl,
    DataDir,
    Json,
    console,
    json_errors,
    opened,
    print_json,
    settings_or_exit,
)

slo_app = typer.Typer(
    help="Show the SLOs (HOMEO_SLO_FILE) now; write their Prometheus rules and Grafana dashboard.",
    invoke_without_command=True, context_settings=CONTEXT)
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")]


@slo_app.callback()
def show(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(
        help="Count only this tenant's runs and steps (default: every tenant).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON as GET /v1/slo does.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Each SLO's value over its window, error budget left and burn rates over 5m, 1h, 6h."""
    if ctx.invoked_subcommand is not None:
        return
    from homeo.observe.slo.definitions import load_slos
    from homeo.observe.slo.measure import BURN_WINDOWS, measure

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    slos = load_slos(settings.slo_file)  # checked with the settings
    now = time.time()
    with opened(settings, publish=False) as runtime:
        statuses = measure(slos, runtime.backends.store, now=now, tenant_id=tenant)
    if as_json:
        print(json.dumps({"tenant": tenant, "at": now,
                          "slos": [status.to_json() for status in statuses]}))
        return
    burns = "  ".join(f"{'burn ' + name:>9}" for name, _ in BURN_WINDOWS)
    print(f"{'SLO':<24} {'objective':>9} {'window':>6} {'value':>9} {'events':>8}"
          f" {'budget left':>11}  {burns}")
    for status in statuses:
        slo = status.slo
        if status.note:
            print(f"{slo.name:<24} {slo.objective:>9.2%} {slo.window:>6}  {status.note}")
            continue
        rates = "  ".join(f"{_number(status.burn_rates[name]):>9}" for name, _ in BURN_WINDOWS)
        print(f"{slo.name:<24} {slo.objective:>9.2%} {slo.window:>6}"
              f" {_percent(status.value):>9} {status.total:>8}"
              f" {_percent(status.budget_left):>11}  {rates}")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@slo_app.command("rules")
def rules(out: Out = None, as_json: Json = False) -> None:
    """Write Prometheus recording rules and burn-rate alerts (check: promtool check rules).
    With --json: {"slos", "out", "rules"}, the rules as the YAML holds them."""
    import yaml

    from homeo.observe.slo.definitions import load_slos
    from homeo.observe.slo.rules import render_rules

    with json_errors(as_json):
        slos = load_slos(settings_or_exit().slo_file)
    text = render_rules(slos)
    _write(text, out, as_json)
    if as_json:
        print_json({"slos": [slo.name for slo in slos], "out": _name(out),
                    "rules": yaml.safe_load(text)})


@slo_app.command("dashboard")
def dashboard(out: Out = None, as_json: Json = False) -> None:
    """Write a Grafana dashboard (JSON) of the SLOs, to import into Grafana.
    With --json: {"slos", "out", "dashboard"}."""
    from homeo.observe.slo.dashboard import render_dashboard
    from homeo.observe.slo.definitions import load_slos

    with json_errors(as_json):
        slos = load_slos(settings_or_exit().slo_file)
    text = render_dashboard(slos)
    _write(text, out, as_json)
    if as_json:
        print_json({"slos": [slo.name for slo in slos], "out": _name(out),
                    "dashboard": json.loads(text)})


def _name(out: Path | None) -> str | None:
    return None if out is None else str(out)


def _write(text: str, out: Path | None, as_json: bool) -> None:
    """To `out`, or to stdout unless --json prints the same inside its object."""
    if out is None:
        if not as_json:
            print(text, end="")
        return
    out.write_text(text)
    console.print(f"homeo: wrote {out}", markup=False)
