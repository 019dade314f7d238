"""`AsyncHomeo` against a live server: the same calls as `Homeo`, awaited."""

from __future__ import annotations

import asyncio

import pytest

from homeo.client import AsyncHomeo, Conflict, EndEvent, NotFound, StepEvent, WaitingEvent
from tests.api.conftest import Served

DEADLINE = 60.0


def test_runs_over_the_async_client(served: Served) -> None:
    async def scenario() -> None:
        async with AsyncHomeo(served.url, served.key) as homeo:
            made = [(await homeo.runs.submit("calc", f"{n}*2")).id for n in range(3)]
            done = await asyncio.gather(*(homeo.runs.wait(run_id, DEADLINE) for run_id in made))
            assert [run.output for run in done] == ["0*2 = 0", "1*2 = 2", "2*2 = 4"]
            assert [run.id async for run in homeo.runs.list(page_size=2)] == made[::-1]
            assert (await homeo.runs.step(made[0], 1)).step.name == "calculate"
            fork = await homeo.runs.fork(made[0], 1)
            assert (await homeo.runs.wait(fork.id, DEADLINE)).status == "succeeded"

            events = [event async for event in homeo.runs.events(made[1])]
            assert isinstance(events[-1], EndEvent) and any(
                isinstance(event, StepEvent) for event in events)

            paid = (await homeo.runs.submit("payer", "12")).id
            waiting = None
            async for event in homeo.runs.events(paid):
                if isinstance(event, WaitingEvent):
                    waiting = event
                    break
            assert waiting is not None and waiting.waiting_for["kind"] == "approval"
            await homeo.runs.approve(paid)
            assert "wired 12 EUR" in (await homeo.runs.wait(paid, DEADLINE)).output
            with pytest.raises(Conflict):
                await homeo.runs.cancel(paid)
            with pytest.raises(NotFound):
                await homeo.runs.get("run_" + "0" * 22)

            assert "echo" in {agent.name for agent in await homeo.agents.list()}
            key = await homeo.keys.create("async")
            assert (await homeo.keys.revoke(key.id)).active is False

    asyncio.run(scenario())
