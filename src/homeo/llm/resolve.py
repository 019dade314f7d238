"""Turn an agent's `model:` string into a `Model`.

    local                    the shipped SmolLM2 GGUF (or HOMEO_LOCAL_MODEL_PATH), in-process
    local:/path/model.gguf   any GGUF file, in-process
    openai:MODEL             an OpenAI-compatible endpoint (HOMEO_OPENAI_BASE_URL, _API_KEY)
    scripted:module:function a ScriptedModel answering through `function(messages, tools)`

Models are cached per string, so every agent on `local` shares one loaded model.
A program may also `add` its own Model under a name of its choosing.
"""

from __future__ import annotations

import importlib
import threading

from homeo.config import Settings
from homeo.llm.base import Model, ModelError
from homeo.llm.providers.scripted import ScriptedModel


class UnknownModel(ModelError):
    """The model string names no provider homeo has."""


class ModelCatalog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()

    def add(self, name: str, model: Model) -> None:
        """Make `model` available to agents as `model: NAME` (for embedding homeo
        in a program that builds its own Model objects)."""
        with self._lock:
            self._models[name] = model

    def get(self, spec: str) -> Model:
        with self._lock:
            if spec not in self._models:
                self._models[spec] = self._create(spec)
            return self._models[spec]

    def _create(self, spec: str) -> Model:
        provider, _, rest = spec.partition(":")
        if provider == "local":
            try:
                from homeo.llm.providers.local import LocalModel
            except ImportError:
                raise UnknownModel(
                    "the local model needs the [local] extra: pip install 'homeo[local]'"
                ) from None
            path = rest or self.settings.local_model_path
            return LocalModel(path, n_ctx=self.settings.local_model_context)
        if provider == "openai" and rest:
            from homeo.llm.providers.openai_http import OpenAIModel

            return OpenAIModel(
                rest,
                base_url=self.settings.openai_base_url,
                api_key=self.settings.openai_api_key or None,
            )
        if provider == "scripted" and rest:
            module_name, _, attribute = rest.partition(":")
            try:
                function = getattr(importlib.import_module(module_name), attribute)
            except (ImportError, AttributeError) as error:
                raise UnknownModel(f"model {spec!r}: cannot load {rest!r}: {error}") from None
            return ScriptedModel(function)
        raise UnknownModel(
            f"unknown model {spec!r}: use local, local:/path.gguf, openai:MODEL or"
            " scripted:module:function"
        )

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()
        self._models.clear()
