"""A scripted agent whose tool step waits for a file, so a test can hold a step
of a `homeo run` subprocess for as long as it needs and end it from outside.

The agent file names `model: scripted:gatekit:waiter_model` and
`tools: [gatekit:wait_for_file]`; this folder is on the subprocess's PYTHONPATH.
"""

from __future__ import annotations

import time
from pathlib import Path

from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import tool_call
from homeo.tools.registry import tool

WAIT_SECONDS = 300.0  # longer than any test's deadline: a step only ends when told


def write_waiter(folder: Path) -> Path:
    """Write the `waiter` agent into `folder` (created) and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "waiter.yaml").write_text(
        "name: waiter\n"
        "description: waits for the file named by its task\n"
        "model: scripted:gatekit:waiter_model\n"
        "tools: [gatekit:wait_for_file]\n"
        "max_steps: 3\n"
        f"timeouts: {{step: {WAIT_SECONDS + 60:g}, run: {WAIT_SECONDS + 120:g}}}\n"
    )
    return folder


def waiter_model(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """Calls `wait_for_file` with the task as the path, then answers."""
    task = next(m.content for m in messages if m.role == "user")
    results = [m for m in messages if m.role == "tool"]
    if not results:
        return tool_call("wait_for_file", path=task)
    return f"{task}: {results[-1].content}"


@tool(idempotent=True, timeout_seconds=WAIT_SECONDS + 30)
def wait_for_file(path: str) -> str:
    """Wait until the file `path` exists (at most WAIT_SECONDS).

    Args:
        path: the file to wait for
    """
    deadline = time.monotonic() + WAIT_SECONDS
    while not Path(path).exists():
        if time.monotonic() > deadline:
            return "gave up waiting"
        time.sleep(0.05)
    return "the file is there"
