"""The safety policy at the API: a key in a run's input is refused with a 422
carrying the verdicts (for the tenant whose policy says so, not for another),
and chat completions are screened on the way in and out."""

from __future__ import annotations

from tests.api.conftest import add_key

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
POLICY = {"acme": {"input": {"secrets": "block"}},
          "*": {"output": {"secrets": "redact"}}}


def test_a_secret_in_a_run_input_is_refused_for_its_tenant_only(serve) -> None:
    served = serve(safety=POLICY)
    acme = served.client_for(add_key(served, "acme"))
    refused = acme.post("/v1/runs", json={"agent": "echo", "input": f"use {AWS_KEY}"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "input_blocked" and "AWS_ACCESS_KEY_ID" in error["message"]
    assert error["details"][0]["verdicts"][0]["guard"] == "secrets"
    assert acme.get("/v1/runs").json()["runs"] == []  # nothing was stored
    # The default tenant has no input rule: its run is accepted.
    accepted = served.client.post("/v1/runs", json={"agent": "echo", "input": f"use {AWS_KEY}"})
    assert accepted.status_code == 202, accepted.text


def test_chat_completions_are_screened_in_and_out(serve) -> None:
    served = serve(safety=POLICY, with_worker=False,
                   models={"echo": [{"model": "scripted:scriptkit:echo_model"}]})
    body = {"model": "echo", "messages": [{"role": "user", "content": f"key {AWS_KEY}"}]}
    answer = served.client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "echo: key <AWS_ACCESS_KEY_ID>"
    acme = served.client_for(add_key(served, "acme"))
    refused = acme.post("/v1/chat/completions", json=body)
    assert refused.status_code == 422 and refused.json()["error"]["type"] == "input_blocked"
    streamed = served.client.post("/v1/chat/completions", json={**body, "stream": True})
    assert AWS_KEY not in streamed.text and "AWS_ACCESS_KEY_ID" in streamed.text


def test_chat_placeholders_go_back_to_the_caller_and_guards_are_audited(serve, tmp_path) -> None:
    """A reversible rule: the model reads a placeholder, the caller gets the
    answer with its own address back; a refusal is an audit event naming the
    caller and the guard, not the text."""
    from homeo.audit import generate_key

    key = tmp_path / "keys" / "audit.key"
    key.parent.mkdir()
    generate_key(key)
    policy = {"*": {"input": {"pii": {"action": "redact", "reversible": True}}},
              "acme": {"input": {"secrets": "block"}}}
    served = serve(safety=policy, with_worker=False, audit_key_file=key,
                   models={"peek": [{"model": "scripted:scriptkit:peek_model"}]})
    body = {"model": "peek",
            "messages": [{"role": "user", "content": "mail dave@example.com"}]}
    answer = served.client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == (
        "echo: mail dave@example.com | read: mail (EMAIL_ADDRESS_1)")
    streamed = served.client.post("/v1/chat/completions", json={**body, "stream": True})
    assert "mail dave@example.com | read: mail (EMAIL_ADDRESS_1)" in streamed.text
    store = served.runtime.backends.store
    [redacted, *_] = store.list_audit("default", kind="safety.redact")
    assert redacted.subject == "chat" and redacted.details["boundary"] == "input"
    assert "dave@example.com" not in str(redacted.details)
    acme = served.client_for(add_key(served, "acme"))
    refused = acme.post("/v1/chat/completions", json={
        "model": "peek", "messages": [{"role": "user", "content": f"key {AWS_KEY}"}]})
    assert refused.status_code == 422
    [blocked] = store.list_audit("acme", kind="safety.block")
    assert blocked.actor.startswith("key:") and blocked.details["verdicts"][0]["guard"] == (
        "secrets")
    assert AWS_KEY not in str(blocked.details)
