"""`homeo eval run|compare`, `homeo agents versions` and `homeo evolve` through typer's
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


EVOLVE_SUITE = """name: sums
cases:
  - {id: product, input: "6*7", expect: {contains: "= 42", tools_called: [calculate]}}
  - {id: sum, input: "2+3", expect: {contains: "= 5"}}
"""


def test_evolve_searches_prints_the_front_and_resumes(tmp_path: Path) -> None:
    sys.path.insert(0, str(SUPPORT))
    try:
        import scriptkit
    finally:
        sys.path.remove(str(SUPPORT))
    agents = scriptkit.write_agents(tmp_path / "agents", ["calc"])
    suite = tmp_path / "sums.yaml"
    suite.write_text(EVOLVE_SUITE)
    where = ("--data-dir", str(tmp_path / "data"), "--agents-dir", str(agents))
    search = ("evolve", "calc", "--suite", str(suite), "--generations", "2",
              "--population", "4", "--seed", "3", "--search-id", "calc-s1", *where)
    first = homeo(*search, "--json")
    assert first.exit_code == 0, first.stdout + first.stderr
    result = json.loads(first.stdout)
    assert (result["search_id"], result["agent"], result["suite"]) == ("calc-s1", "calc", "sums")
    assert result["generation"] == 1 and result["stopped"] is None
    assert 4 < result["evaluations"] <= 8
    front = result["front"]
    assert front and front[0]["fitness"]["score"] == 1.0  # the agent as it is solves both
    listed = json.loads(homeo("agents", "versions", "calc-evolve", "--json",
                              "--data-dir", str(tmp_path / "data")).stdout)
    versions = {v["version"] for v in listed["versions"]}
    assert len(versions) == result["evaluations"]
    assert {c["fitness"]["version"] for c in front} <= versions
    assert "generation 1" in first.stderr  # the progress bars go to stderr

    # A finished search resumes to the same front, with no new evaluation.
    again = homeo(*search, "--json")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert json.loads(again.stdout) == result
    assert "resuming after generation 1" in again.stderr
    after = json.loads(homeo("agents", "versions", "calc-evolve", "--json",
                             "--data-dir", str(tmp_path / "data")).stdout)
    assert len(after["versions"]) == len(versions)
    table = homeo(*search).stdout.splitlines()
    assert table[0].split() == ["VERSION", "SCORE", "TOKENS", "GEN", "GENOME"]
    best = front[0]
    assert table[1].split()[:3] == [best["fitness"]["version"], "1.00",
                                    str(best["fitness"]["tokens"])]
    assert "scripted:scriptkit:calc_model" in table[1] and "tools=calculate" in table[1]

    # A budget ends a search early; resuming it runs nothing more.
    budget = ("evolve", "calc", "--suite", str(suite), "--generations", "3", "--population",
              "4", "--budget-tokens", "1", "--search-id", "calc-s2", "--json", *where)
    stopped = json.loads(homeo(*budget).stdout)
    assert (stopped["stopped"], stopped["evaluations"], stopped["generation"]) == (
        "budget-tokens", 1, 0)
    again = homeo(*budget)
    assert json.loads(again.stdout) == stopped and "does not go on" in again.stderr
    assert table[-1].startswith("search calc-s1 of calc on sums: generation 1,")


def test_evolve_says_what_is_wrong(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(EVOLVE_SUITE)
    agents = tmp_path / "agents"
    agents.mkdir()
    where = ("--data-dir", str(tmp_path / "data"), "--agents-dir", str(agents))
    size = ("--generations", "2", "--population", "4")
    unknown = homeo("evolve", "nobody", "--suite", str(suite), *size, *where)
    assert unknown.exit_code == 2 and "unknown agent 'nobody'" in unknown.stderr
    missing = homeo("evolve", "x", "--suite", str(tmp_path / "none.yaml"), *size, *where)
    assert missing.exit_code == 2 and "cannot read the suite" in missing.stderr
    zero = homeo("evolve", "x", "--suite", str(suite), "--generations", "0",
                 "--population", "4", *where)
    assert zero.exit_code == 2 and "--generations" in zero.stderr
    one = homeo("evolve", "x", "--suite", str(suite), "--generations", "2",
                "--population", "1", *where)
    assert one.exit_code == 2 and "--population" in one.stderr
    seconds = homeo("evolve", "x", "--suite", str(suite), *size, "--budget-seconds", "0",
                    *where)
    assert seconds.exit_code == 2 and "--budget-seconds must be more than 0" in seconds.stderr
    (agents / "calc.yaml").write_text("name: calc\nmodel: openai:gpt-4o-mini\n")  # never called
    model = homeo("evolve", "calc", "--suite", str(suite), *size, "--model", "nosuch", *where)
    assert model.exit_code == 2 and "--model: unknown model 'nosuch'" in model.stderr
