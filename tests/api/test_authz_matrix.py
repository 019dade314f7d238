"""The authorization matrix, generated from the app's routes: every route x
every role x the caller's own tenant and another one, for API keys and for JWT
users.

Each route declares its decision next to it (`requires(role)` or `public()`,
homeo.api.deps); this test reads the decisions from the app, so a route
without one, or without a sample request below, fails it. Then, over real
HTTP:
- a role below the declared one gets a 403, whatever the tenant;
- the declared role and those above it succeed in their own tenant;
- in another tenant they never touch or see the first tenant's runs, keys,
  documents or text (a 404 for its objects, lists without them);
- public routes answer without credentials.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from homeo.api.app import create_app
from homeo.api.deps import decision_of
from homeo.audit import generate_key
from homeo.config import Settings
from homeo.engine.ingest import submit_ingestion
from homeo.engine.submit import submit_run
from homeo.crypto.keyfile import new_key_file
from homeo.keys import create_key
from homeo.memory.embedder import Embedder
from homeo.memory.extract import from_text
from homeo.memory.knowledge import Knowledge
from homeo.memory.store import open_store
from homeo.runtime import Runtime
from homeo.store.models import ROLES, NewRun, role_allows

SUPPORT = Path(__file__).parent.parent / "support"
SECRET = "matrix-secret-" + "x" * 32
ISSUER, AUDIENCE = "https://login.example.com/", "homeo"
MARK = "acme-confidential-7f3a"  # in every text of acme's; never in an answer to globex
# The docs pages' scripts and styles, and the dashboard's stylesheet: public by nature.
STATIC_MOUNTS = {"/docs-assets", "/ui/static"}


def decisions(dependant: Dependant) -> list[str]:
    found = [decision_of(dependant.call)] if dependant.call is not None else []
    for sub in dependant.dependencies:
        found += decisions(sub)
    return [decision for decision in found if decision is not None]


def routes(app: FastAPI) -> list[tuple[str, str, str | None]]:
    """(method, path, decision) of every route, as the app serves it (routers
    included); the decision None when a route has none, or several."""
    listed = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount) and route.path in STATIC_MOUNTS:
            continue
        assert isinstance(route, APIRoute), f"{route!r} is not a FastAPI route: declare its access"
        declared = set(decisions(route.dependant))
        for method in sorted((context.methods or set()) - {"HEAD"}):
            listed.append((method, str(context.path),
                           declared.pop() if len(declared) == 1 else None))
    return listed


@dataclass
class Who:
    tenant: str
    role: str
    token: str  # an API key or a JWT
    principal: str


@dataclass
class World:
    url: str
    runtime: Runtime
    people: dict[tuple[str, str, str], Who]  # (kind, tenant, role) -> who
    acme: dict[str, str] = field(default_factory=dict)  # what acme has: run, doc, key ids
    made: int = 0

    def admin(self, tenant: str = "acme") -> httpx.Client:
        return self.client(self.people["key", tenant, "admin"].token)

    def client(self, token: str | None) -> httpx.Client:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, timeout=60, headers=headers)

    def run_of(self, submitter: str, tenant: str = "acme") -> str:
        """A queued run of `tenant` submitted by `submitter` (a principal)."""
        store = self.runtime.backends.store
        run, _ = submit_run(self.runtime.backends,
                            NewRun(tenant_id=tenant, agent="echo", input=f"{MARK} run"))
        store.record_submitter(tenant, run.id, submitter)
        return run.id

    def document(self, collection: str = "kb") -> str:
        with self.admin() as acme:
            made = acme.post(f"/v1/collections/{collection}/documents",
                             json={"text": f"{MARK} document", "title": MARK})
        assert made.status_code == 201, made.text
        return made.json()["id"]

    def fresh(self) -> str:
        self.made += 1
        return f"tmp{self.made}"


def own_or_acme(world: World, who: Who) -> tuple[str, str]:
    """Whose objects a call acts on: the caller's own when it is acme's, else acme's
    (the other tenant's) own, made by acme's admin."""
    acme_admin = world.people["key", "acme", "admin"].principal
    return ("acme", who.principal) if who.tenant == "acme" else ("acme", acme_admin)


def cancel(world: World, who: Who) -> tuple[str, str, dict[str, Any]]:
    tenant, submitter = own_or_acme(world, who)
    return "POST", f"/v1/runs/{world.run_of(submitter, tenant)}/cancel", {}


def ui_cancel(world: World, who: Who) -> tuple[str, str, dict[str, Any]]:
    tenant, submitter = own_or_acme(world, who)
    return "POST", f"/ui/runs/{world.run_of(submitter, tenant)}/cancel", {}


def revoke(world: World, who: Who) -> tuple[str, str, dict[str, Any]]:
    _, record = create_key(world.runtime.backends.store, "acme", f"{MARK} key")
    return "POST", f"/v1/keys/{record.id}/revoke", {}


def drop_collection(world: World, who: Who) -> tuple[str, str, dict[str, Any]]:
    name = world.fresh()
    world.document(name)
    return "DELETE", f"/v1/collections/{name}", {}


def drop_document(world: World, who: Who) -> tuple[str, str, dict[str, Any]]:
    return "DELETE", f"/v1/collections/kb/documents/{world.document()}", {}


def restore_acme(world: World, who: Who) -> tuple[str, str, dict[str, Any]]:
    """A backup of acme's memory as it is now: acme's admin gets it back
    unchanged; another tenant's admin is refused it (409), seeing none of it."""
    import tempfile

    from homeo.memory.backup import backup_tenant

    with tempfile.TemporaryDirectory() as folder:
        made = backup_tenant(world.runtime.backends, "acme", Path(folder) / "acme.tar")
        body = made.path.read_bytes()
    return "POST", "/v1/memory/restore", {
        "content": body, "headers": {"content-type": "application/x-tar"}}


# How to call each route: (method, path) -> the request, made for a caller `who`.
# Paths name acme's objects, so a caller of another tenant aims at them.
Sample = Callable[[World, Who], tuple[str, str, dict[str, Any]]]
SAMPLES: dict[tuple[str, str], Sample] = {
    ("POST", "/v1/runs"): lambda w, who: (
        "POST", "/v1/runs", {"json": {"agent": "echo", "input": f"from {who.tenant}"}}),
    ("GET", "/v1/runs"): lambda w, who: ("GET", "/v1/runs", {}),
    ("GET", "/v1/runs/{run_id}"): lambda w, who: ("GET", f"/v1/runs/{w.acme['done']}", {}),
    ("POST", "/v1/runs/{run_id}/cancel"): cancel,
    ("GET", "/v1/runs/{run_id}/events"): lambda w, who: (
        "GET", f"/v1/runs/{w.acme['done']}/events", {}),
    ("GET", "/v1/runs/{run_id}/steps/{seq}"): lambda w, who: (
        "GET", f"/v1/runs/{w.acme['stepped']}/steps/0", {}),
    ("POST", "/v1/runs/{run_id}/fork"): lambda w, who: (
        "POST", f"/v1/runs/{w.acme['stepped']}/fork", {"json": {"from_step": 0}}),
    ("POST", "/v1/runs/{run_id}/approve"): lambda w, who: (
        "POST", f"/v1/runs/{w.acme['done']}/approve", {"json": {}}),
    ("POST", "/v1/runs/{run_id}/reject"): lambda w, who: (
        "POST", f"/v1/runs/{w.acme['done']}/reject", {"json": {}}),
    ("POST", "/v1/runs/{run_id}/input"): lambda w, who: (
        "POST", f"/v1/runs/{w.acme['done']}/input", {"json": {"answer": "yes"}}),
    ("GET", "/v1/autonomic"): lambda w, who: ("GET", "/v1/autonomic", {}),
    ("GET", "/v1/autonomic/decisions"): lambda w, who: ("GET", "/v1/autonomic/decisions", {}),
    ("POST", "/v1/autonomic/decisions/{decision_id}/approve"): lambda w, who: (
        "POST", "/v1/autonomic/decisions/dec_000000000000none/approve", {}),
    ("GET", "/v1/agents"): lambda w, who: ("GET", "/v1/agents", {}),
    ("GET", "/v1/agents/{name}/versions"): lambda w, who: (
        "GET", "/v1/agents/echo/versions", {}),
    ("GET", "/v1/memories"): lambda w, who: ("GET", "/v1/memories", {}),
    ("GET", "/v1/memories/search"): lambda w, who: (
        "GET", "/v1/memories/search", {"params": {"q": MARK}}),
    ("GET", "/v1/memories/{memory_id}"): lambda w, who: ("GET", "/v1/memories/1", {}),
    ("DELETE", "/v1/memories/{memory_id}"): lambda w, who: ("DELETE", "/v1/memories/1", {}),
    ("POST", "/v1/memory/backup"): lambda w, who: ("POST", "/v1/memory/backup", {}),
    ("POST", "/v1/memory/restore"): restore_acme,
    ("GET", "/v1/models"): lambda w, who: ("GET", "/v1/models", {}),
    ("POST", "/v1/chat/completions"): lambda w, who: ("POST", "/v1/chat/completions", {
        "json": {"model": "default", "messages": [{"role": "user", "content": "hi"}]}}),
    ("POST", "/v1/embeddings"): lambda w, who: ("POST", "/v1/embeddings", {
        "json": {"model": "hash", "input": "hi"}}),
    ("GET", "/v1/providers"): lambda w, who: ("GET", "/v1/providers", {}),
    ("GET", "/v1/slo"): lambda w, who: ("GET", "/v1/slo", {}),
    ("GET", "/v1/keys"): lambda w, who: ("GET", "/v1/keys", {}),
    ("GET", "/v1/audit"): lambda w, who: ("GET", "/v1/audit", {}),
    ("POST", "/v1/keys"): lambda w, who: ("POST", "/v1/keys", {"json": {"name": "made"}}),
    ("POST", "/v1/keys/{key_id}/revoke"): revoke,
    ("GET", "/v1/tenant/encryption"): lambda w, who: ("GET", "/v1/tenant/encryption", {}),
    ("PUT", "/v1/tenant/encryption"): lambda w, who: (
        "PUT", "/v1/tenant/encryption", {"json": {"sensitive": True}}),
    ("GET", "/v1/collections"): lambda w, who: ("GET", "/v1/collections", {}),
    ("DELETE", "/v1/collections/{name}"): drop_collection,
    ("POST", "/v1/collections/{name}/documents"): lambda w, who: (
        "POST", "/v1/collections/kb/documents", {"json": {"text": f"from {who.tenant}"}}),
    ("PUT", "/v1/collections/{name}/documents/{document_id}"): lambda w, who: (
        "PUT", f"/v1/collections/kb/documents/{w.acme['doc']}",
        {"json": {"text": f"{MARK} document", "title": MARK}}),
    ("GET", "/v1/collections/{name}/documents"): lambda w, who: (
        "GET", "/v1/collections/kb/documents", {}),
    ("GET", "/v1/collections/{name}/documents/{document_id}"): lambda w, who: (
        "GET", f"/v1/collections/kb/documents/{w.acme['doc']}", {}),
    ("DELETE", "/v1/collections/{name}/documents/{document_id}"): drop_document,
    ("GET", "/v1/collections/{name}/ingestions/{ingestion_id}"): lambda w, who: (
        "GET", f"/v1/collections/kb/ingestions/{w.acme['ingestion']}", {}),
    ("GET", "/v1/collections/{name}/search"): lambda w, who: (
        "GET", "/v1/collections/kb/search", {"params": {"q": MARK, "mode": "text"}}),
    ("POST", "/v1/safety/check"): lambda w, who: (
        "POST", "/v1/safety/check", {"json": {"text": "hello", "guards": ["secrets"]}}),
    ("GET", "/healthz"): lambda w, who: ("GET", "/healthz", {}),
    ("GET", "/readyz"): lambda w, who: ("GET", "/readyz", {}),
    ("GET", "/metrics"): lambda w, who: ("GET", "/metrics", {}),
    ("GET", "/openapi.json"): lambda w, who: ("GET", "/openapi.json", {}),
    ("GET", "/docs"): lambda w, who: ("GET", "/docs", {}),
    ("GET", "/docs/oauth2-redirect"): lambda w, who: ("GET", "/docs/oauth2-redirect", {}),
    ("GET", "/redoc"): lambda w, who: ("GET", "/redoc", {}),
    # The dashboard (homeo.api.ui): its pages take the Authorization header too,
    # and need no CSRF token with it (it is no ambient credential).
    ("GET", "/ui"): lambda w, who: ("GET", "/ui", {}),
    ("POST", "/ui/sign-in"): lambda w, who: (
        "POST", "/ui/sign-in", {"data": {"token": w.people["key", "acme", "viewer"].token}}),
    ("POST", "/ui/sign-out"): lambda w, who: ("POST", "/ui/sign-out", {}),
    ("GET", "/ui/runs"): lambda w, who: ("GET", "/ui/runs", {}),
    ("GET", "/ui/runs/{run_id}"): lambda w, who: ("GET", f"/ui/runs/{w.acme['done']}", {}),
    ("GET", "/ui/runs/{run_id}/steps/{seq}"): lambda w, who: (
        "GET", f"/ui/runs/{w.acme['stepped']}/steps/0", {}),
    ("POST", "/ui/runs/{run_id}/approve"): lambda w, who: (
        "POST", f"/ui/runs/{w.acme['done']}/approve", {"data": {"comment": "ok"}}),
    ("POST", "/ui/runs/{run_id}/reject"): lambda w, who: (
        "POST", f"/ui/runs/{w.acme['done']}/reject", {"data": {"comment": "no"}}),
    ("POST", "/ui/runs/{run_id}/cancel"): ui_cancel,
    ("GET", "/ui/runs/{run_id}/events"): lambda w, who: (
        "GET", f"/ui/runs/{w.acme['done']}/events", {}),
    ("POST", "/ui/runs/{run_id}/steps/{seq}/fork"): lambda w, who: (
        "POST", f"/ui/runs/{w.acme['stepped']}/steps/0/fork", {}),
    ("GET", "/ui/agents"): lambda w, who: ("GET", "/ui/agents", {}),
    ("GET", "/ui/agents/{name}"): lambda w, who: ("GET", "/ui/agents/echo", {}),
    ("GET", "/ui/slo"): lambda w, who: ("GET", "/ui/slo", {}),
    ("GET", "/ui/system"): lambda w, who: ("GET", "/ui/system", {}),
    ("GET", "/ui/autonomic"): lambda w, who: ("GET", "/ui/autonomic", {}),
    ("GET", "/ui/memory"): lambda w, who: ("GET", "/ui/memory", {}),
    ("GET", "/ui/memory/{name}"): lambda w, who: (
        "GET", "/ui/memory/kb", {"params": {"q": "document", "mode": "text"}}),  # the page repeats q
}
# Public routes that answer other than 200: signing in and out redirect (303).
PUBLIC_STATUS = {("POST", "/ui/sign-in"): 303, ("POST", "/ui/sign-out"): 303}
# What an allowed caller gets in its own tenant where that is not a 2xx:
# `hash` is an embedding alias whose model (the scripted one) makes no embeddings.
# A finished run waits for nothing, so answering it is a 409 (once allowed;
# tests/api/test_audit.py approves a waiting one).
# Memory 1 does not exist (tests/api/test_memories.py checks real memories across tenants).
OWN_STATUS = {("POST", "/v1/embeddings"): 400, ("POST", "/v1/runs/{run_id}/approve"): 409,
              ("POST", "/v1/runs/{run_id}/reject"): 409, ("POST", "/v1/runs/{run_id}/input"): 409,
              ("POST", "/ui/runs/{run_id}/approve"): 409, ("POST", "/ui/runs/{run_id}/reject"): 409,
              # The dashboard's forms redirect to the run's page once done.
              ("POST", "/ui/runs/{run_id}/cancel"): 303,
              ("POST", "/ui/runs/{run_id}/steps/{seq}/fork"): 303,
              ("GET", "/v1/memories/{memory_id}"): 404, ("DELETE", "/v1/memories/{memory_id}"): 404,
              # No such decision (tests/api/test_autonomic_decisions.py approves real ones).
              ("POST", "/v1/autonomic/decisions/{decision_id}/approve"): 404}
# A backup of acme's is refused to another tenant, whose admin gets a 409 (checked
# beside the leaks below).
OTHER_STATUS = {("POST", "/v1/memory/restore"): 409}
# The routes that name an object of acme's in their path: another tenant gets a 404.
ACME_OBJECT_ROUTES = {path for _, path in SAMPLES if "{run_id}" in path or "{key_id}" in path
                      or "{document_id}" in path or "{ingestion_id}" in path}


def stepped_run(runtime: Runtime) -> str:
    """A succeeded run of acme's with one step, whose state holds acme's text."""
    store = runtime.backends.store
    run, _ = store.create_run(NewRun(tenant_id="acme", agent="echo", input=f"{MARK} run"))
    claim = store.claim_run("acme", run.id)
    store.begin_step("acme", run.id, 0, "model", "model", {"in": MARK}, fence=claim.lease_epoch)
    store.complete_step("acme", run.id, 0, MARK, {"next": None, "state": {"note": MARK}},
                        fence=claim.lease_epoch)
    store.transition_run("acme", run.id, "succeeded", allowed_from={"running"}, output=MARK,
                         fence=claim.lease_epoch)
    return run.id


def serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sys.path.insert(0, str(SUPPORT))
    import scriptkit
    from hashembed import HashingEmbedder

    folder = tmp_path_factory.mktemp("matrix")
    audit_key = folder / "keys" / "audit.key"
    generate_key(audit_key)
    new_key_file(folder / "keys" / "encryption.keys")
    settings = Settings(
        audit_key_file=audit_key, encryption_key_file=folder / "keys" / "encryption.keys",
        data_dir=folder / "data", agents_dir=scriptkit.write_agents(folder / "agents", ["echo"]),
        models={"default": [{"model": "scripted:scriptkit:echo_model"}],
                "hash": [{"model": "scripted:scriptkit:echo_model"}]},
        jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_algorithms="HS256")
    runtime = Runtime.open(settings)
    people: dict[tuple[str, str, str], Who] = {}
    for tenant in ("acme", "globex"):
        for role in ROLES:
            name = f"{MARK} {role}" if tenant == "acme" else role
            key, record = create_key(runtime.backends.store, tenant, name,
                                     role=role)  # type: ignore[arg-type]
            people["key", tenant, role] = Who(tenant, role, key, f"key:{record.id}")
            token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": f"{role}-person",
                                "tenant": tenant, "role": role, "exp": int(time.time()) + 3600},
                               SECRET, algorithm="HS256")
            people["jwt", tenant, role] = Who(tenant, role, token,
                                              f"user:{tenant}:{role}-person")
    runtime.publish_agents()
    app = create_app(settings, runtime.backends, runtime.metrics, None, runtime.models)
    app.state.knowledge = Knowledge(open_store(runtime.backends),
                                    Embedder(HashingEmbedder(), "hash"))
    server, thread, url = serve(app)
    made = World(url, runtime, people)
    try:
        made.acme["doc"] = made.document()
        made.acme["ingestion"] = submit_ingestion(
            runtime.backends, app.state.knowledge.store, "acme", "kb",
            from_text(f"{MARK} queued document", "text"), title=MARK)[0].id
        done = made.run_of(people["key", "acme", "admin"].principal)
        with made.admin() as acme:
            assert acme.post(f"/v1/runs/{done}/cancel").status_code == 200
        made.acme["done"] = done
        made.acme["stepped"] = stepped_run(runtime)
        yield made
    finally:
        server.should_exit = True
        thread.join(30)
        asyncio.run(runtime.aclose())
        sys.path.remove(str(SUPPORT))
        sys.modules.pop("scriptkit", None)
        sys.modules.pop("hashembed", None)


def test_every_route_declares_one_decision_and_has_a_sample(world: World) -> None:
    app = create_app(world.runtime.settings, world.runtime.backends, world.runtime.metrics)
    listed = routes(app)
    undeclared = [(m, p) for m, p, decision in listed if decision is None]
    assert not undeclared, f"routes without one access decision (requires/public): {undeclared}"
    unsampled = [(m, p) for m, p, _ in listed if (m, p) not in SAMPLES]
    assert not unsampled, f"add a sample request to SAMPLES for: {unsampled}"
    assert len(listed) == len(SAMPLES)


@pytest.mark.parametrize("kind", ["key", "jwt"])
def test_the_authorization_matrix(world: World, kind: str) -> None:
    app = create_app(world.runtime.settings, world.runtime.backends, world.runtime.metrics)
    acme_ids = [world.acme["doc"], world.acme["done"], world.acme["stepped"],
                world.acme["ingestion"]] + [
        who.principal.removeprefix("key:") for (k, tenant, _), who in world.people.items()
        if k == "key" and tenant == "acme"]
    wrong: list[str] = []
    for method, path, decision in routes(app):
        assert decision is not None
        for (person_kind, tenant, role), who in world.people.items():
            if person_kind != kind:
                continue
            sent_method, sent_path, extra = SAMPLES[method, path](world, who)
            with world.client(who.token) as client:
                answer = client.request(sent_method, sent_path, **extra)
            where = f"{method} {path} as {tenant} {role} ({kind}): {answer.status_code}"
            if decision == "public":
                if answer.status_code != PUBLIC_STATUS.get((method, path), 200):
                    wrong.append(f"{where}, expected {PUBLIC_STATUS.get((method, path), 200)}")
                continue
            if not role_allows(role, decision):
                if answer.status_code != 403 or f"this needs {decision}" not in answer.text:
                    wrong.append(f"{where}, expected 403 (needs {decision}) {answer.text[:200]}")
                continue
            if tenant == "acme":
                expected = OWN_STATUS.get((method, path))
                ok = (answer.status_code == expected if expected
                      else 200 <= answer.status_code < 300)
                if not ok:
                    wrong.append(f"{where}, expected {expected or '2xx'}: {answer.text[:200]}")
                continue
            # Another tenant's caller, allowed the route: it never reaches acme's data.
            if path in ACME_OBJECT_ROUTES and answer.status_code != 404:
                wrong.append(f"{where}, expected 404 for acme's object")
            if (method, path) in OTHER_STATUS and \
                    answer.status_code != OTHER_STATUS[method, path]:
                wrong.append(f"{where}, expected {OTHER_STATUS[method, path]}")
            # A 404 may repeat the id the caller sent; nothing else of acme's may show.
            leaked = [item for item in [MARK, *acme_ids]
                      if item in answer.text and item not in sent_path]
            if leaked:
                wrong.append(f"{where}: acme's {leaked} in the answer")
    assert not wrong, "\n".join(wrong)
    # Nothing globex did touched acme's things.
    store = world.runtime.backends.store
    assert store.get_run("acme", world.acme["done"]).status == "cancelled"
    assert all(store.get_key(who.principal.removeprefix("key:")).active
               for (k, tenant, _), who in world.people.items() if k == "key" and tenant == "acme")
    with world.admin() as acme:
        kept = acme.get(f"/v1/collections/kb/documents/{world.acme['doc']}")
    assert kept.status_code == 200 and MARK in kept.json()["text"]


def test_public_routes_answer_without_credentials(world: World) -> None:
    app = create_app(world.runtime.settings, world.runtime.backends, world.runtime.metrics)
    anyone = Who("", "", "", "")
    with world.client(None) as anonymous:
        for method, path, decision in routes(app):
            sent_method, sent_path, extra = SAMPLES[method, path](world, anyone)
            status = anonymous.request(sent_method, sent_path, **extra).status_code
            expected = PUBLIC_STATUS.get((method, path), 200) if decision == "public" else 401
            assert status == expected, (method, path, status)
