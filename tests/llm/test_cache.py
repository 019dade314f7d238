"""The exact-match response cache, with the scripted model and a manual clock."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from homeo.config import Settings
from homeo.llm.base import Message, ModelResponse, ToolSpec, Usage
from homeo.llm.cache import CachedModel, ResponseCache
from homeo.llm.providers.scripted import ScriptedModel
from homeo.llm.resolve import ModelCatalog

HI = [Message(role="user", content="hi")]
_answers = itertools.count(1)


def numbered(messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
    """A new answer on every call, so a cached one is recognisable."""
    return ModelResponse(message=Message(role="assistant", content=f"answer {next(_answers)}"),
                         usage=Usage(input_tokens=3, output_tokens=2))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ask(model: Any, messages: list[Message] = HI, **options: Any) -> ModelResponse:
    return asyncio.run(model.request(messages, **options))


def test_a_repeated_request_is_answered_from_the_cache_at_no_cost() -> None:
    inner = ScriptedModel(numbered)
    cache = ResponseCache(60, 100, clock=Clock())
    model = CachedModel(inner, cache)
    first = ask(model, temperature=0)
    again = ask(model, temperature=0)
    assert again.message == first.message
    assert first.usage.total_tokens == 5 and again.usage == Usage()
    assert len(inner.requests) == 1 and (cache.hits, cache.misses) == (1, 1)


def test_any_difference_in_the_request_is_a_miss() -> None:
    inner = ScriptedModel(numbered)
    model = CachedModel(inner, ResponseCache(60, 100, clock=Clock()))
    ask(model)
    ask(model, temperature=0.5)
    ask(model, max_tokens=10)
    ask(model, json_schema={"type": "object"})
    ask(model, [Message(role="user", content="hi!")])
    assert len(inner.requests) == 5
    assert inner.schemas[3] == {"type": "object"}


def test_tenants_never_share_a_cached_answer() -> None:
    inner = ScriptedModel(numbered)
    cache = ResponseCache(60, 100, clock=Clock())
    # Each tenant asks through its own view of the one cache (the catalog makes them).
    views = {tenant: CachedModel(inner, cache, scope=tenant) for tenant in ("acme", "globex")}

    def ask_as(tenant: str) -> ModelResponse:
        return asyncio.run(views[tenant].request(HI))

    acme, globex, acme_again = ask_as("acme"), ask_as("globex"), ask_as("acme")
    assert acme.message != globex.message and acme_again.message == acme.message
    assert len(inner.requests) == 2


def test_entries_expire_and_the_least_recently_used_goes_first() -> None:
    clock = Clock()
    inner = ScriptedModel(numbered)
    model = CachedModel(inner, ResponseCache(10, 2, clock=clock))
    a, b, c = ([Message(role="user", content=text)] for text in "abc")
    ask(model, a)
    ask(model, b)
    ask(model, a)  # a hit: a is now the most recently used
    ask(model, c)  # evicts b
    assert len(inner.requests) == 3
    ask(model, a)
    assert len(inner.requests) == 3
    ask(model, b)
    assert len(inner.requests) == 4
    clock.now = 10.0
    ask(model, a)  # expired
    assert len(inner.requests) == 5


def test_the_catalog_caches_aliases_only_when_asked(tmp_path) -> None:
    spec = "scripted:tests.llm.test_cache:numbered"
    cached = ModelCatalog(Settings(data_dir=tmp_path, models={"fast": [{"model": spec}]},
                                   router_cache_seconds=60))
    assert ask(cached.get("fast")).message == ask(cached.get("fast")).message
    assert ask(cached.get(spec)).message != ask(cached.get(spec)).message  # not an alias
    # One cached view per tenant: the same question, another tenant, a new answer.
    acme = ask(cached.get("fast", "acme")).message
    assert ask(cached.get("fast", "acme")).message == acme
    assert ask(cached.get("fast", "globex")).message != acme
    plain = ModelCatalog(Settings(data_dir=tmp_path, models={"fast": [{"model": spec}]}))
    assert ask(plain.get("fast")).message != ask(plain.get("fast")).message
