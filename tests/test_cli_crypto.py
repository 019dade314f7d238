"""`homeo crypto`, run as a user would: make a key file, mark a tenant
sensitive, run an agent for it, check the raw database, rotate, and read the
run back; without the key file, a clear refusal naming the key."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.support.clikit import homeo as cli
from tests.test_cli import agents_dir, homeo  # noqa: F401 (a fixture)

PLANT = "PLANTED-cli-secret-41d2"


def raw_database(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data.iterdir() if p.name.startswith("homeo.db"))


def test_a_sensitive_tenant_from_key_file_to_rotation(
        tmp_path: Path, agents_dir: Path) -> None:  # noqa: F811 (the fixture)
    data, key = tmp_path / "data", tmp_path / "secrets" / "encryption.keys"
    made = homeo("crypto", "keygen", str(key))
    assert made.returncode == 0, made.stderr
    first_kek = re.search(r"key-encryption key (kek-[0-9a-f]{16})", made.stderr).group(1)
    assert homeo("crypto", "keygen", str(key)).returncode == 2  # never overwritten
    env = {"HOMEO_ENCRYPTION_KEY_FILE": str(key), "HOMEO_DEFAULT_TENANT": "acme"}
    common = ["--data-dir", str(data)]

    marked = homeo("crypto", "tenant", "acme", "--sensitive", *common, **env)
    assert marked.returncode == 0, marked.stderr
    assert re.match(r"acme: sensitive \(encrypted at rest\), data key dk_\w+", marked.stdout)
    ran = homeo("run", "echo", PLANT, "--agents-dir", str(agents_dir), *common, **env)
    assert ran.returncode == 0, ran.stderr
    run_id = re.search(r"(run_[0-9a-f]+)", ran.stdout + ran.stderr).group(1)
    assert PLANT.encode() not in raw_database(data)

    status = homeo("crypto", "status", *common, **env)
    assert status.returncode == 0, status.stderr
    assert f"{first_kek} (current): wraps 1 data keys" in status.stdout
    assert "sensitive tenants: acme" in status.stdout

    rotated = homeo("crypto", "rotate", *common, **env)
    assert rotated.returncode == 0, rotated.stderr
    assert re.match(rf"rotated to kek-\w+: 1 data keys re-wrapped; retired keys dropped from"
                    rf" {re.escape(str(key))}: {first_kek}", rotated.stdout)
    shown = homeo("runs", "show", run_id, *common, **env)
    assert shown.returncode == 0 and PLANT in shown.stdout, shown.stderr

    without = homeo("runs", "show", run_id, *common, HOMEO_DEFAULT_TENANT="acme")
    assert without.returncode == 2
    assert "HOMEO_ENCRYPTION_KEY_FILE" in without.stderr and "dk_" in without.stderr
    assert PLANT not in without.stdout + without.stderr


def test_commands_that_need_the_key_file_say_so(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    for command in (["crypto", "rotate"], ["crypto", "status"],
                    ["crypto", "tenant", "acme", "--sensitive"]):
        refused = homeo(*command, *data)
        assert refused.returncode == 2 and "HOMEO_ENCRYPTION_KEY_FILE" in refused.stderr
    key = tmp_path / "k.keys"
    assert homeo("crypto", "keygen", str(key)).returncode == 0
    key.chmod(0o640)
    loose = homeo("crypto", "status", *data, HOMEO_ENCRYPTION_KEY_FILE=str(key))
    assert loose.returncode == 2 and "chmod 600" in loose.stderr


def test_crypto_commands_print_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each crypto command's --json: one object with what it did; an error is
    an object too, with the exit code the text form has. In this process."""
    for name in [name for name in os.environ if name.startswith("HOMEO_")]:
        monkeypatch.delenv(name)
    data, key = ["--data-dir", str(tmp_path / "data")], tmp_path / "k.keys"
    refused = cli("crypto", "status", *data, "--json")
    assert refused.exit_code == 2
    assert json.loads(refused.stdout) == {"error": refused.stderr.strip().removeprefix(
        "homeo: "), "exit_code": 2}
    made = json.loads(cli("crypto", "keygen", str(key), "--json").stdout)
    assert made == {"key_file": str(key), "kek": made["kek"]}
    assert made["kek"].startswith("kek-")
    again = cli("crypto", "keygen", str(key), "--json")
    assert again.exit_code == 2 and "never overwrites" in json.loads(again.stdout)["error"]

    monkeypatch.setenv("HOMEO_ENCRYPTION_KEY_FILE", str(key))
    marked = json.loads(cli("crypto", "tenant", "acme", "--sensitive", *data, "--json").stdout)
    assert marked["tenant"] == "acme" and marked["sensitive"] is True
    assert marked["data_key"].startswith("dk_")
    status = json.loads(cli("crypto", "status", *data, "--json").stdout)
    assert status == {"key_file": str(key), "sensitive_tenants": ["acme"],
                      "keys": [{"kek": made["kek"], "role": "current", "data_keys": 1}]}
    rotated = json.loads(cli("crypto", "rotate", *data, "--json").stdout)
    assert rotated["rewrapped"] == 1 and rotated["dropped"] == [made["kek"]]
    assert rotated["kek"] != made["kek"] and rotated["key_file"] == str(key)
