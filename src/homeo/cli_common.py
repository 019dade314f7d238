"""What every `homeo` command shares: its options, settings, errors and runtime."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from homeo.config import Settings, SettingsError, load_settings, unknown_settings
from homeo.db.url import redact, redact_text
from homeo.engine.agents import AgentError

# `-h` as well as `--help`, on every command (click hands it down to subcommands).
CONTEXT = {"help_option_names": ["-h", "--help"]}

# soft_wrap: a message stays one line however narrow the terminal (or pipe) is.
console = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[Path | None, typer.Option(help="Where data lives [HOMEO_DATA_DIR].")]
DatabaseUrl = Annotated[
    str | None, typer.Option(help="sqlite:///PATH or postgresql://... [HOMEO_DATABASE_URL].")
]
AgentsDir = Annotated[Path | None, typer.Option(help="Folder of agent YAML [HOMEO_AGENTS_DIR].")]
Workers = Annotated[
    int | None, typer.Option(help="Concurrent runs in this process [HOMEO_WORKERS].")
]
Tenant = Annotated[str | None, typer.Option(help="The tenant [HOMEO_DEFAULT_TENANT].")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON, as the HTTP API returns it.")]


def print_json(value: object) -> None:
    """One JSON document on stdout, for scripts (messages go to stderr)."""
    print(json.dumps(value, default=str, ensure_ascii=False))


def settings_or_exit(**overrides: Any) -> Settings:
    """The settings, or exit 2 with one line naming the bad one."""
    for warning in unknown_settings():
        console.print(f"homeo: {warning}", markup=False)
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        fail(str(error), code=2)


# Set by a command's --json: its errors are one JSON object on stdout as well.
_errors_as_json: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "errors_as_json", default=False)


@contextlib.contextmanager
def json_errors(enabled: bool) -> Iterator[None]:
    """While inside, `fail` also prints {"error": ..., "exit_code": ...} on
    stdout when `enabled` (a command's --json), so a script parses every
    outcome; the exit code and the stderr line stay what they are without."""
    token = _errors_as_json.set(enabled)
    try:
        yield
    finally:
        _errors_as_json.reset(token)


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"homeo: {message}", markup=False)
    if _errors_as_json.get():
        print_json({"error": message, "exit_code": code})
    raise typer.Exit(code)


def open_runtime(settings: Settings, *, publish: bool = True):  # -> Runtime
    """The runtime (imported late to keep `--help` fast). With `publish`, the
    agents folder is published to the store, which then follows it: commands
    that only look at runs or memory pass False, so that one run without
    --agents-dir does not replace the agents another folder published."""
    from homeo.backends import BackendUnavailable
    from homeo.crypto.errors import CryptoError
    from homeo.runtime import Runtime

    try:
        runtime = Runtime.open(settings)
        if publish:
            runtime.publish_agents()
    except AgentError as error:  # a bad agent file: fix it before starting
        fail(str(error), code=2)
    except BackendUnavailable as error:
        fail(str(error))
    except CryptoError as error:  # a bad key file: fix it before starting
        fail(f"HOMEO_ENCRYPTION_KEY_FILE: {error}", code=2)
    except Exception as error:  # a database that refuses to open
        url = settings.resolved_database_url()
        fail(f"cannot open {redact(url)}: {redact_text(str(error), url)}")
    return runtime


@contextlib.contextmanager
def opened(settings: Settings, *, publish: bool = True) -> Iterator[Any]:  # Iterator[Runtime]
    """The runtime for one short command, closed after it."""
    runtime = open_runtime(settings, publish=publish)
    try:
        yield runtime
    finally:
        asyncio.run(runtime.aclose())


@contextlib.contextmanager
def tenant_runtime(
    tenant: str | None, data_dir: Any, database_url: str | None
) -> Iterator[tuple[Settings, Any]]:  # Iterator[tuple[Settings, Runtime]]
    """For a command that looks at one tenant's data (runs, memory): its settings
    (the tenant as `default_tenant`) and a runtime that leaves the agents alone."""
    settings = settings_or_exit(data_dir=data_dir, database_url=database_url,
                                default_tenant=tenant)
    with opened(settings, publish=False) as runtime:
        yield settings, runtime
