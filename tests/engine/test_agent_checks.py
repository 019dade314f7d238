"""An agent folder is checked whole when it is loaded: tools import, model names
resolve, MCP tools name a configured server, each problem one line naming the
file and the field."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from homeo.config import McpServer, ModelDeployment, Settings
from homeo.engine.agents import AgentError, load_agents, scan_agents
from homeo.llm.resolve import ModelCatalog
from homeo.runtime import Runtime

NEVER_STARTED = McpServer(command=[sys.executable, "-c", "raise SystemExit('never started')"])


@pytest.fixture
def models(tmp_path: Path) -> ModelCatalog:
    settings = Settings(data_dir=tmp_path, models={"fast": [ModelDeployment(model="openai:m")]})
    return ModelCatalog(settings)


def write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return path


def test_a_good_folder_loads_without_loading_models_or_contacting_servers(
    tmp_path: Path, models: ModelCatalog
) -> None:
    folder = tmp_path / "agents"
    write(folder, "alpha", "model: local\ntools: [homeo.examples.tools:calculate]\n")
    write(folder, "beta", "model: fast\ntools: [mcp:files/read]\n")
    write(folder, "gamma", "model: scripted:homeo.llm.providers.scripted:tool_call\n")
    write(folder, "delta", "model: openai:gpt-x\n")
    specs = load_agents(folder, models, {"files": NEVER_STARTED})
    assert sorted(specs) == ["alpha", "beta", "delta", "gamma"]
    assert specs["beta"].file == str(folder / "beta.yaml")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("tools: [no_such_module:run]\n",
         "tools[0]: tool 'no_such_module:run': cannot import 'no_such_module'"),
        ("tools: [homeo.examples.tools:nothing]\n",
         "tools[0]: tool 'homeo.examples.tools:nothing': homeo.examples.tools has no function"),
        ("tools: [homeo.examples.tools:calculate, mcp:nowhere/read]\n",
         "tools[1]: tool 'mcp:nowhere/read': no MCP server 'nowhere' in HOMEO_MCP_SERVERS"
         " (configured: files)"),
        ("tools: ['mcp:files']\n", "tools[0]: MCP tool reference 'mcp:files' must look like"),
        ("model: nonsense:x\n", "model: unknown model 'nonsense:x': use local, local:/path.gguf"),
        ("model: fats\n", "or an alias from HOMEO_MODELS (fast)"),
        ("model: local:/nowhere/model.gguf\n", "model: model 'local:/nowhere/model.gguf': no GGUF"
         " file at /nowhere/model.gguf"),
        ("model: scripted:no_such_module:answer\n",
         "model: model 'scripted:no_such_module:answer': cannot load"),
        ("file: elsewhere.yaml\n", "file: homeo sets this field itself; remove it"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_field(
    tmp_path: Path, models: ModelCatalog, body: str, problem: str
) -> None:
    path = write(tmp_path / "agents", "bad", body)
    with pytest.raises(AgentError) as caught:
        load_agents(tmp_path / "agents", models, {"files": NEVER_STARTED})
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert "\n" not in message


def test_every_problem_of_the_folder_is_reported(tmp_path: Path, models: ModelCatalog) -> None:
    folder = tmp_path / "agents"
    good = write(folder, "good", "model: local\n")
    write(folder, "one", "model: nonsense:x\ntools: [no_such_module:run]\n")
    write(folder, "two", "tools: [mcp:nowhere/x]\n")
    (folder / "copy.yaml").write_text("name: good\n")
    scanned = scan_agents(folder, models, {})
    assert sorted(scanned.specs) == ["good"]
    assert [line.split(": ")[0:2] for line in scanned.problems] == [
        [str(folder / "good.yaml"), "name"],
        [str(folder / "one.yaml"), "model"],
        [str(folder / "one.yaml"), "tools[0]"],
        [str(folder / "two.yaml"), "tools[0]"],
    ]
    assert scanned.problems[0] == (f"{good}: name: agent 'good' is defined twice"
                                   f" (also in {folder / 'copy.yaml'}); rename one")
    with pytest.raises(AgentError, match=r"\(and 3 more: run `homeo agents` to see them all\)$"):
        load_agents(folder, models, {})


def test_the_runtime_refuses_to_publish_a_bad_folder(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    write(folder, "fine", "model: local\n")
    write(folder, "typo", "model: local\ntools: [homeo.examples.tool:calculate]\n")
    runtime = Runtime.open(Settings(data_dir=tmp_path / "data", agents_dir=folder))
    try:
        with pytest.raises(AgentError, match=rf"^{folder / 'typo.yaml'}: tools\[0\]: .*cannot"
                                             r" import 'homeo.examples.tool'"):
            runtime.publish_agents()
        assert runtime.backends.store.list_agents("default") == []
    finally:
        asyncio.run(runtime.aclose())
