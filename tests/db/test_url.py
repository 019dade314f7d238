"""Database URLs never show their password: in `redact`, in the CLI's errors
and in `homeo serve`'s start line (run as a subprocess, as a user runs it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from homeo.db.url import redact, redact_text

PASSWORD = "Sekr3t-pw"
DEADLINE_SECONDS = 120


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://homeo:Sekr3t@db:5432/app", "postgresql://homeo:***@db:5432/app"),
        ("postgres://u:p@ss/w:rd@db/app?x=1", "postgres://u:***@db/app?x=1"),
        ("postgresql://db/app?user=u&password=Sekr3t&x=1",
         "postgresql://db/app?user=u&password=***&x=1"),
        ("postgresql://homeo@db/app", "postgresql://homeo@db/app"),
        ("sqlite:///var/lib/homeo/homeo.db", "sqlite:///var/lib/homeo/homeo.db"),
    ],
)
def test_redact_hides_the_password_and_nothing_else(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_redact_text_hides_the_password_wherever_a_message_repeats_it() -> None:
    url = "postgresql://homeo:Sekr%40t@db/app"
    message = f"bad conninfo {url!r}: password 'Sekr@t' for homeo"
    assert redact_text(message, url) == (
        "bad conninfo 'postgresql://homeo:***@db/app': password '***' for homeo"
    )


def _with_password(url: str) -> str:
    """The test server's URL with a password in it (its trust auth ignores it)."""
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.partition("@")
    return f"{scheme}://{credentials.split(':')[0]}:{PASSWORD}@{host}"


def _homeo(*args: str) -> list[str]:
    # This interpreter and this PYTHONPATH, so the code under test is the one run.
    return [sys.executable, "-c", "from homeo.cli import main; main()", *args]


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("HOMEO_")}
    return {**clean, "HOMEO_DATABASE_URL": url, "HOMEO_DATA_DIR": str(tmp_path)}


@pytest.mark.postgres
def test_cannot_open_does_not_print_the_password(tmp_path: Path, postgres_url: str) -> None:
    # A search_path with no schema: connecting works, creating tables does not.
    url = _with_password(postgres_url.rsplit("%3D", 1)[0] + "%3Dno_such_schema")
    done = subprocess.run(_homeo("keys", "list"), env=_env(tmp_path, url), capture_output=True,
                          text=True, timeout=DEADLINE_SECONDS)
    assert done.returncode != 0
    assert "cannot open postgresql://" in done.stderr + done.stdout
    assert PASSWORD not in done.stderr + done.stdout
    assert ":***@" in done.stderr + done.stdout


@pytest.mark.postgres
def test_serve_does_not_log_the_password(tmp_path: Path, postgres_url: str) -> None:
    url = _with_password(postgres_url)
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**_env(tmp_path, url), "HOMEO_WORKERS": "0", "HOMEO_PORT": str(port)}
    with subprocess.Popen(_homeo("serve"), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as server:
        try:
            lines: list[str] = []
            deadline = time.monotonic() + DEADLINE_SECONDS
            assert server.stdout is not None
            while time.monotonic() < deadline:
                line = server.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if "homeo serving" in line:
                    break
        finally:
            server.terminate()
            server.wait(timeout=DEADLINE_SECONDS)
    output = "".join(lines)
    assert "homeo serving" in output, output
    assert PASSWORD not in output
    assert ":***@" in output
