"""`homeo autonomic status`: what the autonomic loops (HOMEO_AUTONOMIC=on in
`homeo serve` and `homeo worker`) found and did, from the store: live
signals, diagnoses that hold with their evidence, recently cleared ones, and
recent decisions with their explanations. `homeo autonomic approve ID` lets
a decision that waits for approval run."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Annotated

import typer

from homeo.cli_common import (
    CONTEXT,
    DatabaseUrl,
    DataDir,
    Json,
    fail,
    json_errors,
    opened,
    print_json,
    settings_or_exit,
)

autonomic_app = typer.Typer(
    help="What the autonomic loop (HOMEO_AUTONOMIC) sees, diagnoses and does.",
    no_args_is_help=True, context_settings=CONTEXT)


@autonomic_app.command("status")
def show_status(
    tenant: Annotated[str | None, typer.Option(
        help="Leave out what belongs to other tenants (default: show every tenant's).")] = None,
    observe: Annotated[bool, typer.Option(
        "--observe", help="First observe and analyze once from this command (its"
        " baselines are empty, so only threshold rules can fire) and keep the result;"
        " it plans and changes nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON as GET /v1/autonomic"
                                                         " does.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Live signals, the diagnoses that hold (with evidence), recently cleared
    ones, and recent decisions with their explanations."""
    from homeo.autonomic.loop import status

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    with opened(settings, publish=False) as runtime:
        if observe:
            loop = runtime.autonomic_loop(f"cli:{socket.gethostname()}:{os.getpid()}",
                                          act=False)
            loop.step()
        found = status(runtime.backends.store, now=time.time(), tenant_id=tenant)
    found["loop"] = settings.autonomic
    found["act"] = settings.autonomic_act
    if as_json:
        print(json.dumps(found))
        return
    if not found["signals"]:
        print("No signals in the last 60s: no autonomic loop is running on this database"
              " (set HOMEO_AUTONOMIC=on for `homeo serve` or `homeo worker`), or pass --observe.")
    else:
        print(f"{'signal':<34} {'subject':<40} {'value':>14}  observer")
        for signal in found["signals"]:
            print(f"{signal['name']:<34} {signal['subject'][:40]:<40}"
                  f" {_number(signal['value']):>14}  {signal['observer']}")
    print()
    diagnoses = found["diagnoses"]
    print(f"Diagnoses holding: {len(diagnoses)}" if diagnoses else "Diagnoses holding: none")
    for diagnosis in diagnoses:
        print(f"  {diagnosis['kind']} {diagnosis['subject'] or '-'}"
              f" (confidence {diagnosis['confidence']:.2f}, since"
              f" {_ago(found['at'] - diagnosis['first_seen'])}): {diagnosis['summary']}")
        for evidence in diagnosis["evidence"]:
            subject = f"[{evidence['subject']}]" if evidence.get("subject") else ""
            extra = (f" baseline {_number(evidence['baseline'])}, z {evidence['z']}"
                     if "baseline" in evidence else "")
            print(f"      {evidence['signal']}{subject} = {_number(evidence['value'])}"
                  f" ({evidence['rule']}{extra})")
    if found["cleared"]:
        print("Recently cleared:")
        for diagnosis in found["cleared"]:
            print(f"  {diagnosis['kind']} {diagnosis['subject'] or '-'}, cleared"
                  f" {_ago(found['at'] - diagnosis['cleared_at'])} ago: {diagnosis['summary']}")
    print()
    decisions = found["decisions"]
    print(f"Recent decisions (HOMEO_AUTONOMIC_ACT={found['act']}):"
          if decisions else f"Recent decisions (HOMEO_AUTONOMIC_ACT={found['act']}): none")
    for decision in decisions:
        outcome = f", outcome {decision['outcome']}" if decision["outcome"] else ""
        print(f"  {decision['id']} {_ago(found['at'] - decision['at'])} ago:"
              f" {decision['action']} for {decision['kind']} {decision['subject'] or '-'}"
              f" [{decision['status']}{outcome}]")
        print(f"      why: {decision['explanation'].get('why', '')}")
        if decision["status"] == "awaiting_approval":
            print(f"      approve with: homeo autonomic approve {decision['id']}")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.4g}"


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@autonomic_app.command("approve")
def approve_decision(
    decision_id: Annotated[str, typer.Argument(help="The decision's id (dec_...), as"
                                                    " `homeo autonomic status` shows it.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Json = False,
) -> None:
    """Let a decision that waits for approval run (HOMEO_AUTONOMIC_ACT=approval):
    the loop that made it acts on its next step."""
    from homeo.autonomic.approve import ApprovalRefused, approve

    with json_errors(as_json):
        settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
        with opened(settings, publish=False) as runtime:
            try:
                decision = approve(runtime.backends.store, decision_id, by="cli",
                                   now=time.time())
            except ApprovalRefused as refused:
                fail(str(refused))
    if as_json:
        print_json(decision.model_dump())
        return
    print(f"approved {decision.id}: {decision.action} for {decision.kind}"
          f" {decision.subject or '-'}; the loop acts on its next step")
