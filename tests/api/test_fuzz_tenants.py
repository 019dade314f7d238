"""Schemathesis against the app's own OpenAPI schema, over real HTTP, with the
admin keys of two tenants that both hold runs, keys, collections, documents,
memories and an audit log, on SQLite and on PostgreSQL.

Every operation is called with data generated from its schema (valid and
invalid), as either tenant, and its path parameters are now and then swapped
for real ids: the caller's own or the other tenant's. Checked on every answer:
no 5xx, the body matches the schema where the schema declares one, and no
answer to one tenant holds anything of the other's (a planted marker, a run,
key or document id, a key's secret) that the caller did not itself send.
Afterwards each tenant's data is still all there, and both keys still work.

Bounded (a fixed number of examples per operation, derandomized, no
shrinking) so one backend takes about a minute on a busy machine.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from homeo.audit import generate_key
from tests.api.conftest import Served, add_key
from tests.api.test_runs import wait_for

sys.path.insert(0, str(Path(__file__).parent.parent / "support"))
from hashembed import HashingEmbedder  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 12
# Paths the fuzzer leaves alone: /metrics answers Prometheus text to anyone
# (sums over tenants without a token), so it has no tenant to leak.
SKIPPED = {"/metrics"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# POST /v1/memory/restore takes a tar archive: bytes, a tar header's worth or
# more, that restore must refuse with a 4xx, never a 5xx.
schemathesis.openapi.media_type(
    "application/x-tar", st.one_of(st.binary(max_size=2048),
                                   st.binary(min_size=512, max_size=4096).map(
                                       lambda raw: b"manifest.json".ljust(100, b"\0") + raw)))


@dataclass
class Tenant:
    """One tenant's admin key, its data's ids, and what the fuzzer sent as it."""

    name: str
    key: str
    marker: str
    run_ids: list[str] = field(default_factory=list)
    key_ids: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    document_ids: list[str] = field(default_factory=list)
    memory_ids: list[int] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)

    def owned(self) -> list[str]:
        """Strings only this tenant's data holds (memory ids are small integers
        every tenant has, so they are not among them)."""
        return [self.marker, *self.run_ids, *self.key_ids, *self.secrets, *self.document_ids]

    def path_values(self, for_owner: bool) -> dict[str, list[Any]]:
        """Real values for each path parameter name, to swap into generated cases.
        The other tenant gets them all; the owner not its admin key (revoking it
        would end the test), nor its last collection, document and memory,
        which must therefore survive the run."""
        admin_id = self.key.split("_")[1]
        kept = slice(None, -1) if for_owner else slice(None)
        return {
            "run_id": self.run_ids,
            "key_id": [k for k in self.key_ids if k != admin_id or not for_owner],
            "name": [*self.collections[kept], "echo", "calc"],
            "document_id": self.document_ids[kept],
            "memory_id": self.memory_ids[kept],
            "seq": [0, 1, 2],
        }


def plant(served: Served, name: str) -> Tenant:
    """A tenant with an admin key and one of everything, each holding a marker."""
    marker = f"zq{name}{secrets.token_hex(8)}"
    tenant = Tenant(name, add_key(served, name, role="admin"), marker)
    with served.client_for(tenant.key) as api:
        for agent in ("echo", "calc", "broken"):
            made = api.post("/v1/runs", json={"agent": agent, "input": f"{marker} 1 + 2"})
            assert made.status_code == 202, made.text
            tenant.run_ids.append(wait_for(api, made.json()["id"])["id"])
        made = api.post("/v1/keys", json={"name": f"{marker} key", "role": "member"})
        assert made.status_code == 201, made.text
        tenant.secrets.append(made.json()["key"])
        tenant.secrets.append(tenant.key)
        tenant.key_ids = [k["id"] for k in api.get("/v1/keys").json()]
        for text in (f"# Notes\n{marker} keeps the deploy notes.", f"{marker} second page"):
            tenant.collections.append(f"kb{secrets.token_hex(4)}")
            made = api.post(f"/v1/collections/{tenant.collections[-1]}/documents",
                            json={"text": text, "title": marker})
            assert made.status_code == 201, made.text
            tenant.document_ids.append(made.json()["id"])
    memories = served.runtime.memories()
    assert memories is not None
    for text in (f"{marker} deploys on Fridays", f"The {marker} server is db-7"):
        decision = asyncio.run(memories.remember(name, "tenant", text))
        assert decision.memory is not None, decision
        tenant.memory_ids.append(decision.memory.id)
    return tenant


def sent_strings(case: schemathesis.Case) -> set[str]:
    """Every string a request carried, in its path, query and body."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif value is not None:
            found.add(str(value))

    walk(case.path_parameters)
    walk(case.query)
    walk(case.body)
    return found


def leaks(text: str, caller: Tenant, other: Tenant) -> list[str]:
    """The other tenant's strings in an answer to `caller`, less those the
    caller sent at some point (knowing what you sent is not a leak)."""
    return [owned for owned in other.owned()
            if owned in text and not any(owned in sent for sent in caller.sent)]


def operations(schema: Any) -> Iterator[Any]:
    """Reads first, then writes, deletes last, so most calls meet full data."""
    order = {"GET": 0, "POST": 1, "PUT": 1, "DELETE": 2}
    found = [result.ok() for result in schema.get_all_operations()]
    yield from sorted((op for op in found if op.path not in SKIPPED),
                      key=lambda op: (order.get(op.method.upper(), 1), op.path))


def fuzz(operation: Any, base_url: str, tenants: tuple[Tenant, Tenant]) -> None:
    cases = st.one_of(operation.as_strategy(),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    session = requests.Session()

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
              database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=cases, data=st.data())
    def one(case: schemathesis.Case, data: st.DataObject) -> None:
        caller, other = tenants if data.draw(st.booleans(), "as") else tenants[::-1]
        for name in list(case.path_parameters or {}):
            source = data.draw(st.sampled_from(["generated", "own", "other"]), name)
            if source == "generated":
                continue
            values = (caller if source == "own" else other).path_values(source == "own")
            if values.get(name):
                case.path_parameters[name] = data.draw(st.sampled_from(values[name]),
                                                       f"{name} value")
        caller.sent |= sent_strings(case)
        response = case.call(base_url=base_url, session=session, timeout=60,
                             headers={"authorization": f"Bearer {caller.key}"})
        case.validate_response(response, checks=CHECKS)
        # Bytes, not text: a backup is a tar, and a leak in it is ASCII all the same.
        body = response.content.decode("utf-8", "replace")
        found = leaks(body, caller, other)
        assert not found, (f"{operation.method} {operation.path} as {caller.name} answered"
                           f" {response.status_code} with {other.name}'s {found}:"
                           f" {body[:500]}")

    try:
        one()
    finally:
        session.close()


def assert_intact(client: httpx.Client, tenant: Tenant) -> None:
    """What only the other tenant was given to aim at is all still there."""
    for run_id in tenant.run_ids:
        answer = client.get(f"/v1/runs/{run_id}")
        assert answer.status_code == 200 and tenant.marker in answer.json()["input"]
    assert set(tenant.key_ids) <= {k["id"] for k in client.get("/v1/keys").json()}
    memory = client.get(f"/v1/memories/{tenant.memory_ids[-1]}")
    assert memory.status_code == 200 and tenant.marker in memory.json()["text"], memory.text
    document = client.get(
        f"/v1/collections/{tenant.collections[-1]}/documents/{tenant.document_ids[-1]}")
    assert document.status_code == 200 and tenant.marker in document.json()["text"], document.text


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fuzz.db'}"
    return request.getfixturevalue("postgres_url")


def test_no_5xx_no_schema_drift_and_no_tenant_sees_another_s_data(
    serve: Callable[..., Served], database_url: str, tmp_path: Path
) -> None:
    audit_key = tmp_path / "secrets" / "audit.key"
    generate_key(audit_key)
    served = serve(database_url=database_url, audit_key_file=audit_key)
    served.runtime.models.add("embedding", HashingEmbedder())
    tenants = (plant(served, "acme"), plant(served, "globex"))
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    fuzzed = []
    for operation in operations(schema):
        fuzz(operation, served.url, tenants)
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    assert len(fuzzed) >= 30, fuzzed  # the schema was read, not skipped
    for tenant in tenants:
        with served.client_for(tenant.key) as client:
            assert client.get("/v1/agents").status_code == 200  # its admin key still works
            assert_intact(client, tenant)
