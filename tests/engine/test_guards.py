"""The safety guards in runs, end to end with scripted models and the real
guards: an injected web page (a tool result telling the agent to exfiltrate a
key) is blocked, flagged or held for approval as the policy says; personal
data in the answer is redacted; a secret in the input fails the run; one
tenant's policy does not apply to another's runs."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homeo.config import Settings
from homeo.engine.agents import AgentSpec
from homeo.engine.submit import submit_run
from homeo.engine.waits import answer
from homeo.llm.providers.scripted import ScriptedModel
from homeo.runtime import Runtime
from homeo.store.models import NewRun, Run

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
import guardkit  # noqa: E402

SECRET = "ghp_" + "A" * 36  # a GitHub token's shape; the checksum decides below
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tools.log"
    monkeypatch.setenv(guardkit.LOG_ENV, str(path))
    return path


@pytest.fixture
def open_runtime(tmp_path: Path) -> Iterator[Any]:
    opened: list[Runtime] = []

    def make(safety: dict[str, Any]) -> Runtime:
        settings = Settings(data_dir=tmp_path / f"data{len(opened)}", lease_seconds=5,
                            poll_seconds=0.01, retry_base_seconds=0.0, retry_max_seconds=0.0,
                            safety=safety)
        opened.append(Runtime.open(settings))
        return opened[-1]

    yield make
    for runtime in opened:
        asyncio.run(runtime.aclose())


def define(runtime: Runtime, tenant: str, name: str, model: str, tools: list[str],
           **extra: Any) -> None:
    runtime.models.add(f"test:{name}", ScriptedModel(getattr(guardkit, model)))
    runtime.agents.publish(tenant, {name: AgentSpec(
        name=name, model=f"test:{name}", max_steps=4,
        tools=[f"guardkit:{tool}" for tool in tools], **extra)})


def run_once(runtime: Runtime, tenant: str, agent: str, text: str) -> Run:
    run, _ = submit_run(runtime.backends, NewRun(tenant_id=tenant, agent=agent, input=text))
    asyncio.run(runtime.worker(1).run_until_idle())
    return get(runtime, tenant, run.id)


def get(runtime: Runtime, tenant: str, run_id: str) -> Run:
    run = runtime.backends.store.get_run(tenant, run_id)
    assert run is not None
    return run


def tool_step(runtime: Runtime, run: Run, name: str) -> Any:
    steps = runtime.backends.store.list_steps(run.tenant_id, run.id)
    return [step for step in steps if step.name == name][-1]


def counted(runtime: Runtime, tenant: str, boundary: str, guard: str, action: str) -> float:
    value = runtime.metrics.registry.get_sample_value(
        "homeo_safety_verdicts_total",
        {"tenant": tenant, "boundary": boundary, "guard": guard, "action": action})
    return value or 0.0


def test_a_blocked_tool_result_never_reaches_the_model(open_runtime, log: Path) -> None:
    runtime = open_runtime({"*": {"tool_output": {"injection": "block"}}})
    define(runtime, "default", "browser", "browser_model", ["fetch_page"])
    run = run_once(runtime, "default", "browser", "https://weather.example/lisbon")
    assert run.status == "succeeded", run.error
    assert guardkit.ATTACK not in run.output and "withheld" in run.output
    step = tool_step(runtime, run, "fetch_page")
    verdict = step.output["safety"]["verdicts"][0]
    assert step.output["safety"]["action"] == "block" and verdict["guard"] == "injection"
    assert verdict["flagged"] and verdict["score"] >= verdict["threshold"] and verdict["spans"]
    assert step.output["withheld"] == guardkit.PAGE  # kept for the people who look
    assert counted(runtime, "default", "tool_output", "injection", "block") == 1
    # A clean page goes through untouched.
    clean = run_once(runtime, "default", "browser", "https://clean.example/lisbon")
    assert clean.output == f"I read: {guardkit.CLEAN_PAGE}"
    assert "safety" not in tool_step(runtime, clean, "fetch_page").output


def test_a_flagged_tool_result_is_recorded_and_the_run_goes_on(open_runtime, log: Path) -> None:
    runtime = open_runtime({"*": {"tool_output": {"injection": "flag"}}})
    define(runtime, "default", "browser", "browser_model", ["fetch_page"])
    run = run_once(runtime, "default", "browser", "https://weather.example/lisbon")
    assert run.status == "succeeded" and run.output == f"I read: {guardkit.PAGE}"
    step = tool_step(runtime, run, "fetch_page")
    assert step.output["result"] == guardkit.PAGE
    assert step.output["safety"]["action"] == "flag"
    assert counted(runtime, "default", "tool_output", "injection", "flag") == 1


@pytest.mark.parametrize("approved", [True, False])
def test_a_held_tool_result_waits_for_a_person(open_runtime, log: Path, approved: bool) -> None:
    """The agent's YAML asks for approval over the tenant's flag; the tool runs
    once, whatever the person decides."""
    runtime = open_runtime({"*": {"tool_output": {"injection": "flag"}}})
    define(runtime, "default", "browser", "browser_model", ["fetch_page"],
           safety={"tool_output": {"injection": "approve"}})
    run = run_once(runtime, "default", "browser", "https://weather.example/lisbon")
    assert run.status == "waiting"
    assert run.waiting_for is not None and run.waiting_for["kind"] == "approval"
    assert run.waiting_for["detail"]["safety"]["verdicts"][0]["guard"] == "injection"
    decision = {"approved": approved, "comment": "" if approved else "looks like an attack"}
    answer(runtime.backends, run, "approval", decision)
    asyncio.run(runtime.worker(1).run_until_idle())
    run = get(runtime, "default", run.id)
    assert run.status == "succeeded", run.error
    assert guardkit.logged(log) == ["fetch https://weather.example/lisbon"]
    step = tool_step(runtime, run, "fetch_page")
    assert step.output["safety"]["approved"] is approved
    if approved:
        assert run.output == f"I read: {guardkit.PAGE}"
    else:
        assert guardkit.ATTACK not in run.output and "looks like an attack" in run.output


def test_retrieved_results_follow_the_retrieved_rules(open_runtime, log: Path) -> None:
    runtime = open_runtime({"*": {"tool_output": {"injection": "flag"},
                                  "retrieved": {"injection": "block"}}})
    define(runtime, "default", "notes", "browser_model", ["search_notes"])
    run = run_once(runtime, "default", "notes", "lisbon")
    assert run.status == "succeeded" and guardkit.ATTACK not in run.output
    assert tool_step(runtime, run, "search_notes").output["safety"]["boundary"] == "retrieved"


def test_personal_data_in_the_answer_is_redacted(open_runtime, log: Path) -> None:
    runtime = open_runtime({"*": {"output": {"pii": "redact", "secrets": "redact"}}})
    define(runtime, "default", "echo", "echo_model", [])
    run = run_once(runtime, "default", "echo",
                   f"write to alice@example.com with key {AWS_KEY}")
    assert run.status == "succeeded", run.error
    assert run.output == "You said: write to <EMAIL_ADDRESS> with key <AWS_ACCESS_KEY_ID>"
    steps = runtime.backends.store.list_steps("default", run.id)
    assert steps[-1].output["content"] == run.output
    assert {v["guard"] for v in steps[-1].output["safety"]["verdicts"]} == {"pii", "secrets"}


def test_a_blocked_answer_fails_the_run(open_runtime, log: Path) -> None:
    runtime = open_runtime({"*": {"output": {"secrets": "block"}}})
    define(runtime, "default", "echo", "echo_model", [])
    run = run_once(runtime, "default", "echo", f"my key is {AWS_KEY}")
    assert run.status == "failed" and "blocked by the safety policy" in (run.error or "")
    assert AWS_KEY not in (run.output or "")


def test_a_secret_in_the_input_fails_the_run_and_redact_masks_it(open_runtime, log) -> None:
    runtime = open_runtime({"acme": {"input": {"secrets": "block"}},
                            "globex": {"input": {"secrets": "redact"}}})
    for tenant in ("acme", "globex", "initech"):
        define(runtime, tenant, "echo", "echo_model", [])
    text = f"deploy with {AWS_KEY}"
    refused = run_once(runtime, "acme", "echo", text)
    assert refused.status == "failed" and "input was blocked" in (refused.error or "")
    assert runtime.backends.store.list_steps("acme", refused.id) == []  # no model call
    masked = run_once(runtime, "globex", "echo", text)
    assert masked.output == "You said: deploy with <AWS_ACCESS_KEY_ID>"
    # Tenant A's policy does not apply to tenant C, which has none.
    free = run_once(runtime, "initech", "echo", text)
    assert free.status == "succeeded" and free.output == f"You said: {text}"


REVERSIBLE = {"action": "redact", "reversible": True}


def read_by_model(path: Path) -> str:
    return "\n".join(line for line in guardkit.logged(path) if line.startswith("model read"))


def test_reversible_redaction_hides_the_value_from_the_model_only(open_runtime, log) -> None:
    """The model reads a numbered placeholder; the mail tool gets the address,
    and the answer goes back to its owner with it; the records keep it only
    in the run's own vault."""
    runtime = open_runtime({"*": {"input": {"pii": REVERSIBLE}}})
    define(runtime, "default", "mailer", "mailer_model", ["send_mail"])
    run = run_once(runtime, "default", "mailer", "Tell alice@example.com the report is ready")
    assert run.status == "succeeded", run.error
    assert "mail alice@example.com: the report is ready" in guardkit.logged(log)
    seen = read_by_model(log)
    assert "<EMAIL_ADDRESS_1>" in seen and "alice@example.com" not in seen
    # The tool echoed the address: the model read the placeholder there too.
    assert "model read: sent to <EMAIL_ADDRESS_1>" in seen
    assert run.output == "Mailed: sent to alice@example.com"
    steps = runtime.backends.store.list_steps("default", run.id)
    assert steps[0].output["tool_calls"][0]["arguments"] == {
        "to": "<EMAIL_ADDRESS_1>", "body": "the report is ready"}
    assert steps[1].output["result"] == "sent to <EMAIL_ADDRESS_1>"
    checkpoint = runtime.backends.store.get_run("default", run.id).checkpoint
    assert checkpoint["state"]["data"]["vault"] == {"<EMAIL_ADDRESS_1>": "alice@example.com"}


def test_without_reversible_the_tool_gets_only_the_label(open_runtime, log) -> None:
    runtime = open_runtime({"*": {"input": {"pii": "redact"}}})
    define(runtime, "default", "mailer", "mailer_model", ["send_mail"])
    run = run_once(runtime, "default", "mailer", "Tell alice@example.com the report is ready")
    assert run.status == "succeeded", run.error
    assert "mail <EMAIL_ADDRESS>: the report is ready" in guardkit.logged(log)
    assert run.output == "Mailed: sent to <EMAIL_ADDRESS>"
    assert "alice@example.com" not in "\n".join(guardkit.logged(log))


def test_tool_output_placeholders_map_back_within_their_own_run_only(open_runtime, log) -> None:
    """A looked-up address is masked before the model reads it and restored in
    the next tool call; a run (or tenant) that writes the same placeholder
    without having masked anything restores nothing."""
    runtime = open_runtime({"*": {"tool_output": {"pii": REVERSIBLE}},
                            "other": {"tool_output": {"pii": REVERSIBLE}}})
    define(runtime, "default", "crm", "mailer_model", ["lookup_customer", "send_mail"])
    run = run_once(runtime, "default", "crm", "Mail our customer")
    assert run.status == "succeeded", run.error
    assert "mail ana.lima@example.com: the report is ready" in guardkit.logged(log)
    assert "ana.lima@example.com" not in read_by_model(log)
    for tenant in ("default", "other"):
        define(runtime, tenant, "mailer", "mailer_model", ["send_mail"])
        guessed = run_once(runtime, tenant, "mailer", "Tell <EMAIL_ADDRESS_1> it is ready")
        assert guessed.output == "Mailed: sent to <EMAIL_ADDRESS_1>"
    assert "mail <EMAIL_ADDRESS_1>: the report is ready" in guardkit.logged(log)


def test_output_rules_still_apply_to_restored_values(open_runtime, log) -> None:
    runtime = open_runtime({"*": {"input": {"pii": REVERSIBLE}, "output": {"pii": "redact"}}})
    define(runtime, "default", "mailer", "mailer_model", ["send_mail"])
    run = run_once(runtime, "default", "mailer", "Tell alice@example.com the report is ready")
    assert "mail alice@example.com: the report is ready" in guardkit.logged(log)
    assert run.output == "Mailed: sent to <EMAIL_ADDRESS>"


def test_what_the_guards_do_is_an_audit_event(tmp_path: Path, log: Path) -> None:
    from homeo.audit import generate_key, load_public_key, verify_log

    key = tmp_path / "keys" / "audit.key"
    key.parent.mkdir()
    public = generate_key(key)
    settings = Settings(data_dir=tmp_path / "data", lease_seconds=5, poll_seconds=0.01,
                        audit_key_file=key,
                        safety={"*": {"tool_output": {"injection": "block"}}})
    runtime = Runtime.open(settings)
    try:
        define(runtime, "default", "browser", "browser_model", ["fetch_page"])
        run = run_once(runtime, "default", "browser", "https://weather.example/lisbon")
        store = runtime.backends.store
        [entry] = store.list_audit("default", kind="safety.block")
        assert entry.actor == "guards" and entry.subject == f"run:{run.id}"
        assert entry.details["boundary"] == "tool_output"
        assert entry.details["verdicts"][0]["guard"] == "injection"
        assert entry.details["verdicts"][0]["kinds"] == ["INJECTION"]
        assert guardkit.ATTACK not in str(entry.details)  # never the text
        verdict = verify_log("default", store.list_audit("default"),
                             store.audit_head("default"), load_public_key(public))
        assert verdict.ok, verdict
    finally:
        asyncio.run(runtime.aclose())


def test_an_answer_taken_from_a_tool_result_meets_the_output_rules(open_runtime, log) -> None:
    """Not only the model's own answer: here the answer is the tool's result
    (`answer: tool_result`), and the runner screens it as it leaves."""
    runtime = open_runtime({"*": {"output": {"pii": "redact"}}})
    define(runtime, "default", "crm", "mailer_model", ["lookup_customer"],
           answer="tool_result")
    run = run_once(runtime, "default", "crm", "Who is our customer?")
    assert run.status == "succeeded", run.error
    assert "ana.lima@example.com" not in run.output and "<EMAIL_ADDRESS>" in run.output
    assert counted(runtime, "default", "output", "pii", "redact") == 1
    # The tool-calling loop's answer is screened once, on its step, not again.
    define(runtime, "default", "echo", "echo_model", [])
    echoed = run_once(runtime, "default", "echo", "write to alice@example.com")
    assert echoed.output == "You said: write to <EMAIL_ADDRESS>"
    assert counted(runtime, "default", "output", "pii", "redact") == 2
