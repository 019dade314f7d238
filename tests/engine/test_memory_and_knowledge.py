"""Agents with memory and knowledge, run by a real worker on SQLite and
PostgreSQL with scripted models: `remember` in one run and `recall` in the
next (scoped as the YAML says), retrieval-augmented answers that cite their
sources from a real collection, and the memory prune job in the queue."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeo.config import Settings
from homeo.engine import memory_prune
from homeo.engine.agents import AgentSpec, check_agent
from homeo.engine.submit import RunNeedsUser, submit_run
from homeo.llm.base import Message, ToolSpec
from homeo.llm.providers.scripted import ScriptedModel, tool_call
from homeo.memory.extract import from_text
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
from hashembed import HashingEmbedder  # noqa: E402

TENANT = "default"
REMEMBER = "homeo.tools.memory_tools:remember"
RECALL = "homeo.tools.memory_tools:recall"


def keeper(messages: list[Message], tools: list[ToolSpec]) -> Message | str:
    """`remember: TEXT` remembers TEXT; `recall: QUERY` recalls; then reports the result."""
    task = next(m.content for m in messages if m.role == "user")
    results = [m.content for m in messages if m.role == "tool"]
    if results:
        return results[-1]
    verb, _, rest = task.partition(": ")
    return tool_call(verb, **({"text": rest} if verb == "remember" else {"query": rest}))


def librarian(messages: list[Message], tools: list[ToolSpec]) -> str:
    """Answers with the first sentence of the first source, citing it as [1]."""
    system = messages[0].content if messages[0].role == "system" else ""
    if "[1]" not in system:
        return "I found no sources."
    block = system.split("[1] ", 1)[1].split("\n")[1:]
    first = next(line for line in block if line.endswith("."))
    return f"{first} [1]"


@pytest.fixture
def runtime(tmp_path: Path, backend_url: str) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path, database_url=backend_url, lease_seconds=5,
                        poll_seconds=0.01, retry_base_seconds=0.0, retry_max_seconds=0.0)
    opened = Runtime.open(settings)
    opened.models.add("embedding", HashingEmbedder())
    opened.models.add("test:keeper", ScriptedModel(keeper))
    opened.models.add("test:librarian", ScriptedModel(librarian))
    yield opened
    asyncio.run(opened.aclose())


def run(runtime: Runtime, agent: str, task: str, tenant: str = TENANT,
        user: str | None = None) -> Run:
    made, _ = submit_run(runtime.backends, NewRun(tenant_id=tenant, agent=agent, input=task,
                                                  user_id=user))
    asyncio.run(runtime.worker(1).run_until_idle())
    done = runtime.backends.store.get_run(tenant, made.id)
    assert done is not None and done.status == "succeeded", (done.status, done.error)
    return done


def keepers(scope: str) -> dict[str, AgentSpec]:
    return {name: AgentSpec(name=name, model="test:keeper", tools=[REMEMBER, RECALL],
                            memory={"scope": scope, "ttl": "30d"})
            for name in ("keeper", "other")}


def test_what_one_run_remembers_the_next_recalls_in_the_agents_scope(
        runtime: Runtime) -> None:
    runtime.agents.publish(TENANT, keepers("agent"))
    stored = json.loads(run(runtime, "keeper", "remember: The deploy server is db-9").output)
    assert stored["action"] == "stored"
    refused = json.loads(run(runtime, "keeper", "remember: thanks!").output)
    assert refused["action"] == "refused" and "greeting" in refused["reason"]
    recalled = json.loads(run(runtime, "keeper", "recall: deploy server").output)
    assert [hit["text"] for hit in recalled] == ["The deploy server is db-9"]
    # Another agent's memory is another scope.
    assert json.loads(run(runtime, "other", "recall: deploy server").output) == []
    memory = runtime.memories()
    assert memory is not None
    kept = memory.store.list_memories(TENANT)
    assert [(m.scope, m.text) for m in kept] == [("agent:keeper", "The deploy server is db-9")]
    assert kept[0].expires_at == pytest.approx(kept[0].created_at + 30 * 86400)


def test_run_scope_keeps_each_runs_memory_to_itself(runtime: Runtime) -> None:
    runtime.agents.publish(TENANT, keepers("run"))
    run(runtime, "keeper", "remember: The deploy server is db-9")
    assert json.loads(run(runtime, "keeper", "recall: deploy server").output) == []


def test_user_scope_keeps_each_users_memory_to_that_user_in_every_tenant(
        runtime: Runtime) -> None:
    for tenant in (TENANT, "acme"):
        runtime.agents.publish(tenant, keepers("user"))
    run(runtime, "keeper", "remember: My locker code is 4711", user="alice")
    # Alice's memory follows her to another agent of the tenant, and to no one else.
    recalled = json.loads(run(runtime, "other", "recall: locker code", user="alice").output)
    assert [hit["text"] for hit in recalled] == ["My locker code is 4711"]
    assert json.loads(run(runtime, "keeper", "recall: locker code", user="bob").output) == []
    # Another tenant's alice is another person.
    assert json.loads(run(runtime, "keeper", "recall: locker code", tenant="acme",
                          user="alice").output) == []
    memory = runtime.memories()
    assert memory is not None
    assert [m.scope for m in memory.store.list_memories(TENANT)] == ["user:alice"]
    assert memory.store.list_memories("acme") == []


def test_a_per_user_agent_refuses_a_run_without_a_user_at_submission(
        runtime: Runtime) -> None:
    runtime.agents.publish(TENANT, keepers("user"))
    with pytest.raises(RunNeedsUser, match="keeps memory per user.*--user"):
        submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="keeper",
                                            input="recall: locker code"))
    assert runtime.backends.store.list_runs(TENANT) == []


def test_a_run_without_a_user_fails_clearly_if_its_agent_became_per_user(
        runtime: Runtime) -> None:
    runtime.agents.publish(TENANT, keepers("agent"))
    made, _ = submit_run(runtime.backends, NewRun(tenant_id=TENANT, agent="keeper",
                                                  input="recall: locker code"))
    runtime.agents.publish(TENANT, keepers("user"))
    asyncio.run(runtime.worker(1).run_until_idle())
    done = runtime.backends.store.get_run(TENANT, made.id)
    assert done is not None and done.status == "failed"
    assert "keeps memory per user" in (done.error or "")


def test_memory_tools_without_memory_are_refused_at_load(runtime: Runtime) -> None:
    spec = AgentSpec(name="forgetful", model="test:keeper", tools=[REMEMBER])
    problems = check_agent(spec, runtime.models, {})
    assert any("memory: {scope: agent}" in problem for problem in problems)


def test_an_answer_cites_the_chunks_retrieval_put_in_its_context(runtime: Runtime) -> None:
    knowledge = runtime.knowledge()
    handbook = ("# Leave\nStaff get 25 days of paid leave a year.\n\n"
                "# Expenses\nExpenses over 500 euros need a director's approval.")
    asyncio.run(knowledge.add(TENANT, "handbook", from_text(handbook, "markdown"),
                              title="Staff handbook", source="handbook.md"))
    asyncio.run(knowledge.add(TENANT, "faq", from_text("The canteen opens at noon.", "text"),
                              title="FAQ"))
    asyncio.run(knowledge.add("globex", "handbook",
                              from_text("Globex staff get 40 days of leave.", "text")))
    runtime.agents.publish(TENANT, {"clerk": AgentSpec(
        name="clerk", model="test:librarian", system_prompt="You answer staff questions.",
        knowledge={"collections": ["handbook", "faq", "wiki"], "k": 2})})
    done = run(runtime, "clerk", "How many days of paid leave do staff get?")
    assert done.output == "Staff get 25 days of paid leave a year. [1]"
    steps = runtime.backends.store.list_steps(TENANT, done.id)
    assert [(s.kind, s.name) for s in steps][:2] == [("retrieve", "retrieve"), ("model", "model")]
    output = steps[0].output
    assert output["missing"] == ["wiki"] and len(output["sources"]) == 2
    first = output["sources"][0]
    assert (first["n"], first["collection"], first["title"], first["source"],
            first["position"]) == (1, "handbook", "Staff handbook", "handbook.md", 0)
    final = done.checkpoint["state"]
    assert final["data"]["sources"][0]["document_id"] == first["document_id"]
    system = final["messages"][0]["content"]
    assert system.startswith("You answer staff questions.")
    assert "[1] Staff handbook (handbook.md, part 1)" in system and "like [1]" in system
    assert "Globex" not in system  # another tenant's collection of the same name


def test_the_prune_job_in_the_queue_deletes_expired_memories(runtime: Runtime) -> None:
    memory = runtime.memories()
    assert memory is not None
    made = asyncio.run(memory.remember(TENANT, "tenant", "The demo room is booked all week",
                                       ttl=60, now=1000.0))
    assert made.action == "stored"
    assert memory_prune.schedule(runtime.backends.queue, every=3600, now=5000.0)
    assert not memory_prune.schedule(runtime.backends.queue, every=3600, now=5001.0)
    assert asyncio.run(runtime.worker(1).run_until_idle()) == 1
    assert memory.store.list_memories(TENANT, superseded=True) == []
    assert runtime.backends.queue.stats().get("done", 0) == 1
