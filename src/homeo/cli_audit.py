"""`homeo audit`: make the key that signs the audit log, and verify the log
with the public key alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from homeo.cli_common import (
    CONTEXT,
    DatabaseUrl,
    DataDir,
    Json,
    console,
    fail,
    json_errors,
    opened,
    print_json,
    settings_or_exit,
)
from homeo.config import Settings

audit_app = typer.Typer(help="Make the audit log's signing key; verify the log.",
                        no_args_is_help=True, context_settings=CONTEXT)


def audit_log_or_exit(settings: Settings, store: Any) -> Any:  # AuditLog | None
    """The audit log HOMEO_AUDIT_KEY_FILE signs (None when unset), or exit 2
    saying what is wrong with the key."""
    from homeo.audit import AuditKeyError, open_audit_log

    try:
        return open_audit_log(settings.audit_key_file, store)
    except AuditKeyError as error:
        fail(f"HOMEO_AUDIT_KEY_FILE: {error}", code=2)


@audit_app.command("keygen")
def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (0600);"
                                               " the public key goes to PATH.pub.")],
    as_json: Json = False,
) -> None:
    """Make an ML-DSA-65 key pair for HOMEO_AUDIT_KEY_FILE. Keep the private key
    outside the data dir; give the public key to whoever verifies the log."""
    from homeo.audit import generate_key

    with json_errors(as_json):
        try:
            public = generate_key(path)
        except FileExistsError:
            fail(f"{path} exists; homeo never overwrites a key: choose another path", code=2)
    console.print(f"homeo: private key {path} (set HOMEO_AUDIT_KEY_FILE={path}),"
                  f" public key {public}", markup=False)
    if as_json:
        print_json({"private_key": str(path), "public_key": str(public)})


@audit_app.command("verify")
def verify(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's log.")] = None,
    public_key: Annotated[Path | None, typer.Option(
        help="The public key (PEM) [HOMEO_AUDIT_KEY_FILE + .pub].")] = None,
    as_json: Json = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Check every tenant's log (or one): each entry's hash, its place in the
    chain, its signature, and the signed head. Exits 1 naming the first bad
    entry of each tenant whose log was tampered with."""
    from homeo.audit import AuditKeyError, load_public_key, verify_log

    settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
    if public_key is None:
        if settings.audit_key_file is None:
            fail("give --public-key PATH (or set HOMEO_AUDIT_KEY_FILE, whose .pub is used)",
                 code=2)
        public_key = Path(f"{settings.audit_key_file}.pub")
    try:
        public = load_public_key(public_key)
    except AuditKeyError as error:
        fail(str(error), code=2)
    bad = 0
    verdicts = []
    with opened(settings, publish=False) as runtime:
        store = runtime.backends.store
        for name in [tenant] if tenant else store.audit_tenants():
            verdict = verify_log(name, store.list_audit(name), store.audit_head(name), public)
            bad += not verdict.ok
            verdicts.append({"tenant": name, "ok": verdict.ok, "entries": verdict.entries,
                             "first_bad": verdict.first_bad, "problem": verdict.problem,
                             "head": None if verdict.head is None else
                             {"seq": verdict.head.seq, "hash": verdict.head.hash}})
            if as_json:
                continue
            if verdict.ok:
                head = verdict.head
                ends = f"; head {head.seq}:{head.hash}" if head else ""
                print(f"{name}: ok, {verdict.entries} entries{ends}")
            else:
                print(f"{name}: TAMPERED at entry {verdict.first_bad}: {verdict.problem}"
                      f" ({verdict.entries} entries before it verify)")
    if as_json:
        print_json({"tenants": verdicts})
    if bad:
        raise typer.Exit(1)
