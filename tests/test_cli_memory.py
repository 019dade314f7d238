"""`homeo memory` (add, search, list, reembed) through typer's CliRunner in
this process, on a real SQLite file, with minilm in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from homeo.cli import app
from tests.support.clikit import no_homeo_env  # noqa: F401

pytestmark = pytest.mark.slow  # loads the embedding model


def homeo(data: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--data-dir", str(data)], catch_exceptions=False)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "pets.md").write_text("# Cats\nCats purr.\n\n# Trains\nLocomotives pull freight.")
    (folder / "sub" / "birds.txt").write_text("Ravens are clever birds.")
    (folder / "page.html").write_text("<h1>Walrus</h1><p>Walruses have tusks.</p>")
    (folder / "report.docx").write_bytes(b"PK\x03\x04")
    (folder / ".git" / "config").write_text("[core]")
    (folder / "empty.txt").write_text("  \n")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    return folder


def test_add_walks_folders_and_says_what_it_skipped_and_why(docs: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = homeo(data, "memory", "add", str(docs), "-c", "kb")
    assert done.exit_code == 0, done.output
    assert "kb: 3 added, 0 replaced, 4 skipped" in done.stdout
    assert f"skipped {docs / '.git' / 'config'}: hidden" in done.stdout
    assert f"skipped {docs / 'report.docx'}: not a readable type (.docx;" in done.stdout
    assert f"skipped {docs / 'empty.txt'}: no text in it" in done.stdout
    assert f"skipped {docs / 'latin1.txt'}: not UTF-8 text" in done.stdout
    again = homeo(data, "memory", "add", str(docs / "pets.md"), "-c", "kb")
    assert "0 added, 0 replaced, 1 skipped" in again.stdout and "unchanged" in again.stdout
    (docs / "pets.md").write_text("# Boats\nSails catch the wind.")
    changed = homeo(data, "memory", "add", str(docs / "pets.md"), "-c", "kb")
    assert "0 added, 1 replaced, 0 skipped" in changed.stdout
    listed = json.loads(homeo(data, "memory", "list", "--json").stdout)
    assert listed["collections"][0] | {"created_at": 0} == {
        "name": "kb", "documents": 3, "chunks": 3, "model": "all-MiniLM-L6-v2",
        "dimensions": 384, "created_at": 0}
    documents = homeo(data, "memory", "list", "-c", "kb").stdout
    assert str((docs / "pets.md").resolve()) in documents and documents.count("doc_") == 3


def test_search_prints_chunks_or_the_apis_json(docs: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    homeo(data, "memory", "add", str(docs), "-c", "kb")
    shown = homeo(data, "memory", "search", "clever bird", "-c", "kb", "-k", "1")
    assert shown.exit_code == 0 and "birds.txt  chunk 0" in shown.stdout
    assert "Ravens are clever birds." in shown.stdout
    answer = json.loads(homeo(data, "memory", "search", "freight", "-c", "kb", "--mode", "text",
                              "--json").stdout)
    [hit] = answer["results"]
    assert hit["text"] == "Trains\n\nLocomotives pull freight." and hit["position"] == 1
    assert hit["text_rank"] == 1 and hit["vector_rank"] is None
    missing = homeo(data, "memory", "search", "x", "-c", "nope")
    assert missing.exit_code == 1 and "no collection 'nope'" in missing.stderr
    reembedded = homeo(data, "memory", "reembed", "-c", "kb")
    assert "kb: 4 chunks embedded again with all-MiniLM-L6-v2" in reembedded.stdout


def test_bad_arguments_fail_with_one_line(tmp_path: Path) -> None:
    bad = homeo(tmp_path, "memory", "add", str(tmp_path), "-c", "no spaces")
    assert bad.exit_code == 2 and "collection name 'no spaces' is not allowed" in bad.stderr
    nothing = homeo(tmp_path, "memory", "add", str(tmp_path / "missing.md"), "-c", "kb")
    assert nothing.exit_code == 1 and "no such file or folder" in nothing.stdout
    empty = homeo(tmp_path, "memory", "list")
    assert "has no collections" in empty.stderr


def test_add_with_no_wait_queues_the_files_for_a_worker(docs: Path, tmp_path: Path) -> None:
    import asyncio

    from homeo.config import Settings
    from homeo.runtime import Runtime

    data = tmp_path / "data"
    queued = homeo(data, "memory", "add", str(docs), "-c", "kb", "--no-wait")
    assert queued.exit_code == 0, queued.output
    assert "kb: 3 queued for `homeo worker`, 4 skipped" in queued.stdout
    assert f"queued {docs / 'pets.md'}: ingestion ing_" in queued.stdout
    missing = homeo(data, "memory", "search", "ravens", "-c", "kb")
    assert missing.exit_code == 1 and "no collection 'kb'" in missing.stderr  # not yet indexed
    again = homeo(data, "memory", "add", str(docs), "-c", "kb", "--no-wait")
    assert again.stdout.count("ingestion ing_") == 3  # the same ingestions, no new ones
    runtime = Runtime.open(Settings(data_dir=data))
    try:
        assert asyncio.run(runtime.worker(1).run_until_idle()) == 3
    finally:
        asyncio.run(runtime.aclose())
    found = homeo(data, "memory", "search", "ravens", "-c", "kb", "--mode", "text")
    assert found.exit_code == 0 and "Ravens are clever birds." in found.stdout
    unchanged = homeo(data, "memory", "add", str(docs), "-c", "kb")
    assert "kb: 0 added, 0 replaced, 7 skipped" in unchanged.stdout


def test_a_file_changed_and_changed_back_gets_its_first_text_again(tmp_path: Path) -> None:
    data, note = tmp_path / "data", tmp_path / "note.txt"
    for text in ("Herons wait.", "Egrets wade.", "Herons wait."):
        note.write_text(text)
        done = homeo(data, "memory", "add", str(note), "-c", "kb")
        assert done.exit_code == 0 and "0 skipped" in done.stdout, done.output
    listed = json.loads(homeo(data, "memory", "list", "-c", "kb", "--json").stdout)
    [document] = listed["documents"]
    found = homeo(data, "memory", "search", "herons", "-c", "kb", "--mode", "text", "--json")
    assert [hit["document_id"] for hit in json.loads(found.stdout)["results"]] == [
        document["id"]]


def test_add_and_reembed_print_json(docs: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    birds, docx = docs / "sub" / "birds.txt", docs / "report.docx"
    queued = json.loads(homeo(data, "memory", "add", str(birds), "-c", "kb", "--no-wait",
                              "--json").stdout)
    [made] = queued["queued"]
    assert made["path"] == str(birds) and made["ingestion"].startswith("ing_")
    added = homeo(data, "memory", "add", str(birds), str(docx), "-c", "kb", "--json")
    assert added.exit_code == 0, added.output
    body = json.loads(added.stdout)
    assert (body["collection"], body["added"], body["replaced"], body["queued"]) == (
        "kb", [str(birds)], [], [])
    assert [skip["path"] for skip in body["skipped"]] == [str(docx)]
    reembedded = json.loads(homeo(data, "memory", "reembed", "-c", "kb", "--json").stdout)
    assert reembedded == {"collection": "kb", "chunks": 1, "model": "all-MiniLM-L6-v2",
                          "dimensions": 384}
    nothing = homeo(data, "memory", "add", str(docx), "-c", "kb", "--json")
    assert nothing.exit_code == 1 and json.loads(nothing.stdout)["added"] == []
    bad = homeo(data, "memory", "add", str(birds), "-c", "no spaces", "--json")
    assert bad.exit_code == 2
    assert "is not allowed" in json.loads(bad.stdout)["error"]
    gone = homeo(data, "memory", "reembed", "-c", "nope", "--json")
    assert gone.exit_code == 1 and "no collection 'nope'" in json.loads(gone.stdout)["error"]
