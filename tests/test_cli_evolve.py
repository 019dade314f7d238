"""`homeo eval run|compare` and `homeo agents versions` through typer's
CliRunner in this process, against a real SQLite file, with the scripted
calculator agent of tests/support/scriptkit.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path


from tests.support.clikit import homeo, no_homeo_env  # noqa: F401

SUPPORT = Path(__file__).parent / "support"
SUITE = """name: sums
cases:
  - {id: product, input: "6*7", expect: {contains: "= 42", tools_called: [calculate]}}
  - {id: wrong, input: "2+2", expect: {exact: "2+2 = 5"}}
"""


def test_evaluate_two_versions_and_compare_them(tmp_path: Path) -> None:
    sys.path.insert(0, str(SUPPORT))
    try:
        import scriptkit
    finally:
        sys.path.remove(str(SUPPORT))
    agents = scriptkit.write_agents(tmp_path / "agents", ["calc"])
    data, suite = tmp_path / "data", tmp_path / "sums.yaml"
    suite.write_text(SUITE)
    where = ("--data-dir", str(data))
    first = homeo("eval", "run", str(suite), "--agent", "calc", "--agents-dir", str(agents),
                  "--report", str(tmp_path / "first.json"), *where)
    assert first.exit_code == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert lines[1].split()[:4] == ["product", "succeeded", "1.00", "yes"]
    assert lines[2].split()[:4] == ["wrong", "succeeded", "0.00", "no"]
    report = json.loads((tmp_path / "first.json").read_text())
    v1 = report["agent_version"]
    assert (report["score"]["value"], report["pass_rate"]["value"]) == (0.5, 0.5)
    assert f"sums on calc@{v1}: score 0.50" in lines[-1]
    # A new definition is a new version; the old one can still be evaluated.
    yaml_file = agents / "calc.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("max_steps: 4", "max_steps: 1"))
    second = homeo("eval", "run", str(suite), "--agent", "calc", "--agents-dir", str(agents),
                   "--json", *where)
    assert second.exit_code == 0, second.stdout + second.stderr
    v2 = json.loads(second.stdout)["agent_version"]
    assert v2 != v1 and json.loads(second.stdout)["score"]["value"] == 0.0
    pinned = homeo("eval", "run", str(suite), "--agent", f"calc@{v1}", "--agents-dir",
                   str(agents), "--json", *where)
    assert json.loads(pinned.stdout)["score"]["value"] == 0.5
    compared = homeo("eval", "compare", "--agent", "calc", "--json", *where)
    table = json.loads(compared.stdout)
    assert [(row["version"], row["cases"], row["score"]["value"]) for row in table["versions"]] == [
        (v1, 4, 0.5), (v2, 2, 0.0)]
    assert table["case_scores"] == {"product": {v1: 1.0, v2: 0.0}, "wrong": {v1: 0.0, v2: 0.0}}
    text = homeo("eval", "compare", "--agent", "calc", *where).stdout.splitlines()
    assert text[1].split()[:2] == [v1, "4"] and text[2].split()[:2] == [v2, "2"]
    listed = json.loads(homeo("agents", "versions", "calc", "--json", *where).stdout)
    assert [(v["version"], v["parent"], v["current"], v["runs"], v["eval_cases"])
            for v in listed["versions"]] == [(v1, None, False, 4, 4), (v2, v1, True, 2, 2)]
    shown = homeo("agents", "versions", "calc", *where).stdout.splitlines()
    assert shown[2].startswith(f"{v2}*") and shown[1].split()[:2] == [v1, "4"]


def test_eval_run_says_what_is_wrong(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    agents = tmp_path / "agents"
    agents.mkdir()
    where = ("--data-dir", str(tmp_path / "data"), "--agents-dir", str(agents))
    unknown = homeo("eval", "run", str(suite), "--agent", "nobody", *where)
    assert unknown.exit_code == 2 and "unknown agent 'nobody'" in unknown.stderr
    missing = homeo("eval", "run", str(tmp_path / "none.yaml"), "--agent", "x", *where)
    assert missing.exit_code == 2 and "cannot read the suite" in missing.stderr
    none = homeo("agents", "versions", "nobody", "--data-dir", str(tmp_path / "data"))
    assert none.exit_code == 1 and "has no versions" in none.stderr
    compare = homeo("eval", "compare", "--agent", "nobody", "--data-dir", str(tmp_path / "data"))
    assert compare.exit_code == 1 and "run `homeo eval run SUITE --agent nobody`" in compare.stderr
