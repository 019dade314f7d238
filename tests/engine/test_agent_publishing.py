"""The store follows the agents folder: real folders, a real database.

Publishing (at every start) adds new agents, replaces edited ones and removes
the ones whose file is gone. A queued run is built from the definition stored
when it starts: an edited agent runs as edited; a removed one fails saying so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine.submit import UnknownAgent, submit_run
from homeo.keys import create_key
from homeo.runtime import Runtime
from homeo.store.models import NewRun

MODELS = '''
def first(messages, tools):
    return "first: " + messages[-1].content

def second(messages, tools):
    return "second: " + messages[-1].content
'''


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "folder_models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path / "models"))
    return tmp_path


def write(folder: Path, name: str, model: str = "first") -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\nmodel: scripted:folder_models:{model}\nmax_steps: 2\n")


@pytest.fixture
def start(backend_url: str, folders: Path):
    """`start(folder)`: a runtime on the test's database that published `folder`,
    as `homeo serve` does at start; all are closed after the test."""
    opened: list[Runtime] = []

    def start_with(folder: Path) -> Runtime:
        settings = Settings(data_dir=folders / "data", database_url=backend_url,
                            agents_dir=folder, poll_seconds=0.01, retry_base_seconds=0.0,
                            retry_max_seconds=0.0)
        runtime = Runtime.open(settings)
        opened.append(runtime)
        runtime.publish_agents()
        return runtime

    yield start_with
    for runtime in opened:
        asyncio.run(runtime.aclose())


def submit(runtime: Runtime, agent: str, text: str, tenant: str = "default") -> str:
    return submit_run(runtime.backends, NewRun(tenant_id=tenant, agent=agent, input=text))[0].id


def stored(runtime: Runtime, tenant: str = "default") -> dict[str, str]:
    return {record.name: record.spec["model"]
            for record in runtime.backends.store.list_agents(tenant)}


def test_a_changed_folder_updates_adds_and_removes_agents(
    folders: Path, start: Callable[[Path], Runtime]
) -> None:
    folder = folders / "agents"
    write(folder, "alpha")
    write(folder, "beta")
    before = start(folder)
    create_key(before.backends.store, "acme", "acme's key")
    before.publish_agents()  # acme has an active key now: it gets the agents too
    alpha_run = submit(before, "alpha", "hello")
    beta_run = submit(before, "beta", "hello")
    acme_beta_run = submit(before, "beta", "hi", tenant="acme")

    write(folder, "alpha", model="second")  # edited
    (folder / "beta.yaml").unlink()  # removed
    write(folder, "gamma")  # added
    after = start(folder)  # a restart publishes the folder again

    for tenant in ("default", "acme"):
        assert stored(after, tenant) == {"alpha": "scripted:folder_models:second",
                                         "gamma": "scripted:folder_models:first"}
    with pytest.raises(UnknownAgent, match="unknown agent 'beta'; agents defined: alpha, gamma"):
        submit(after, "beta", "again")

    assert asyncio.run(after.worker(1).run_until_idle()) == 3
    store = after.backends.store
    alpha = store.get_run("default", alpha_run)
    assert (alpha.status, alpha.output) == ("succeeded", "second: hello")  # as it is now
    for tenant, run_id in (("default", beta_run), ("acme", acme_beta_run)):
        beta = store.get_run(tenant, run_id)
        assert beta.status == "failed"
        assert beta.error == (
            f"agent 'beta' is not defined for tenant {tenant!r}: its YAML file is not in the"
            " agents folder (HOMEO_AGENTS_DIR); put it back and restart homeo")


def test_pointing_at_another_folder_replaces_the_agents(
    folders: Path, start: Callable[[Path], Runtime]
) -> None:
    write(folders / "one", "alpha")
    write(folders / "one", "beta")
    write(folders / "two", "beta", model="second")
    write(folders / "two", "delta")
    first = start(folders / "one")
    queued = submit(first, "beta", "queued before the switch")

    second = start(folders / "two")
    assert stored(second) == {"beta": "scripted:folder_models:second",
                              "delta": "scripted:folder_models:first"}
    assert asyncio.run(second.worker(1).run_until_idle()) == 1
    assert second.backends.store.get_run("default", queued).output == (
        "second: queued before the switch")


def test_publishing_an_unchanged_folder_writes_nothing(
    folders: Path, start: Callable[[Path], Runtime]
) -> None:
    write(folders / "agents", "alpha")
    runtime = start(folders / "agents")
    written = runtime.backends.store.get_agent("default", "alpha").updated_at
    runtime.publish_agents()
    assert runtime.backends.store.get_agent("default", "alpha").updated_at == written


def test_a_running_worker_builds_the_definition_another_process_published(
    folders: Path, start: Callable[[Path], Runtime]
) -> None:
    folder = folders / "agents"
    write(folder, "alpha")
    worker_process = start(folder)
    submit(worker_process, "alpha", "one")
    assert asyncio.run(worker_process.worker(1).run_until_idle()) == 1  # built and cached

    write(folder, "alpha", model="second")
    start(folder)  # another process starts with the edited folder
    run_id = submit(worker_process, "alpha", "two")
    assert asyncio.run(worker_process.worker(1).run_until_idle()) == 1
    assert worker_process.backends.store.get_run("default", run_id).output == "second: two"
