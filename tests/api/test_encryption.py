"""PUT/GET /v1/tenant/encryption, and an agent run end to end for a tenant
marked sensitive, through the API and a real worker, on SQLite and
PostgreSQL: the answer and each step's state read back over HTTP, while the
database (the raw SQLite file, the raw PostgreSQL rows) holds none of the
planted text. The change is an audit entry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from homeo.audit import generate_key
from homeo.crypto import keyfile
from tests.api.conftest import Served
from tests.api.test_runs import assert_error, run_id_of, wait_for
from tests.crypto.test_sealed_store import raw_text

PLANT = "PLANTED-patient-record-93f0"


def test_without_a_key_file_a_tenant_cannot_be_marked_sensitive(served: Served) -> None:
    shown = served.client.get("/v1/tenant/encryption")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert {k: body[k] for k in ("tenant_id", "sensitive", "data_key_id",
                                 "key_file_configured")} == {
        "tenant_id": "default", "sensitive": False, "data_key_id": None,
        "key_file_configured": False}
    assert "runs.checkpoint" in body["encrypts"] and "audit log" in body["does_not_encrypt"]
    refused = served.client.put("/v1/tenant/encryption", json={"sensitive": True})
    assert "HOMEO_ENCRYPTION_KEY_FILE" in assert_error(refused, 409, "conflict")
    bad = served.client.put("/v1/tenant/encryption", json={"sensitive": "maybe"})
    assert bad.status_code == 422


def test_a_sensitive_tenants_agent_run_is_encrypted_at_rest(
        serve: Callable[..., Served], backend_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "encryption.keys"
    keyfile.new_key_file(key_file)
    audit_key = tmp_path / "secrets" / "audit.key"
    generate_key(audit_key)
    served = serve(database_url=backend_url, encryption_key_file=key_file,
                   audit_key_file=audit_key)
    marked = served.client.put("/v1/tenant/encryption", json={"sensitive": True})
    assert marked.status_code == 200, marked.text
    assert marked.json()["sensitive"] is True and marked.json()["key_file_configured"]
    data_key = marked.json()["data_key_id"]
    assert served.client.get("/v1/tenant/encryption").json() == marked.json()

    run_id = run_id_of(served.client, "echo", f"look after {PLANT}")
    run = wait_for(served.client, run_id)
    assert run["status"] == "succeeded", run
    assert PLANT in run["input"] and PLANT in run["output"]
    state = served.client.get(f"/v1/runs/{run_id}/steps/0")
    assert state.status_code == 200 and PLANT in state.text

    raw = raw_text(served.runtime.backends, backend_url)
    assert PLANT not in raw
    assert f"homeo:enc:v1:{data_key}:" in raw

    entries = served.client.get("/v1/audit", params={"kind": "tenant.encryption.changed"})
    [entry] = entries.json()["entries"]
    assert entry["details"] == {"sensitive": True, "data_key_id": data_key}
    assert entry["actor"] == f"key:{served.key.split('_')[1]}"

    # Marked plain again: new runs are written in plain text; sealed ones still read.
    assert served.client.put("/v1/tenant/encryption",
                             json={"sensitive": False}).json()["sensitive"] is False
    later = wait_for(served.client, run_id_of(served.client, "echo", "plain now"))
    assert later["output"] == "echo: plain now" and "plain now" in raw_text(
        served.runtime.backends, backend_url)
    assert wait_for(served.client, run_id)["output"] == run["output"]


def test_a_server_with_another_key_file_answers_503_naming_the_key(
        serve: Callable[..., Served], tmp_path: Path) -> None:
    backend_url = f"sqlite:///{tmp_path / 'homeo.db'}"  # two servers on one file
    key_file, other = tmp_path / "k.keys", tmp_path / "other.keys"
    ring = keyfile.new_key_file(key_file)
    keyfile.new_key_file(other)
    first = serve(database_url=backend_url, encryption_key_file=key_file, with_worker=False)
    first.client.put("/v1/tenant/encryption", json={"sensitive": True})
    run_id = run_id_of(first.client, "echo", PLANT)
    second = serve(database_url=backend_url, encryption_key_file=other, with_worker=False)
    with second.client_for(first.key) as client:
        answer = client.get(f"/v1/runs/{run_id}")
    message = assert_error(answer, 503, "encryption_key_unavailable")
    assert ring.current in message and PLANT not in answer.text
