"""All of homeo's settings, in one place.

Every setting can be given as an environment variable `HOMEO_<NAME>` (for
example `HOMEO_PORT=9000`) or as a CLI flag where the CLI offers one. Values
are validated at start: a wrong value stops homeo with one line naming the
setting and what it accepts (see `describe_error`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EXAMPLE_AGENTS_DIR = Path(__file__).parent / "examples" / "agents"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEO_", extra="forbid", validate_default=True)

    data_dir: Path = Field(Path("homeo-data"), description="Where SQLite files and run data live.")
    database_url: str = Field(
        "",
        description="sqlite:///PATH or postgresql://... ; empty means SQLite under data_dir.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    agents_dir: Path = Field(EXAMPLE_AGENTS_DIR, description="Folder of agent YAML files.")
    workers: int = Field(2, ge=0, le=256, description="Concurrent runs per worker process.")
    lease_seconds: float = Field(30.0, gt=0, le=3600)
    poll_seconds: float = Field(0.2, gt=0, le=60)
    max_attempts: int = Field(3, ge=1, le=100, description="Job attempts before dead-letter.")
    retry_base_seconds: float = Field(1.0, ge=0, le=3600)
    retry_max_seconds: float = Field(60.0, ge=0, le=86400)
    max_input_chars: int = Field(100_000, ge=1, le=10_000_000)
    max_request_bytes: int = Field(1_000_000, ge=1024, le=100_000_000)
    local_model_path: Path | None = Field(None, description="GGUF file; empty means SmolLM2.")
    local_model_context: int = Field(4096, ge=256, le=131072)
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str = ""
    default_tenant: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:///, postgresql:// or postgres://")
        return value

    @field_validator("agents_dir")
    @classmethod
    def _agents_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    def resolved_database_url(self) -> str:
        """The database to use: the explicit URL, or SQLite inside `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'homeo.db'}"


class SettingsError(Exception):
    """A setting has a value homeo cannot use."""


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with `overrides` (from CLI flags) on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        raise SettingsError(describe_error(error)) from None


def describe_error(error: ValidationError) -> str:
    """One line per bad setting: `HOMEO_PORT='x': Input should be a valid integer`."""
    lines = []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "?"
        value = problem.get("input")
        shown = f"={value!r}" if not isinstance(value, dict) else ""
        lines.append(f"invalid setting HOMEO_{name.upper()}{shown}: {problem['msg']}")
    return "; ".join(lines)


def unknown_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for `HOMEO_*` variables that name no setting (a typo is
    otherwise silently ignored). `HOMEO_TEST_*` belongs to the test suite."""
    known = {name.upper() for name in Settings.model_fields}
    warnings = []
    for variable in sorted(os.environ if environ is None else environ):
        name = variable.removeprefix("HOMEO_")
        if name == variable or name in known or name.startswith("TEST_"):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean HOMEO_{close[0]}?)" if close else ""
        warnings.append(f"ignoring unknown setting {variable}{hint}")
    return warnings
