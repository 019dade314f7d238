"""The OpenAI chat API, served by homeo: `/v1/chat/completions` and `/v1/models`.

`model` names an alias from HOMEO_MODELS, so every call goes through the
router (retries, breakers, fallbacks). Only aliases are served: a provider
spec such as `scripted:module:function` would let a caller import code.
The caller's API key names its tenant (the `openai` client sends it as
`Authorization: Bearer`). The tenant's token budget is checked before each
call (429 when it is used up) and what the call used is recorded for it, so
the budget counts these calls as well as the tenant's runs.

`response_format` (`json_schema` or `json_object`) makes the answer JSON that
is checked against the schema, with one repair attempt (homeo.llm.structured).
A schema homeo will not run (remote `$ref`, reference loops, too deep, a
pattern RE2 cannot run; homeo.llm.schema_guard) is a 400 before any call.
`tool_choice` ("auto", "none", "required" or one named function) and `stop`
go to the model, which honours them (the local model through its grammar).

`stream=true` sends OpenAI chunks as the router's stream yields them. The
endpoint waits for the first event before answering, so a call that fails
before any token (every deployment down, a refused request) gets the same
HTTP error as without streaming; a failure after that ends the stream with an
SSE error event, which the `openai` client raises as `APIError`. With
`response_format` the answer must be checked whole, so it is streamed only
once it has been validated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from homeo.api.deps import Caller, caller, requires, tenant
from homeo.api.errors import error_response
from homeo.api.safety import note_screening
from homeo.engine.budgets import BudgetExceeded, TenantBudgets
from homeo.llm.base import (
    Message,
    ModelError,
    ModelResponse,
    NamedTool,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Unsupported,
    events_of,
    options_given,
    tool_choice_problem,
)
from homeo.llm.providers.openai_http import ModelHTTPError
from homeo.llm.resolve import Capability, ModelCatalog
from homeo.llm.router import AllDeploymentsFailed
from homeo.llm.structured import InvalidSchema, request_structured
from homeo.safety.guards import GuardUnavailable
from homeo.safety.policy import SafetyPolicy
from homeo.safety.screen import SafetyGuards
from homeo.safety.scrub import scrub
from homeo.safety.vault import unmask, unmask_value

T = TypeVar("T")
# How often a non-streaming call checks that its client is still there.
DISCONNECT_POLL_SECONDS = 0.25

router = APIRouter(prefix="/v1", tags=["openai"])


async def models(request: Request) -> ModelCatalog:
    return request.app.state.models


Models = Annotated[ModelCatalog, Depends(models)]
Tenant = Annotated[str, Depends(tenant)]
Found = Annotated[Caller, Depends(caller)]

# Upstream statuses that mean "this request is wrong", as opposed to "homeo's
# provider setup is wrong" (401, 403), which is a 502 for our caller.
_CALLER_FAULTS = {400, 404, 413, 422}


class _Function(BaseModel):
    name: str
    arguments: str = "{}"


class _WireToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: _Function


class _ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_ContentPart] | None = None
    name: str | None = None
    tool_calls: list[_WireToolCall] | None = None
    tool_call_id: str | None = None


class _FunctionSpec(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object",
                                                                "properties": {}})


class _Tool(BaseModel):
    type: Literal["function"]
    function: _FunctionSpec


class _JsonSchema(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field("answer", max_length=64)
    # `schema` would shadow a BaseModel attribute, hence the alias.
    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")


class _ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None

    def schema_wanted(self) -> dict[str, Any] | None:
        if self.type == "json_schema":
            return self.json_schema.json_schema if self.json_schema else {}
        return {"type": "object"} if self.type == "json_object" else None


class _ChosenFunction(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class _NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: _ChosenFunction


class _StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields homeo acts on; other OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[_Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | _NamedToolChoice | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    n: Literal[1] = 1
    stream: bool = False
    stream_options: _StreamOptions | None = None
    response_format: _ResponseFormat | None = None
    # OpenAI's limit: up to 4 sequences.
    stop: str | list[str] | None = Field(None, max_length=4)

    def choice(self) -> ToolChoice | None:
        """`tool_choice` for the Model: None, "auto", "required" or a NamedTool."""
        if isinstance(self.tool_choice, _NamedToolChoice):
            return NamedTool(self.tool_choice.function.name)
        return None if self.tool_choice in (None, "none") else self.tool_choice

    def stop_sequences(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


class ChatError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def error(request: Request, status: int, kind: str, message: str) -> JSONResponse:
    return error_response(request, status, message, kind=kind)


@router.get("/models", dependencies=[requires("viewer")])
async def list_models(catalog: Models) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": alias, "object": "model", "created": 0, "owned_by": "homeo"}
            for alias in catalog.aliases()
        ],
    }


@router.post("/chat/completions", response_model=None, dependencies=[requires("member")])
async def chat_completions(
    body: ChatRequest, request: Request, catalog: Models, found: Found
) -> JSONResponse | StreamingResponse:
    tenant_id = found.tenant_id
    try:
        messages = [_message(m) for m in body.messages]
    except ChatError as problem:
        return error(request, problem.status, problem.kind, str(problem))
    refused = (unknown_model(request, catalog, body.model)
               or unable(request, catalog, body.model, "chat")
               or await over_budget(request, tenant_id))
    if refused is not None:
        return refused
    offered = [] if body.tool_choice == "none" else [
        ToolSpec(name=t.function.name, description=t.function.description,
                 parameters=t.function.parameters)
        for t in body.tools or []
    ]
    guards: SafetyGuards = request.app.state.safety
    policy = guards.policy(tenant_id)
    try:
        messages, blocked, vault = await _screen_input(request, guards, policy, found,
                                                       messages)
    except GuardUnavailable as failure:
        return error(request, 503, "service_unavailable",
                     f"the safety policy needs a guard that cannot run: {failure}")
    if blocked is not None:
        return error(request, 422, "input_blocked", f"the input was refused by the safety"
                     f" policy: {blocked}; remove what it names and send it again")
    # Guarded answers are checked whole before any of it is sent, so a stream
    # waits too; so are answers whose placeholders go back (reversible rules).
    guard_output = bool(policy.rules("output")) or bool(vault)
    problem = tool_choice_problem(body.choice(), offered)
    if problem is not None:
        return error(request, 400, "bad_request", problem)
    options = options_given(tool_choice=body.choice(), stop=body.stop_sequences())
    schema = body.response_format.schema_wanted() if body.response_format else None
    model = catalog.get(body.model, tenant_id)  # answers cached for this tenant only
    max_tokens = body.max_completion_tokens or body.max_tokens
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    try:
        if body.stream and schema is None and not guard_output:
            events = model.stream(messages, offered, max_tokens=max_tokens,
                                  temperature=body.temperature, **options)
            first = await _first(events)
            chunks = _chunks(request, tenant_id, completion_id, created, body.model, first,
                             events,
                             include_usage)
            return StreamingResponse(chunks, media_type="text/event-stream")
        if schema is None:
            call = model.request(
                messages, offered, max_tokens=max_tokens, temperature=body.temperature,
                **options,
            )
        else:
            call = request_structured(
                model, messages, schema, offered, max_tokens=max_tokens,
                temperature=body.temperature, **options,
            )
        response = await _unless_client_leaves(request, call)
    except ClientGone:
        return Response(status_code=499)  # nobody is there to read it
    except InvalidSchema as failure:
        return error(request, 400, "bad_request", f"response_format: {failure}")
    except ModelError as failure:
        status, kind = status_of(failure)
        return error(request, status, kind, str(failure))
    if vault:
        response = _restored(response, vault)
    if policy.rules("output") and response.message.content:
        try:
            screening = await asyncio.to_thread(guards.check, policy, "output",
                                                response.message.content)
        except GuardUnavailable as failure:
            return error(request, 503, "service_unavailable",
                         f"the safety policy needs a guard that cannot run: {failure}")
        if screening.action is not None:
            await note_screening(request, tenant_id, found.principal, "chat",
                                 screening.to_json())
        if screening.action == "block":
            return error(request, 422, "output_blocked", "the model's answer was withheld by"
                         f" the safety policy: {screening.reason}")
        if screening.text != response.message.content:
            message = response.message.model_copy(update={"content": screening.text})
            response = response.model_copy(update={"message": message})
    if body.stream:
        events = events_of(response)
        chunks = _chunks(request, tenant_id, completion_id, created, body.model,
                         await anext(events), events, include_usage)
        return StreamingResponse(chunks, media_type="text/event-stream")
    request.app.state.usage.record(tenant_id, "chat", body.model, response.usage)
    return JSONResponse(_completion(completion_id, created, body.model, response))


async def _screen_input(
    request: Request, guards: SafetyGuards, policy: SafetyPolicy, found: Caller,
    messages: list[Message],
) -> tuple[list[Message], str | None, dict[str, str]]:
    """The tenant's input rules on each user message: the messages to send
    (redacted where a rule says), why the request is refused, if it is, and
    the placeholders reversible rules put in (homeo.safety.vault)."""
    if not policy.rules("input"):
        return messages, None, {}
    screened, vault = [], {}
    for message in messages:
        if message.role != "user" or not message.content:
            screened.append(message)
            continue
        screening = await asyncio.to_thread(guards.check, policy, "input", message.content,
                                            None, vault)
        if screening.action is not None:
            await note_screening(request, found.tenant_id, found.principal, "chat",
                                 screening.to_json())
        if screening.action == "block":
            return messages, screening.reason, vault
        vault = screening.vault or vault
        screened.append(message.model_copy(update={"content": screening.text}))
    return screened, None, vault


def _restored(response: ModelResponse, vault: dict[str, str]) -> ModelResponse:
    """The answer with the caller's own values back in place of their
    placeholders: in its text and its tool calls' arguments."""
    message = response.message
    calls = [call.model_copy(update={"arguments": unmask_value(call.arguments, vault)})
             for call in message.tool_calls]
    content = None if message.content is None else unmask(message.content, vault)
    return response.model_copy(update={"message": message.model_copy(
        update={"content": content, "tool_calls": calls})})


class ClientGone(Exception):
    """The HTTP client hung up before its answer was ready."""


async def _unless_client_leaves(request: Request, call: Awaitable[T]) -> T:
    """`call`, cancelled if the client hangs up first, so its work stops (the
    local model at its next token, an upstream request at once) instead of
    computing an answer nobody will read."""
    work = asyncio.ensure_future(call)
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return work.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work


async def _first(events: AsyncIterator[StreamEvent]) -> StreamEvent:
    try:
        return await anext(events)
    except StopAsyncIteration:
        raise ModelError("the model's stream ended without an answer") from None
    except BaseException:
        await events.aclose()
        raise


def status_of(failure: ModelError) -> tuple[int, str]:
    """The HTTP status and error type for a model call that failed."""
    if isinstance(failure, AllDeploymentsFailed):
        return (504, "timeout") if failure.timed_out else (503, "unavailable")
    if isinstance(failure, Unsupported) or (
        isinstance(failure, ModelHTTPError) and failure.status_code in _CALLER_FAULTS
    ):
        return 400, "bad_request"
    return 502, "bad_gateway"


def unknown_model(request: Request, catalog: ModelCatalog, model: str) -> JSONResponse | None:
    """A 404 naming the aliases, unless `model` is one."""
    if model in catalog.settings.models:
        return None
    known = ", ".join(catalog.aliases()) or "none (set HOMEO_MODELS)"
    return error(request, 404, "not_found", f"no model {model!r}; the models are: {known}")


def unable(
    request: Request, catalog: ModelCatalog, model: str, capability: Capability
) -> JSONResponse | None:
    """A 400 naming the aliases that can, when no deployment of `model` does
    `capability` (chat on an embedding model, or the reverse). Not a 5xx: a
    client must not retry it."""
    if model in catalog.aliases_that(capability):
        return None
    able = ", ".join(catalog.aliases_that(capability)) or "none (set HOMEO_MODELS)"
    if capability == "chat":
        problem = (f"model {model!r} only makes embeddings (POST /v1/embeddings) and cannot"
                   f" chat; the chat models are: {able}")
    else:
        problem = (f"model {model!r} does not make embeddings, it only chats (POST"
                   f" /v1/chat/completions); the embedding models are: {able}")
    return error(request, 400, "bad_request", problem)


async def over_budget(request: Request, tenant_id: str) -> JSONResponse | None:
    """A 429 when the tenant's hard token budget is used up (a soft one is logged)."""
    budgets: TenantBudgets | None = request.app.state.budgets
    if budgets is None:
        return None
    # One warning per tenant and soft budget while this process runs.
    warned = request.app.state.soft_budgets_warned.setdefault(tenant_id, set())
    try:
        warned.update(await budgets.check(tenant_id, None, warned))
    except BudgetExceeded as exceeded:
        return error(request, 429, "budget_exceeded", str(exceeded))
    return None


def _message(wire: ChatMessage) -> Message:
    if isinstance(wire.content, list):
        content = "".join(part.text for part in wire.content)
    else:
        content = wire.content or ""
    calls = []
    for call in wire.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise ChatError(400, "bad_request",
                            f"tool call {call.id!r}: arguments must be a JSON object,"
                            f" got {call.function.arguments!r}")
        calls.append(ToolCall(id=call.id, name=call.function.name, arguments=arguments))
    if wire.role == "tool" and not wire.tool_call_id:
        raise ChatError(400, "bad_request", "a message with role 'tool' needs a tool_call_id")
    role = "system" if wire.role == "developer" else wire.role
    return Message(role=role, content=content, tool_calls=calls,
                   tool_call_id=wire.tool_call_id, name=wire.name)


def _wire_calls(response: ModelResponse) -> list[dict[str, Any]]:
    return [
        {"id": call.id, "type": "function",
         "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
        for call in response.message.tool_calls
    ]


def _usage(response: ModelResponse) -> dict[str, int]:
    usage = response.usage
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens}


def _finish_reason(response: ModelResponse) -> str:
    return "tool_calls" if response.message.tool_calls else "stop"


def _completion(
    completion_id: str, created: int, model: str, response: ModelResponse
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.message.content}
    if response.message.tool_calls:
        message["content"] = response.message.content or None
        message["tool_calls"] = _wire_calls(response)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _finish_reason(response)}],
        "usage": _usage(response),
    }


async def _chunks(
    request: Request,
    tenant_id: str,
    completion_id: str,
    created: int,
    model: str,
    first: StreamEvent,
    events: AsyncIterator[StreamEvent],
    include_usage: bool,
) -> AsyncIterator[str]:
    """OpenAI chunks for `first` and the rest of `events`, each sent as it comes."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body: dict[str, Any] = {
            "id": completion_id, "object": "chat.completion.chunk", "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        event = first
        while not isinstance(event, StreamEnd):
            if isinstance(event, TextDelta):
                yield chunk({"content": event.text})
            else:
                call: dict[str, Any] = {"index": event.index}
                if event.id is not None:
                    call["id"] = event.id
                    call["type"] = "function"
                function: dict[str, Any] = {"arguments": event.arguments}
                if event.name is not None:
                    function["name"] = event.name
                yield chunk({"tool_calls": [{**call, "function": function}]})
            try:
                event = await anext(events)
            except StopAsyncIteration:
                raise ModelError("the model's stream ended without its final event") from None
    except ModelError as failure:
        # The status line has been sent: the error can only travel in the stream.
        status, kind = status_of(failure)
        event_body = {"error": {"type": kind, "code": status, "message": scrub(str(failure))}}
        yield f"data: {json.dumps(event_body)}\n\n"
        return
    finally:
        await events.aclose()
    response = event.response
    request.app.state.usage.record(tenant_id, "chat", model, response.usage)
    yield chunk({}, _finish_reason(response))
    if include_usage:
        usage = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                 "model": model, "choices": [], "usage": _usage(response)}
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"
