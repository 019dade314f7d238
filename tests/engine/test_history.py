"""Run history on a real SQLite store: every step's checkpoint, forks, retention."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from homeo.backends import Backends, open_backends
from homeo.engine import prune
from homeo.engine.graph import Graph
from homeo.engine.history import InvalidStateEdit, NotForkable, StepNotFound, fork_run, step_state
from homeo.engine.react import tool_calling_graph
from homeo.engine.runner import execute
from homeo.engine.submit import submit_run
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.store.base import CheckpointPruned
from homeo.store.models import NewRun, Run
from homeo.tools.registry import from_function

TENANT = "t"
LINES = 3  # the model asks for this many appends, then answers


@pytest.fixture
def backends(tmp_path: Path):
    opened = open_backends(f"sqlite:///{tmp_path / 'history.db'}")
    opened.store.put_agent(TENANT, "writer", {"name": "writer"})
    yield opened
    opened.close()


def writer_graph(journal: Path) -> Graph:
    """A tool-calling loop whose tool has a side effect: it appends a line to `journal`."""

    def append_line(text: str) -> str:
        """Append a line to the journal.

        Args:
            text: the line
        """
        with journal.open("a") as file:
            file.write(text + "\n")
        return "appended"

    def reply(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
        done = sum(1 for message in messages if message.role == "tool")
        if done < LINES:
            return tool_call("append_line", text=f"line {done}")
        return f"wrote {done} lines"

    return tool_calling_graph(ScriptedModel(reply), [from_function(append_line)], max_steps=10)


def run_to_end(backends: Backends, graph: Graph, run: Run) -> str:
    claimed = backends.store.claim_run(TENANT, run.id)
    output = asyncio.run(execute(backends.store, claimed, graph, system_prompt="write",
                                 fence=claimed.lease_epoch))
    backends.store.transition_run(TENANT, run.id, "succeeded", allowed_from={"running"},
                                  output=output)
    return output


def original(backends: Backends, journal: Path) -> Run:
    run, _ = submit_run(backends, NewRun(tenant_id=TENANT, agent="writer", input="write"))
    assert run_to_end(backends, writer_graph(journal), run) == f"wrote {LINES} lines"
    return backends.store.get_run(TENANT, run.id)


def deltas_of(backends: Backends, run_id: str) -> list[dict | None]:
    rows = backends.store.all(
        "SELECT delta FROM steps LEFT JOIN step_checkpoints USING (run_id, seq)"
        " WHERE run_id = ? ORDER BY seq", (run_id,))
    return [None if row["delta"] is None else json.loads(row["delta"]) for row in rows]


def test_every_step_keeps_what_it_changed_and_any_step_state_is_rebuilt(
    backends: Backends, tmp_path: Path
) -> None:
    run = original(backends, tmp_path / "journal.txt")
    steps = backends.store.list_steps(TENANT, run.id)
    assert len(steps) == 2 * LINES + 1
    stored = deltas_of(backends, run.id)
    assert "state" in stored[0]  # the first step keeps the whole state
    for delta in stored[1:]:  # the others only what they added
        assert "state" not in delta and len(delta.get("append", [])) == 1
    # The state after each step grows by that step's message, and the last is the run's.
    sizes = []
    for step in steps:
        found, checkpoint = step_state(backends.store, TENANT, run.id, step.seq)
        assert found.seq == step.seq and checkpoint["seq"] == step.seq + 1
        sizes.append(len(checkpoint["state"]["messages"]))
    assert sizes == list(range(3, 3 + len(steps)))  # system + user, then one per step
    assert checkpoint == run.checkpoint
    tool_step = backends.store.checkpoint_at(TENANT, run.id, 1)
    assert tool_step["next"] == "model"
    assert tool_step["state"]["messages"][-1]["content"] == "appended"
    with pytest.raises(StepNotFound, match=r"has no step 99; its steps are 0 to 6"):
        step_state(backends.store, TENANT, run.id, 99)


def test_a_fork_runs_only_the_steps_after_its_step_with_the_edits(
    backends: Backends, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    run = original(backends, journal)
    assert journal.read_text().splitlines() == ["line 0", "line 1", "line 2"]
    # Step 3 is the second append: the fork starts after it, at the third model turn.
    fork, created = fork_run(backends, TENANT, run.id, 3, edits={"data": {"note": "forked"}},
                             idempotency_key="fork-1")
    assert created and fork.id != run.id and fork.status == "queued"
    assert (fork.forked_from_run, fork.forked_from_step) == (run.id, 3)
    assert backends.queue.find(TENANT, f"run:{fork.id}") is not None  # queued like any run
    again, created_again = fork_run(backends, TENANT, run.id, 3, idempotency_key="fork-1")
    assert again.id == fork.id and not created_again

    assert run_to_end(backends, writer_graph(journal), fork) == f"wrote {LINES} lines"
    # Only the third append ran again: steps 0-3 (two appends) were not repeated.
    assert journal.read_text().splitlines() == ["line 0", "line 1", "line 2", "line 2"]
    steps = backends.store.list_steps(TENANT, fork.id)
    assert [step.seq for step in steps] == [4, 5, 6]
    assert [step.kind for step in steps] == ["model", "tool", "model"]
    after = backends.store.checkpoint_at(TENANT, fork.id, 4)
    before = backends.store.checkpoint_at(TENANT, run.id, 3)
    assert after["state"]["messages"][:len(before["state"]["messages"])] == (
        before["state"]["messages"])
    assert after["state"]["data"] == {"note": "forked"}
    with pytest.raises(StepNotFound, match=rf"forked from run {run.id} after step 3"):
        step_state(backends.store, TENANT, fork.id, 2)


def test_a_fork_with_replaced_messages_starts_from_them(
    backends: Backends, tmp_path: Path
) -> None:
    run = original(backends, tmp_path / "journal.txt")
    start = backends.store.checkpoint_at(TENANT, run.id, 0)
    shorter = start["state"]["messages"][:2]  # system and user: the model turn again
    fork, _ = fork_run(backends, TENANT, run.id, 0, edits={"messages": shorter})
    assert fork.checkpoint["state"]["messages"] == shorter
    assert fork.checkpoint["seq"] == 1 and fork.checkpoint["next"] == start["next"]


def test_forks_that_cannot_work_are_refused_precisely(
    backends: Backends, tmp_path: Path
) -> None:
    run = original(backends, tmp_path / "journal.txt")
    with pytest.raises(NotForkable, match=r"step 6 was the last of run .*fork from step 5"):
        fork_run(backends, TENANT, run.id, 6)
    with pytest.raises(InvalidStateEdit, match=r"no field 'mood'; a fork may edit messages"):
        fork_run(backends, TENANT, run.id, 2, edits={"mood": "happy"})
    with pytest.raises(InvalidStateEdit, match=r"state.model_turns"):
        fork_run(backends, TENANT, run.id, 2, edits={"model_turns": "many"})
    failing, _ = submit_run(backends, NewRun(tenant_id=TENANT, agent="writer", input="x"))
    backends.store.begin_step(TENANT, failing.id, 0, "model", "model", None)
    backends.store.fail_step(TENANT, failing.id, 0, "the model refused")
    with pytest.raises(NotForkable, match=r"step 0 of run .* is failed \(the model refused\):"
                                          r" only a step that succeeded"):
        fork_run(backends, TENANT, failing.id, 0)
    step, checkpoint = step_state(backends.store, TENANT, failing.id, 0)
    assert step.status == "failed" and checkpoint is None


def test_retention_prunes_finished_runs_checkpoints_and_keeps_the_final_state(
    backends: Backends, tmp_path: Path
) -> None:
    old = original(backends, tmp_path / "journal.txt")
    recent = original(backends, tmp_path / "journal.txt")
    # Finished a day ago and just now; a 12 hour retention prunes only the first.
    now = recent.finished_at
    outputs = [step.output for step in backends.store.list_steps(TENANT, old.id)]
    backends.store.transition_run(TENANT, old.id, "succeeded", allowed_from={"succeeded"},
                                  now=now - 86_400)
    counted = prune.prune(backends.store, older_than=43_200, dry_run=True, now=now)
    assert (counted.runs, counted.checkpoints) == (1, 7) and counted.bytes > 0
    assert backends.store.checkpoint_at(TENANT, old.id, 3) is not None  # a dry run removes nothing
    removed = prune.prune(backends.store, older_than=43_200, now=now)
    assert removed == counted
    assert prune.describe(removed) == (
        f"removed 7 step checkpoints ({removed.bytes:,} bytes of JSON) of 1 finished run")
    assert deltas_of(backends, old.id) == [None] * 7
    with pytest.raises(CheckpointPruned, match=r"were pruned at .* its final state, after"
                                               r" step 6, is kept"):
        step_state(backends.store, TENANT, old.id, 3)
    assert backends.store.checkpoint_at(TENANT, old.id, 6) == old.checkpoint
    assert [step.output for step in backends.store.list_steps(TENANT, old.id)] == outputs
    with pytest.raises(CheckpointPruned):
        fork_run(backends, TENANT, old.id, 3)
    assert backends.store.checkpoint_at(TENANT, recent.id, 3) is not None
    assert prune.prune(backends.store, older_than=43_200, now=now).runs == 0  # done once


def test_one_prune_job_per_period_whoever_schedules_it(backends: Backends) -> None:
    assert prune.schedule(backends.queue, older_than=60, every=3600, now=7200.0)
    assert not prune.schedule(backends.queue, older_than=60, every=3600, now=7300.0)
    assert prune.schedule(backends.queue, older_than=60, every=3600, now=10_800.0)
    assert backends.queue.stats()["queued"] == 2
