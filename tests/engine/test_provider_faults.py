"""An agent on a real OpenAI-compatible server (the fault-injecting one on
127.0.0.1) that calls a tool with wrong arguments: the error goes back to the
model, which corrects itself, and the run ends with its answer."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeo.backends import Backends, open_backends
from homeo.config import Settings
from homeo.engine.react import tool_calling_graph
from homeo.engine.runner import execute
from homeo.llm.resolve import ModelCatalog
from homeo.store.models import NewRun
from homeo.tools.registry import from_function

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from faultserver import FaultServer, Reply, completion, fault_server  # noqa: E402


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first
        b: the second
    """
    return a + b


def call(arguments: dict) -> dict:
    return {"id": f"call_{len(json.dumps(arguments))}", "type": "function",
            "function": {"name": "add", "arguments": json.dumps(arguments)}}


@pytest.fixture
def upstream() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    opened = open_backends(f"sqlite:///{tmp_path / 'faults.db'}")
    yield opened
    opened.close()


def test_wrong_tool_arguments_go_back_to_the_model_and_the_run_recovers(
    tmp_path: Path, upstream: FaultServer, backends: Backends
) -> None:
    upstream.script = [
        Reply(body=completion(None, tool_calls=[call({"a": "two", "b": 3})])),
        Reply(body=completion(None, tool_calls=[call({"a": 2})])),
        Reply(body=completion(None, tool_calls=[call({"a": 2, "b": 3})])),
        Reply(body=completion("2 + 3 = 5")),
    ]
    models = {"smart": [{"model": "openai:m", "base_url": upstream.base_url}]}
    catalog = ModelCatalog(Settings(data_dir=tmp_path, models=models))
    graph = tool_calling_graph(catalog.get("smart"), [from_function(add)], max_steps=6)
    run, _ = backends.store.create_run(NewRun(tenant_id="acme", agent="adder", input="2+3?"))
    run = backends.store.transition_run("acme", run.id, "running", allowed_from={"queued"})

    async def main() -> str:
        try:
            return await execute(backends.store, run, graph)
        finally:
            await catalog.aclose()

    assert asyncio.run(main()) == "2 + 3 = 5"
    # What the model was told after each bad call: which argument, and why.
    tool_results = [[m for m in sent["messages"] if m["role"] == "tool"]
                    for sent in upstream.received]
    assert [len(results) for results in tool_results] == [0, 1, 2, 3]
    told = [result["content"] for result in tool_results[-1]]
    assert told == ["error: invalid arguments for tool 'add': a: Input should be a valid"
                    " integer, unable to parse string as an integer",
                    "error: invalid arguments for tool 'add': b: Field required", "5"]
