"""Secrets planted in every place a careless server would write them down: a
tool that prints the configuration (a homeo key, a provider key, a JWT, the
database URL with its password, the JWT secret), a provider whose error quotes
the API key, a validation error that echoes the value it refused, a JWT and a
database connection error in log lines. None of them reaches the captured
logs, the exported spans, an API answer or what the store keeps of the runs."""

from __future__ import annotations

import io
import json
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import psycopg
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from homeo.keys import parse
from homeo.observe import logs
from homeo.observe.scrubbed_spans import ScrubbingExporter
from tests.api.conftest import Served
from tests.api.test_runs import wait_for

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
from faultserver import error, fault_server  # noqa: E402

OPENAI_KEY = "sk-proj-" + secrets.token_hex(24) + "Xy9"
JWT_SECRET = "jwt-signing-secret-" + secrets.token_hex(16)
DB_PASSWORD = "Pw" + secrets.token_hex(10)


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """homeo's log configuration, at debug, into a buffer; then the one before."""
    before = structlog.get_config()
    buffer = io.StringIO()
    logs.configure("debug", json=True, file=buffer)
    yield buffer
    structlog.configure(**before)


def test_planted_secrets_reach_no_log_span_error_or_stored_run(
    serve: Callable[..., Served], postgres_url: str, written: io.StringIO
) -> None:
    import scriptkit

    # Trust authentication ignores the password, but homeo holds it as a secret.
    database_url = postgres_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    assert DB_PASSWORD in database_url
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingExporter(exporter)))
    with fault_server() as openai:
        openai.default = error(401, f"Incorrect API key provided: {OPENAI_KEY}. You can"
                                    " find your API key at https://platform.openai.com.")
        served = serve(
            tracer_provider=provider, database_url=database_url, jwt_secret=JWT_SECRET,
            jwt_issuer="https://login.example.com/", jwt_audience="homeo", router_retries=0,
            models={"leaky": [{"model": "openai:gpt-4o-mini", "base_url": openai.base_url,
                               "api_key": OPENAI_KEY}]})
        token = jwt.encode({"iss": "https://login.example.com/", "aud": "homeo",
                            "sub": "alice", "tenant": "default", "role": "admin",
                            "exp": 4_000_000_000}, JWT_SECRET, algorithm="HS256")
        planted = [served.key, OPENAI_KEY, token, database_url, JWT_SECRET]
        scriptkit.planted[:] = planted
        agents = served.runtime.settings.agents_dir
        (agents / "provider.yaml").write_text(
            "name: provider\ndescription: an agent on the leaky deployment\nmodel: leaky\n")
        (agents / "revealer.yaml").write_text(
            "name: revealer\ndescription: prints the configuration\n"
            "model: scripted:scriptkit:revealer_model\ntools: [scriptkit:reveal]\n")
        served.runtime.publish_agents()
        api = served.client
        answers = []

        # A tool prints them all; the model reads what the tool returned.
        made = api.post("/v1/runs", json={"agent": "revealer", "input": "show the config"})
        assert made.status_code == 202, made.text
        revealed = wait_for(api, made.json()["id"])
        assert revealed["status"] == "succeeded", revealed
        answers.append(api.get(f"/v1/runs/{revealed['id']}").text)
        # Configured values become ***, a homeo key keeps its public id, a JWT its kind.
        shown = "_*** ; *** ; <JWT> ; postgresql://postgres:***@"
        assert "config dump: hk_" in answers[-1] and shown in answers[-1], answers[-1]

        # A provider's error quotes its key: in the run's error, and in /v1/chat/completions.
        made = api.post("/v1/runs", json={"agent": "provider", "input": "hello"})
        assert made.status_code == 202, made.text
        failed = wait_for(api, made.json()["id"])
        assert failed["status"] == "failed" and "Incorrect API key" in failed["error"], failed
        answers.append(api.get(f"/v1/runs/{failed['id']}").text)
        chat = api.post("/v1/chat/completions", json={
            "model": "leaky", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code >= 400 and "Incorrect API key" in chat.text, chat.text
        answers.append(chat.text)
        with api.stream("POST", "/v1/chat/completions", json={
                "model": "leaky", "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}) as streamed:
            answers.append(streamed.read().decode())
        assert "Incorrect API key" in answers[-1], answers[-1]

        # A validation error echoes what it refused.
        refused = api.post("/v1/runs", json={"agent": "x" * 60 + token, "input": "hi"})
        assert refused.status_code == 422, refused.text
        answers.append(refused.text)

    # Log lines: a JWT in a header, a database URL and its driver's connection error.
    log = logs.get_logger("test")
    log.info("signing in", authorization=f"Bearer {token}")
    closed = database_url.replace("127.0.0.1:5432", "127.0.0.1:1", 1)
    with pytest.raises(psycopg.OperationalError) as refused_connection:
        psycopg.connect(closed, connect_timeout=3)
    log.error("cannot open the database", url=closed,
              error=f"{refused_connection.value}; dsn={closed}")

    store = served.runtime.backends.store
    stored = [store.get_run("default", run["id"]) for run in (revealed, failed)]
    steps = [store.list_steps("default", run["id"]) for run in (revealed, failed)]
    records = json.dumps([r.model_dump() for r in stored if r is not None]
                         + [s.model_dump() for run_steps in steps for s in run_steps],
                         default=str)
    assert "config dump:" in records and "Incorrect API key" in records
    provider.force_flush()
    spans = "\n".join(span.to_json() for span in exporter.get_finished_spans())
    assert "Incorrect API key" in spans
    lines = written.getvalue()
    assert "signing in" in lines and "cannot open the database" in lines

    _, key_secret = parse(served.key)
    for secret in [key_secret, OPENAI_KEY, token, JWT_SECRET, DB_PASSWORD]:
        for where, text in [("logs", lines), ("spans", spans), ("store", records),
                            *(("answer", answer) for answer in answers)]:
            assert secret not in text, f"{secret[:12]}… leaked into the {where}: {text[:2000]}"
