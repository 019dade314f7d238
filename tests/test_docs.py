"""The README must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from homeo.api.app import create_app
from homeo.backends import open_backends
from homeo.cli import app as cli_app
from homeo.config import Settings
from homeo.observe.metrics import Metrics

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).splitlines()
    serve, test = (line.split("#")[0].strip() for line in block[:2])
    assert serve == "scripts/setup && .venv/bin/homeo serve"
    assert test == "scripts/setup && .venv/bin/python -m pytest"
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_setting_is_documented_and_nothing_else() -> None:
    documented = set(re.findall(r"^\| `HOMEO_([A-Z_]+)` \|", README, re.M))
    actual = {name.upper() for name in Settings.model_fields}
    assert documented == actual


def test_every_cli_command_in_the_readme_exists() -> None:
    commands = set(get_command(cli_app).commands)  # type: ignore[attr-defined]
    mentioned = set(re.findall(r"(?:bin/homeo|`homeo) (\w+)", README))
    assert mentioned <= commands, mentioned - commands
    assert {"serve", "worker", "run", "doctor", "agents"} <= mentioned


def test_every_cli_subcommand_in_the_readme_exists() -> None:
    commands = get_command(cli_app).commands  # type: ignore[attr-defined]
    groups = {name: command for name, command in commands.items() if hasattr(command, "commands")}
    mentioned = set(re.findall(r"(?:bin/homeo|`homeo) (\w+) (\w[\w-]*)", README))
    missing = {pair for pair in mentioned
               if pair[0] in groups and pair[1] not in groups[pair[0]].commands}
    assert not missing, missing
    assert {("runs", "list"), ("runs", "show"), ("runs", "events"), ("runs", "cancel"),
            ("keys", "create"), ("models", "convert-minilm")} <= mentioned


def test_every_api_path_in_the_readme_exists(tmp_path: Path) -> None:
    backends = open_backends(f"sqlite:///{tmp_path / 'docs.db'}")
    try:
        api = create_app(Settings(data_dir=tmp_path), backends, Metrics())
        paths = set(api.openapi()["paths"])
    finally:
        backends.close()
    documented = set(re.findall(r"^\| `(?:GET|POST) (/[^`]*)`", README, re.M))
    documented |= set(re.findall(r"`GET (/[a-z]+)`", README))
    documented -= {"/openapi.json", "/docs"}  # served by FastAPI itself
    def shape(path: str) -> str:  # `{id}` in the README is `{run_id}`, `{key_id}`... in code
        return re.sub(r"\{[a-z_]+\}", "{}", path)

    missing = {path for path in documented if shape(path) not in {shape(p) for p in paths}}
    assert not missing, missing


def test_every_metric_in_the_readme_is_exported(tmp_path: Path) -> None:
    backends = open_backends(f"sqlite:///{tmp_path / 'metrics.db'}")
    try:
        metrics = Metrics()
        metrics.watch(backends.store, backends.queue)
        metrics.step_seconds.labels("model").observe(0.1)
        metrics.runs_finished.labels("t", "echo", "succeeded").inc()
        metrics.observe_request("/v1/runs", "POST", 202, 0.01)
        metrics.count_usage("t", "m", input_tokens=1, output_tokens=1, cost_usd=0.1)
        metrics.watch_breakers(lambda: [("example", "closed")])
        metrics.count_screening("t", {"boundary": "input", "verdicts": [
            {"guard": "secrets", "action": "block"}]})
        exported = metrics.render().decode()
    finally:
        backends.close()
    for name in re.findall(r"`(homeo_[a-z_]+)", README):
        assert re.search(rf"^{name}(_bucket|_count|_sum)?[{{ ]", exported, re.M), name


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_pattern_examples_in_the_readme_build(tmp_path: Path) -> None:
    from homeo.engine.agents import build_agent, load_agent_file
    from homeo.llm.providers.scripted import ScriptedModel

    blocks = re.findall(r"```yaml\n(.*?)```", _section("Patterns"), re.S)
    assert len(blocks) == 5
    for index, block in enumerate(blocks):
        path = tmp_path / f"{index}.yaml"
        path.write_text(block)
        build_agent(load_agent_file(path), ScriptedModel([]))


def test_the_graph_error_in_the_readme_is_the_one_homeo_gives(tmp_path: Path) -> None:
    from homeo.engine.agents import AgentError, load_agent_file

    section = _section("Patterns")
    graph = re.findall(r"```yaml\n(name: release\n.*?)```", section, re.S)[0]
    quoted = re.search(r"```\n(homeo: agents/release.yaml: .*)\n```", section)[1]
    path = tmp_path / "agents" / "release.yaml"
    path.parent.mkdir()
    path.write_text(graph.replace(",\n              save: note, max_visits: 3}", ", save: note}"))
    try:
        load_agent_file(path)
    except AgentError as error:
        assert f"homeo: {error}".replace(str(tmp_path) + "/", "") == quoted
    else:
        raise AssertionError("the graph without max_visits loaded")


def test_the_memory_and_knowledge_agents_in_the_readme_build(tmp_path: Path) -> None:
    from homeo.engine.agents import build_agent, load_agent_file
    from homeo.llm.providers.scripted import ScriptedModel

    section = _section("Agent memory and answering from collections")
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    for index, block in enumerate(blocks):
        path = tmp_path / f"{index}.yaml"
        path.write_text(block)
        agent = build_agent(load_agent_file(path), ScriptedModel([]))
        assert (agent.spec.memory is None) != (agent.spec.knowledge is None)
    assert agent.graph.start == "retrieve"
