"""The deployment files in deploy/ are checked by the tools that read them:
the compose file by `docker-compose config` (the Debian package, installed by
scripts/setup), the systemd units by `systemd-analyze verify`, the Helm chart
by `helm lint` and `helm template` (scripts/setup unpacks helm into .venv/bin)
with the rendered manifests validated against the Kubernetes schemas
(kubernetes-validate, offline). Neither is
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
    path = shutil.which(name) or shutil.which(name, path=str(HOMEO.parent))
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


CHART = DEPLOY / "helm" / "homeo"
URLS = ["--set", "postgres.url=postgresql://homeo:pw@db:5432/homeo",
        "--set", "redis.url=redis://queue:6379/0"]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = tool_or_skip("helm", "helm (scripts/setup unpacks it into .venv/bin)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def rendered(*args: str) -> list[dict]:
    made = helm("template", "demo", str(CHART), *args)
    assert made.returncode == 0, made.stderr
    return [doc for doc in yaml.safe_load_all(made.stdout) if doc]


def test_the_helm_chart_lints_cleanly() -> None:
    linted = helm("lint", "--strict", str(CHART), *URLS)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 chart(s) failed" in linted.stdout


def test_the_helm_chart_renders_valid_kubernetes_manifests() -> None:
    import kubernetes_validate

    documents = rendered(*URLS)
    for document in documents:
        # strict: an unknown field (a typo) is an error, as the API server would make it.
        kubernetes_validate.validate(document, "1.30", strict=True)
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    assert kinds == {("Deployment", "demo-homeo-api"), ("Deployment", "demo-homeo-worker"),
                     ("Service", "demo-homeo-api"), ("ConfigMap", "demo-homeo"),
                     ("Secret", "demo-homeo-database"), ("Secret", "demo-homeo-queue")}
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    secrets = {name: doc["stringData"]["url"] for (kind, name), doc in by_name.items()
               if kind == "Secret"}
    assert secrets == {"demo-homeo-database": "postgresql://homeo:pw@db:5432/homeo",
                       "demo-homeo-queue": "redis://queue:6379/0"}
    commands = {}
    for component in ("api", "worker"):
        pod = by_name[("Deployment", f"demo-homeo-{component}")]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        commands[component] = container["command"]
        env = {item["name"]: item["value"] for item in container["env"]}
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        # The URLs reach homeo as mounted secret files, never in the environment.
        assert env == {"HOMEO_DATABASE_URL_FILE": "/etc/homeo/database/url",
                       "HOMEO_QUEUE_URL_FILE": "/etc/homeo/queue/url"}
        assert {"/etc/homeo/database", "/etc/homeo/queue"} <= mounts
    assert commands["api"][:2] == ["homeo", "serve"] and commands["worker"] == ["homeo", "worker"]
    service = by_name[("Service", "demo-homeo-api")]
    api_pod = by_name[("Deployment", "demo-homeo-api")]["spec"]["template"]
    assert service["spec"]["selector"].items() <= api_pod["metadata"]["labels"].items()
    configured = set(by_name[("ConfigMap", "demo-homeo")]["data"])
    named = configured | {name.removesuffix("_FILE") for name in env}
    assert settings_named(" ".join(named)) <= set(Settings.model_fields)


def test_the_schema_check_rejects_a_misspelled_field() -> None:
    import kubernetes_validate

    deployment = next(doc for doc in rendered(*URLS) if doc["kind"] == "Deployment")
    deployment["spec"]["replicaz"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replicaz"):
        kubernetes_validate.validate(deployment, "1.30", strict=True)


def test_the_chart_refuses_missing_urls_and_uses_an_existing_secret() -> None:
    missing = helm("template", "demo", str(CHART))
    assert missing.returncode != 0 and "postgres.url must be a postgresql:// URL" in missing.stderr
    documents = rendered("--set", "postgres.existingSecret=my-db", *URLS[2:])
    assert {doc["metadata"]["name"] for doc in documents if doc["kind"] == "Secret"} == {
        "demo-homeo-queue"}
    worker = next(doc for doc in documents if doc["metadata"]["name"] == "demo-homeo-worker")
    volumes = {v["name"]: v for v in worker["spec"]["template"]["spec"]["volumes"]}
    assert volumes["database"]["secret"]["secretName"] == "my-db"


def test_the_image_runs_as_uid_10001() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"useradd .*--uid 10001", dockerfile)
    assert re.findall(r"^USER (\S+)$", dockerfile, re.M) == ["10001:10001"]
