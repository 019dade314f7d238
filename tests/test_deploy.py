"""The deployment files in deploy/ are checked by the tools that read them:
the compose file by `docker-compose config` (the Debian package, installed by
scripts/setup), the systemd units by `systemd-analyze verify`. Neither is
started here: there is no Docker daemon nor a booted systemd on the test
machine. Under CI=true a missing checker fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from homeo.config import Settings

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
HOMEO = Path(sys.executable).parent / "homeo"


def tool_or_skip(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {package}; scripts/setup installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def settings_named(text: str) -> set[str]:
    return {name.lower() for name in re.findall(r"\bHOMEO_([A-Z_]+)\b", text)}


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    compose = tool_or_skip("docker-compose", "docker-compose")
    return subprocess.run([compose, "-f", str(path), "config"], capture_output=True, text=True,
                          timeout=60)


def test_the_compose_file_is_valid_and_runs_api_workers_postgres_and_redis() -> None:
    checked = compose_config(DEPLOY / "compose.yaml")
    assert checked.returncode == 0, checked.stderr
    config = yaml.safe_load(checked.stdout)
    services = config["services"]
    assert set(services) == {"api", "worker", "postgres", "redis"}
    assert services["api"]["command"][:2] == ["homeo", "serve"]
    assert services["worker"]["command"] == ["homeo", "worker"]
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        assert environment["HOMEO_DATABASE_URL"].startswith("postgresql://")
        assert environment["HOMEO_QUEUE_URL"].startswith("redis://redis:")
        assert set(services[name]["depends_on"]) == {"postgres", "redis"}
    assert settings_named((DEPLOY / "compose.yaml").read_text()) <= set(Settings.model_fields)


def test_the_compose_check_rejects_a_wrong_file(tmp_path: Path) -> None:
    wrong = tmp_path / "compose.yaml"
    wrong.write_text((DEPLOY / "compose.yaml").read_text()
                     .replace("    healthcheck:\n      test: [\"CMD\", \"pg_isready\"",
                              "    healthchek:\n      test: [\"CMD\", \"pg_isready\"")
                     .replace("context: ..", f"context: {ROOT}"))
    checked = compose_config(wrong)
    assert checked.returncode != 0 and "healthchek" in checked.stderr, checked.stderr


def test_the_image_installs_extras_that_exist() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    extras = re.search(r"ARG EXTRAS=(\S+)", dockerfile).group(1).split(",")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(extras) <= set(declared)
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        assert all((ROOT / part).exists() for part in source.split()), source


def verify_units(folder: Path, *units: str) -> subprocess.CompletedProcess[str]:
    analyze = tool_or_skip("systemd-analyze", "systemd")
    return subprocess.run([analyze, "verify", *(str(folder / unit) for unit in units)],
                          capture_output=True, text=True, timeout=60)


def units_here(tmp_path: Path) -> Path:
    """The units, with ExecStart pointing at this checkout's homeo (verify
    checks that the program exists) and the worker template as instance 1."""
    for unit in (DEPLOY / "systemd").iterdir():
        text = unit.read_text().replace("/opt/homeo/.venv/bin/homeo", str(HOMEO))
        (tmp_path / unit.name.replace("@.", "@1.")).write_text(text)
    return tmp_path


def test_the_systemd_units_verify_cleanly(tmp_path: Path) -> None:
    folder = units_here(tmp_path)
    checked = verify_units(folder, "homeo-api.service", "homeo-worker@1.service")
    # verify exits 0 on unknown keys too, and only warns: no output at all is the check.
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    for unit in (DEPLOY / "systemd").iterdir():
        text = unit.read_text()
        assert settings_named(text) <= set(Settings.model_fields), unit.name
        assert re.search(r"^ExecStart=/opt/homeo/\.venv/bin/homeo (serve|worker)", text, re.M)


def test_the_unit_check_sees_a_misspelled_key(tmp_path: Path) -> None:
    folder = units_here(tmp_path)
    unit = folder / "homeo-api.service"
    unit.write_text(unit.read_text().replace("KillSignal=", "KillSignl="))
    checked = verify_units(folder, "homeo-api.service")
    assert "KillSignl" in checked.stdout + checked.stderr
