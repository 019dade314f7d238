"""`homeo crypto`: the key file that encrypts sensitive tenants' data at
rest, its rotation, and which tenants are sensitive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from homeo.cli_audit import audit_log_or_exit
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

crypto_app = typer.Typer(help="Encryption at rest: make and rotate the key file; mark tenants"
                         " sensitive.", no_args_is_help=True, context_settings=CONTEXT)


def _key_file(settings: Settings) -> Path:
    if settings.encryption_key_file is None:
        fail("set HOMEO_ENCRYPTION_KEY_FILE to the key file (`homeo crypto keygen PATH`"
             " makes one)", code=2)
    return settings.encryption_key_file


@crypto_app.command("keygen")
def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the key file (0600), outside"
                                               " the data dir.")],
    as_json: Json = False,
) -> None:
    """Make a key file with one hybrid X25519+ML-KEM-768 key-encryption key.
    Keep it outside the data dir, and back it up apart from the data: without
    it, sensitive tenants' runs cannot be read."""
    from homeo.crypto.keyfile import new_key_file

    with json_errors(as_json):
        try:
            ring = new_key_file(path)
        except FileExistsError:
            fail(f"{path} exists; homeo never overwrites a key file: choose another path",
                 code=2)
    console.print(f"homeo: key file {path} with key-encryption key {ring.current}"
                  f" (set HOMEO_ENCRYPTION_KEY_FILE={path})", markup=False)
    if as_json:
        print_json({"key_file": str(path), "kek": ring.current})


@crypto_app.command("rotate")
def rotate(data_dir: DataDir = None, database_url: DatabaseUrl = None,
           as_json: Json = False) -> None:
    """Make a new key-encryption key and re-wrap every data key with it; the
    data is not re-encrypted. The old key stays in the file until every data
    key is re-wrapped, so a rotation stopped halfway loses nothing: run it
    again."""
    from homeo.crypto.errors import CryptoError
    from homeo.crypto.rotation import rotate as rotate_keys

    with json_errors(as_json):
        settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
        key_file = _key_file(settings)
        with opened(settings, publish=False) as runtime:
            try:
                result = rotate_keys(runtime.backends.store, key_file)
            except CryptoError as error:
                fail(str(error), code=2)
    if as_json:
        print_json({"key_file": str(key_file), "kek": result.new_kek,
                    "rewrapped": result.rewrapped, "dropped": list(result.dropped)})
        return
    dropped = ", ".join(result.dropped) or "none"
    print(f"rotated to {result.new_kek}: {result.rewrapped} data keys re-wrapped;"
          f" retired keys dropped from {key_file}: {dropped}")


@crypto_app.command("status")
def status(data_dir: DataDir = None, database_url: DatabaseUrl = None,
           as_json: Json = False) -> None:
    """The key file's keys, how many data keys each wraps, and the tenants
    whose runs are kept encrypted."""
    from homeo.crypto.errors import CryptoError
    from homeo.crypto.keyfile import load

    with json_errors(as_json):
        settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
        key_file = _key_file(settings)
        try:
            ring = load(key_file)
        except CryptoError as error:
            fail(str(error), code=2)
        with opened(settings, publish=False) as runtime:
            store = runtime.backends.store
            wrapped = store.data_keys_per_kek()
            sensitive = store.sensitive_tenants()
    missing = sorted(set(wrapped) - set(ring.keys))
    if as_json:  # a key the file lacks is listed with role "missing", and exits 1
        keys = [{"kek": kek_id, "role": "current" if kek_id == ring.current else "retired",
                 "data_keys": wrapped.get(kek_id, 0)} for kek_id in ring.keys]
        keys += [{"kek": kek_id, "role": "missing", "data_keys": wrapped[kek_id]}
                 for kek_id in missing]
        print_json({"key_file": str(key_file), "keys": keys,
                    "sensitive_tenants": list(sensitive)})
        if missing:
            raise typer.Exit(1)
        return
    for kek_id in ring.keys:
        role = "current" if kek_id == ring.current else "retired"
        print(f"{kek_id} ({role}): wraps {wrapped.get(kek_id, 0)} data keys")
    for kek_id in missing:
        print(f"{kek_id} (MISSING from {key_file}): wraps {wrapped[kek_id]} data keys")
    print(f"sensitive tenants: {', '.join(sensitive) or 'none'}")
    if missing:
        raise typer.Exit(1)


@crypto_app.command("tenant")
def tenant(
    name: Annotated[str, typer.Argument(help="The tenant.")],
    sensitive: Annotated[bool, typer.Option(
        "--sensitive/--plain", help="Keep its runs encrypted from now on, or write new ones"
        " in plain text (sealed ones stay sealed).")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Json = False,
) -> None:
    """Mark a tenant's data sensitive (or not), as PUT /v1/tenant/encryption
    does; an audit entry records it when HOMEO_AUDIT_KEY_FILE is set."""
    from homeo.crypto.tenants import change_encryption

    with json_errors(as_json):
        settings = settings_or_exit(data_dir=data_dir, database_url=database_url)
        _key_file(settings)
        with opened(settings, publish=False) as runtime:
            setting = change_encryption(runtime.cipher,
                                        audit_log_or_exit(settings, runtime.backends.store),
                                        name, sensitive, "cli")
    if as_json:
        print_json({"tenant": name, "sensitive": setting.sensitive,
                    "data_key": setting.data_key_id})
        return
    state = "sensitive (encrypted at rest)" if setting.sensitive else "plain"
    print(f"{name}: {state}, data key {setting.data_key_id}")
