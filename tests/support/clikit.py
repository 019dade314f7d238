"""What the CLI tests share: `homeo(...)` run through typer's CliRunner in
this process, and an environment without the caller's HOMEO_* settings
(import `no_homeo_env` into a test module and it applies to every test there)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner, Result

from homeo.cli import app


def homeo(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def no_homeo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HOMEO_"):
            monkeypatch.delenv(name)
