"""The README's Python SDK examples, run against a live server whose
`calculator` and `careful-calc` are scripted stand-ins for the shipped ones
(same names, tools and approval; no local model)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.api.conftest import Served

README = (Path(__file__).parent.parent.parent / "README.md").read_text()
STAND_INS = {
    "calculator": "model: scripted:scriptkit:calc_model\n"
                  "tools: [homeo.examples.tools:calculate]\n",
    "careful-calc": "model: scripted:scriptkit:calc_model\n"
                    "tools: [homeo.examples.tools:calculate]\n"
                    "approval: {tools: [calculate]}\n",
}


def examples() -> list[str]:
    section = README.split("\n## Python SDK\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run_example(code: str, served: Served) -> str:
    code = code.replace('"http://127.0.0.1:8080"', repr(served.url))
    code = code.replace('"hk_..."', repr(served.key))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    # The in-process server's log lines land on the same stdout: leave them out.
    return "\n".join(line for line in printed.getvalue().splitlines()
                     if not re.match(r"\d{4}-\d\d-\d\d \d\d:", line))


@pytest.fixture
def served(serve) -> Served:  # noqa: ANN001 (the fixture)
    served = serve()
    folder = Path(served.runtime.settings.agents_dir)
    for name, body in STAND_INS.items():
        (folder / f"{name}.yaml").write_text(f"name: {name}\n{body}")
    served.runtime.publish_agents()
    return served


def test_there_are_three_examples() -> None:
    assert len(examples()) == 3


def test_the_first_example_runs_and_follows_a_run(served: Served) -> None:
    printed = run_example(examples()[0], served)
    assert "step 1 calculate succeeded" in printed and "ended succeeded" in printed
    assert "6*7 = 42" in printed
    assert "no run 'run_0000000000000000000000'" in printed


def test_the_approval_example_approves_the_waiting_run(served: Served) -> None:
    printed = run_example(examples()[1], served).splitlines()
    assert printed[0] == "waiting {'expression': '2+2'}"
    assert printed[1] == "2+2 = 4"


@pytest.mark.slow  # loads the embedding model
def test_the_async_example_adds_searches_and_makes_a_key(served: Served) -> None:
    printed = run_example(examples()[2], served).splitlines()
    assert printed[0] == "['The locomotive pulls freight.']"
    assert printed[1].startswith("hk_")
