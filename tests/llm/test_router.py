"""The router against real fault-injecting OpenAI-compatible servers on 127.0.0.1.

Aliases are built the way homeo builds them (HOMEO_MODELS -> ModelCatalog);
the healthy fallback is a scripted model. Backoff sleeps are short and real;
the breakers' clock is a counter the tests move.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from homeo.config import Settings, SettingsError, load_settings
from homeo.llm.base import Message, ModelError
from homeo.llm.breaker import BreakerPolicy, CircuitBreaker
from homeo.llm.providers.openai_http import ModelHTTPError, OpenAIModel
from homeo.llm.resolve import ModelCatalog
from homeo.llm.router import AllDeploymentsFailed, Deployment, RetryPolicy, Router
from homeo.observe.metrics import Metrics

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from faultserver import FaultServer, Reply, error, fault_server  # noqa: E402

HELLO = [Message(role="user", content="hello")]
FALLBACK = "scripted:homeo_router_fallback:answer"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def primary() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def secondary() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture(autouse=True)
def fallback_module(monkeypatch: pytest.MonkeyPatch) -> list[list[Message]]:
    """A module the scripted fallback answers from; it records what it was asked."""
    import types

    asked: list[list[Message]] = []
    module = types.ModuleType("homeo_router_fallback")

    def answer(messages: list[Message], tools: Any) -> str:
        asked.append(messages)
        return "from the fallback"

    module.answer = answer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "homeo_router_fallback", module)
    return asked


def deployment(server: FaultServer, **extra: Any) -> dict[str, Any]:
    return {"model": "openai:m", "name": extra.pop("name", "primary"),
            "base_url": server.base_url, **extra}


def catalog(
    models: dict[str, Any], clock: Callable[[], float] | None = None, **settings: Any
) -> ModelCatalog:
    base = {"router_backoff_base_seconds": 0.01, "router_backoff_max_seconds": 1.0,
            "router_attempt_timeout_seconds": 5.0}
    return ModelCatalog(
        Settings(models=models, **{**base, **settings}),
        clock=clock or Clock(),
        rng=random.Random(7),
    )


def ask(models: ModelCatalog, alias: str = "default", times: int = 1) -> list[Any]:
    """Call the alias `times` times; each result is the response or the error raised."""

    async def run() -> list[Any]:
        results: list[Any] = []
        try:
            for _ in range(times):
                try:
                    results.append(await models.get(alias).request(HELLO))
                except ModelError as failure:
                    results.append(failure)
        finally:
            await models.aclose()
        return results

    return asyncio.run(run())


def breaker_state(models: ModelCatalog, name: str) -> str:
    return dict(models.breaker_states())[name]


def test_retryable_failures_are_retried_then_answered(primary: FaultServer) -> None:
    primary.script = [error(500, "upstream exploded"), Reply(body="{not json"),
                      error(503, "busy")]
    [response] = ask(catalog({"default": [deployment(primary)]}, router_retries=3))

    assert response.message.content == "ok"
    assert len(primary.received) == 4


def test_retries_stop_at_the_limit_with_every_reason(primary: FaultServer) -> None:
    primary.default = error(500, "upstream exploded")
    [failure] = ask(catalog({"default": [deployment(primary)]}, router_retries=2))

    assert isinstance(failure, AllDeploymentsFailed)
    assert failure.retryable
    assert "every deployment of model 'default' failed" in str(failure)
    assert "upstream exploded" in str(failure)
    assert len(primary.received) == 3  # one try and two retries


def test_non_retryable_error_fails_fast_with_the_providers_message(
    primary: FaultServer, fallback_module: list[list[Message]]
) -> None:
    primary.script = [error(400, "max_tokens is too large")]
    models = catalog({"default": [deployment(primary), {"model": FALLBACK}]})
    [failure] = ask(models)

    assert isinstance(failure, ModelHTTPError)
    assert not failure.retryable
    assert "max_tokens is too large" in str(failure)
    assert len(primary.received) == 1
    assert fallback_module == []  # no fallback for a request every provider would refuse


def test_retry_after_is_honoured(primary: FaultServer) -> None:
    primary.script = [error(429, "slow down", **{"Retry-After": "0.3"})]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    model = OpenAIModel("m", base_url=primary.base_url)
    router = Router(
        "default",
        [Deployment("primary", model, CircuitBreaker(BreakerPolicy()))],
        RetryPolicy(retries=1, backoff_base=0.01, backoff_max=1.0),
        rng=random.Random(1),
        sleep=sleep,
    )

    async def run() -> Any:
        try:
            return await router.request(HELLO)
        finally:
            await model.aclose()

    assert asyncio.run(run()).message.content == "ok"
    assert waits == [0.3]  # the backoff alone would have waited at most 0.01 s


def test_a_long_retry_after_moves_to_the_next_deployment(
    primary: FaultServer, secondary: FaultServer
) -> None:
    primary.script = [error(429, "rate limited", **{"Retry-After": "30"})]
    secondary.default = Reply(body={
        "choices": [{"message": {"role": "assistant", "content": "from secondary"}}]})
    models = catalog({"default": [deployment(primary),
                                  deployment(secondary, name="secondary", weight=0)]})
    [response] = ask(models)

    assert response.message.content == "from secondary"
    assert len(primary.received) == 1  # not retried: it asked for 30 s


def test_a_hang_times_out_and_falls_back(
    primary: FaultServer, fallback_module: list[list[Message]]
) -> None:
    primary.default = Reply(body={}, delay=3.0)
    models = catalog({"default": [deployment(primary, timeout_seconds=0.2),
                                  {"model": FALLBACK, "weight": 0}]}, router_retries=1)
    [response] = ask(models)

    assert response.message.content == "from the fallback"
    assert len(primary.received) == 2
    assert len(fallback_module) == 1


def test_the_whole_call_has_a_deadline(primary: FaultServer, secondary: FaultServer) -> None:
    primary.default = secondary.default = Reply(body={}, delay=3.0)
    models = catalog(
        {"default": [deployment(primary), deployment(secondary, name="secondary", weight=0)]},
        router_timeout_seconds=0.4,
        router_retries=0,
        clock=time.monotonic,  # the deadline needs real time here
    )
    [failure] = ask(models)

    assert isinstance(failure, AllDeploymentsFailed)
    assert failure.timed_out
    assert "gave no answer within 0.4s" in str(failure)
    assert len(primary.received) == 1


def test_breaker_opens_half_opens_and_closes(
    primary: FaultServer, fallback_module: list[list[Message]]
) -> None:
    clock = Clock()
    models = catalog(
        {"default": [deployment(primary), {"model": FALLBACK, "weight": 0}]},
        clock,
        router_retries=0,
        breaker_min_calls=2,
        breaker_failure_rate=0.5,
        breaker_cooldown_seconds=30,
    )
    primary.default = error(502, "bad gateway")
    metrics = Metrics()
    metrics.watch_breakers(models.breaker_states)

    async def scenario() -> None:
        router = models.get("default")
        for _ in range(2):  # two failures in two calls: the breaker opens
            assert (await router.request(HELLO)).message.content == "from the fallback"
        assert breaker_state(models, "primary") == "open"
        assert 'homeo_llm_breaker_state{deployment="primary",state="open"} 1.0' in (
            metrics.render().decode()
        )
        await router.request(HELLO)  # open: the primary is not even called
        assert len(primary.received) == 2

        clock.now += 30  # cool-down over: one probe, which fails -> open again
        await router.request(HELLO)
        assert len(primary.received) == 3
        assert breaker_state(models, "primary") == "open"

        clock.now += 30
        primary.default = Reply(body={
            "choices": [{"message": {"role": "assistant", "content": "primary is back"}}]})
        assert breaker_state(models, "primary") == "half_open"
        assert (await router.request(HELLO)).message.content == "primary is back"
        assert breaker_state(models, "primary") == "closed"
        assert (await router.request(HELLO)).message.content == "primary is back"
        await models.aclose()

    asyncio.run(scenario())
    assert len(fallback_module) == 4


def test_every_deployment_open_is_a_clear_retryable_error(primary: FaultServer) -> None:
    primary.default = error(500, "down")
    models = catalog({"default": [deployment(primary)]}, router_retries=0, breaker_min_calls=1)
    first, second = ask(models, times=2)

    assert "down" in str(first)
    assert isinstance(second, AllDeploymentsFailed) and second.retryable
    assert "primary: circuit open (retry in 30s)" in str(second)
    assert len(primary.received) == 1


def test_weights_share_first_tries(primary: FaultServer, secondary: FaultServer) -> None:
    models = catalog({"default": [deployment(primary, weight=3),
                                  deployment(secondary, name="secondary", weight=1)]})
    ask(models, times=200)

    assert len(primary.received) + len(secondary.received) == 200
    assert 120 < len(primary.received) < 180  # about three in four


def test_deployments_are_shared_between_aliases(primary: FaultServer) -> None:
    models = catalog({"default": [deployment(primary)], "fast": [deployment(primary, weight=2)]})
    shared = models.deployments()

    assert [(d.key, aliases) for d, _, aliases in shared] == [("primary", ["default", "fast"])]
    assert models.get("default").deployments[0].breaker is models.get("fast").deployments[0].breaker
    asyncio.run(models.aclose())


@pytest.mark.parametrize(
    ("models", "problem"),
    [
        ('{"default": []}', "alias 'default' has no deployments"),
        ('{"default": [{"model": "gpt-4"}]}', "must be local, local:/path.gguf, minilm, openai:MODEL"),
        ('{"default": [{"model": "local", "weight": 0}]}', "at least one deployment needs"),
        ('{"local": [{"model": "openai:x"}]}', "(and not 'local' or 'minilm')"),
        ('{"a b": [{"model": "openai:x"}]}', "use letters, digits"),
        ('{"a": [{"model": "openai:x", "base_url": "http://one"}],'
         ' "b": [{"model": "openai:x", "base_url": "http://two"}]}', "give them different `name`s"),
        ('{"a": [{"model": "openai:x", "wieght": 2}]}',
         "Extra inputs are not permitted (at a.0.wieght=2)"),
        ('[1]', "valid dictionary"),
    ],
)
def test_bad_model_config_is_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, models: str, problem: str
) -> None:
    monkeypatch.setenv("HOMEO_MODELS", models)

    with pytest.raises(SettingsError, match="HOMEO_MODELS") as caught:
        load_settings()

    assert problem in str(caught.value)


def test_model_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HOMEO_MODELS",
        '{"default": [{"model": "openai:gpt-4o-mini", "weight": 1},'
        ' {"model": "local", "weight": 0}]}',
    )
    default = load_settings().models["default"]

    assert [(d.model, d.weight) for d in default] == [("openai:gpt-4o-mini", 1), ("local", 0)]


def test_an_agent_runs_on_an_alias(primary: FaultServer, tmp_path: Path) -> None:
    """The router is a Model: the engine's tool-calling loop runs on it unchanged,
    through a provider fault, and the router's errors become the engine's."""
    from homeo.backends import open_backends
    from homeo.engine.errors import RetryableError, RunFailed
    from homeo.engine.react import tool_calling_graph
    from homeo.engine.runner import execute
    from homeo.examples.tools import calculate
    from homeo.store.models import NewRun
    from homeo.tools.registry import from_function

    call = {"id": "call_1", "type": "function",
            "function": {"name": "calculate", "arguments": '{"expression": "6*7"}'}}
    primary.script = [
        error(503, "warming up"),
        Reply(body={"choices": [{"message": {"role": "assistant", "tool_calls": [call]}}]}),
        Reply(body={"choices": [{"message": {"role": "assistant", "content": "It is 42."}}]}),
        error(401, "Incorrect API key provided"),
    ]
    primary.default = error(500, "down")
    models = catalog({"default": [deployment(primary)]}, router_retries=1)
    backends = open_backends(f"sqlite:///{tmp_path / 'runs.db'}")

    async def run(text: str) -> Any:
        record, _ = backends.store.create_run(NewRun(tenant_id="t", agent="calc", input=text))
        record = backends.store.transition_run("t", record.id, "running", allowed_from={"queued"})
        graph = tool_calling_graph(models.get("default"), [from_function(calculate)],
                                   max_steps=3, max_tool_errors=1)
        return await execute(backends.store, record, graph)

    async def scenario() -> None:
        try:
            assert await run("what is 6*7?") == "It is 42."
            with pytest.raises(RunFailed, match="Incorrect API key provided"):
                await run("again")
            with pytest.raises(RetryableError, match="every deployment of model 'default'"):
                await run("once more")
        finally:
            await models.aclose()

    try:
        asyncio.run(scenario())
    finally:
        backends.close()
    assert len(primary.received) == 6


def test_an_unreachable_provider_falls_back_to_the_local_model() -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    models = catalog({"default": [
        {"model": "openai:m", "name": "remote", "base_url": f"http://127.0.0.1:{port}/v1"},
        # A busy machine can take far longer than the catalog's 5 s attempt limit
        # to load and run the local model: this test is about falling back, not speed.
        {"model": "local", "weight": 0, "timeout_seconds": 600},
    ]}, router_retries=0, router_timeout_seconds=900)
    [response] = ask(models)

    assert response.message.content.strip()
    assert response.usage.output_tokens > 0
