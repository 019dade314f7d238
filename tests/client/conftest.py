"""A real homeo app on 127.0.0.1 (tests/api/conftest.py's `Servers`) with the
scripted agents of tests/support, plus waitkit's agents that wait for a
person, and SDK clients on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from homeo.client import Homeo
from tests.api.conftest import Served, serve  # noqa: F401 (a fixture, used by name)

WAITING_AGENTS = {
    "payer": "model: scripted:waitkit:payer_model\ntools: [waitkit:wire_money]\n",
    "greeter": "model: scripted:waitkit:greeter_model\ntools: [waitkit:greet_person]\n",
}


def with_waiting_agents(served: Served) -> Served:
    folder = Path(served.runtime.settings.agents_dir)
    for name, body in WAITING_AGENTS.items():
        (folder / f"{name}.yaml").write_text(f"name: {name}\n{body}")
    served.runtime.publish_agents()
    return served


@pytest.fixture
def served(serve: Callable[..., Served], tmp_path: Path,  # noqa: F811
           monkeypatch: pytest.MonkeyPatch) -> Served:
    import waitkit

    monkeypatch.setenv(waitkit.LOG_ENV, str(tmp_path / "effects.log"))
    return with_waiting_agents(serve())


@pytest.fixture
def homeo(served: Served) -> Iterator[Homeo]:
    with Homeo(served.url, served.key) as client:
        yield client
