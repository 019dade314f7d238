"""`homeo audit keygen` and `homeo audit verify`, run as a user would, against
a log that `homeo keys` wrote and an attacker then edited."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from tests.test_cli import homeo


def test_keygen_keys_and_verify_then_a_tampered_log_fails(tmp_path: Path) -> None:
    data, key = str(tmp_path / "data"), tmp_path / "secrets" / "audit.key"
    made = homeo("audit", "keygen", str(key))
    assert made.returncode == 0 and f"public key {key}.pub" in made.stderr, made.stderr
    assert homeo("audit", "keygen", str(key)).returncode == 2  # never overwritten
    env = {"HOMEO_AUDIT_KEY_FILE": str(key)}
    for tenant in ("acme", "acme", "globex"):
        assert homeo("keys", "create", "--tenant", tenant, "--data-dir", data,
                     **env).returncode == 0
    key_id = homeo("keys", "list", "--tenant", "acme", "--data-dir", data).stdout.split()[0]
    assert homeo("keys", "revoke", key_id, "--data-dir", data, **env).returncode == 0

    checked = homeo("audit", "verify", "--data-dir", data, **env)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"^acme: ok, 3 entries; head 3:[0-9a-f]{64}$", checked.stdout, re.M)
    assert re.search(r"^globex: ok, 1 entries", checked.stdout, re.M)
    # Only the public key is needed.
    alone = homeo("audit", "verify", "--public-key", f"{key}.pub", "--data-dir", data)
    assert alone.returncode == 0 and "acme: ok" in alone.stdout

    with sqlite3.connect(tmp_path / "data" / "homeo.db") as db:  # the attacker's edit
        db.execute("UPDATE audit_log SET kind = 'key.created' WHERE tenant_id = 'acme'"
                   " AND seq = 3")
    tampered = homeo("audit", "verify", "--data-dir", data, **env)
    assert tampered.returncode == 1
    assert ("acme: TAMPERED at entry 3: entry 3 was changed: its fields do not match its hash"
            " (2 entries before it verify)") in tampered.stdout
    assert "globex: ok" in tampered.stdout
    as_json = homeo("audit", "verify", "--json", "--data-dir", data, **env)
    assert as_json.returncode == 1
    verdicts = {v["tenant"]: v for v in json.loads(as_json.stdout)["tenants"]}
    assert verdicts["acme"]["ok"] is False and verdicts["acme"]["first_bad"] == 3
    assert "its fields do not match its hash" in verdicts["acme"]["problem"]
    assert verdicts["globex"]["ok"] is True and verdicts["globex"]["head"]["seq"] == 1


def test_a_signing_key_inside_the_data_dir_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "data" / "audit.key"
    assert homeo("audit", "keygen", str(key)).returncode == 0
    refused = homeo("keys", "create", "--data-dir", str(tmp_path / "data"),
                    HOMEO_AUDIT_KEY_FILE=str(key))
    assert refused.returncode == 2 and "is inside the data dir" in refused.stderr
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    broken = homeo("keys", "create", "--data-dir", str(tmp_path / "data"),
                   HOMEO_AUDIT_KEY_FILE=str(garbage))
    assert broken.returncode == 2 and "homeo audit keygen PATH" in broken.stderr


def test_keygen_json_names_both_keys_and_its_refusal(tmp_path: Path) -> None:
    from tests.support.clikit import homeo as cli

    key = tmp_path / "audit.key"
    made = cli("audit", "keygen", str(key), "--json")
    assert made.exit_code == 0
    assert json.loads(made.stdout) == {"private_key": str(key), "public_key": f"{key}.pub"}
    assert key.exists() and Path(f"{key}.pub").exists()
    again = cli("audit", "keygen", str(key), "--json")
    assert again.exit_code == 2
    refusal = json.loads(again.stdout)
    assert refusal["exit_code"] == 2 and "never overwrites" in refusal["error"]
