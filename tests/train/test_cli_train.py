"""`homeo train curate|lora` and `homeo models list|register|promote|rollback`
through typer's CliRunner, against a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from homeo.backends import open_backends
from homeo.llm.providers.local import default_model_path
from homeo.store.models import NewRun
from tests.support.clikit import homeo, no_homeo_env  # noqa: F401

pytest.importorskip("peft")


@pytest.mark.slow  # curate loads presidio's spaCy model; lora trains SmolLM2
def test_curate_train_register_promote_rollback(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'homeo.db'}"
    backends = open_backends(url)
    for question, answer in (("What colour is the sky?", "Blue, on a clear day."),
                             ("What colour is grass?", "Green."),
                             ("Write to bob@example.com for help?", "Yes, write to him.")):
        run, _ = backends.store.create_run(NewRun(tenant_id="acme", agent="helper",
                                                  input=question))
        backends.store.transition_run("acme", run.id, "succeeded", allowed_from={"queued"},
                                      output=answer)
    backends.close()
    where = ("--database-url", url)

    curated = homeo("train", "curate", "colours", "--agent", "helper", "--tenant", "acme",
                    "--json", *where)
    assert curated.exit_code == 0, curated.stdout + curated.stderr
    summary = json.loads(curated.stdout)
    assert (summary["version"], summary["train"], summary["validation"]) == (1, 2, 1)
    assert summary["provenance"]["texts_scrubbed"] == 1
    missing = homeo("train", "lora", "--data", "nothing", "-o", str(tmp_path / "x.gguf"),
                    "--tenant", "acme", *where)
    assert missing.exit_code == 1 and "homeo train curate" in missing.stderr

    base = homeo("models", "register", "smollm2", str(default_model_path()),
                 "--deployment", "smollm2", "--json", *where)
    assert base.exit_code == 0, base.stdout + base.stderr
    adapter = tmp_path / "colours.gguf"
    trained = homeo("train", "lora", "--data", "colours@1", "-o", str(adapter), "--steps", "1",
                    "--register", "smollm2-colours-1", "--parent", "smollm2",
                    "--deployment", "smollm2-colours", "--tenant", "acme", "--json", *where)
    assert trained.exit_code == 0, trained.stdout + trained.stderr
    report = json.loads(trained.stdout)
    assert report["steps"] == 1 and report["data"] == "colours@1" and adapter.is_file()
    assert report["registered"] == "smollm2-colours-1"

    monkeypatch.setenv("HOMEO_MODELS", json.dumps({"chat": [
        {"model": "local", "name": "smollm2"},
        {"model": "local", "name": "smollm2-colours", "lora": str(adapter)}]}))
    assert homeo("models", "promote", "smollm2", "--alias", "chat", *where).exit_code == 0
    promoted = homeo("models", "promote", "smollm2-colours-1", "--alias", "chat", "--json",
                     *where)
    assert promoted.exit_code == 0, promoted.stdout + promoted.stderr
    assert json.loads(promoted.stdout)["previous_model_id"] == "smollm2"
    listed = json.loads(homeo("models", "list", "--json", *where).stdout)
    assert listed["aliases"]["chat"]["model"] == "smollm2-colours-1"
    tuned = next(m for m in listed["models"] if m["id"] == "smollm2-colours-1")
    assert (tuned["kind"], tuned["parent"], tuned["dataset"], tuned["stage"]) == (
        "adapter", "smollm2", "colours@1", "champion")
    assert tuned["sha256"] == report["sha256"]
    rolled = homeo("models", "rollback", "--alias", "chat", *where)
    assert rolled.exit_code == 0 and "chat now serves smollm2" in rolled.stdout
    unknown = homeo("models", "promote", "smollm2", "--alias", "nope", *where)
    assert unknown.exit_code == 1 and "not in HOMEO_MODELS" in unknown.stderr


def test_lora_names_bad_data_before_training(tmp_path: Path) -> None:
    where = ("--database-url", f"sqlite:///{tmp_path / 'homeo.db'}")
    data = tmp_path / "chats.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    bad = homeo("train", "lora", "--data", str(data), "-o", str(tmp_path / "a.gguf"), *where)
    assert bad.exit_code == 1 and "line 1" in bad.stderr
    version = homeo("train", "lora", "--data", "set@two", "-o", str(tmp_path / "a.gguf"), *where)
    assert version.exit_code == 1 and "a version is a number" in version.stderr
    assert not (tmp_path / "a.gguf").exists()
