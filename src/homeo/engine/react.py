"""The tool-calling (ReAct) loop as a two-node graph:

    model --(tool calls)--> tools --(one call per step, until none left)--> model
      \\--(final answer)--> END

Each tool call is its own step, so a crash between two calls of one model turn
never repeats the first. When every call of a turn is to an idempotent tool
that cannot wait (no approval, no `ToolContext`), the calls run at once: the
runner begins one step per call, runs them together and completes each in
order (`ToolNode.fan_out`; engine/runner.py).

A call the model already made (same tool, same arguments) that succeeded is
not made again: the tool step answers from the recorded result, and the
model's next turn is offered no tools and told to answer with it. Small models
otherwise call the same tool again and again. Where the run's output comes
from (the model's words or the tool's result) is the agent's `answer`
(`homeo.engine.answer`).

A call to a tool that needs approval (`requires_approval` on the tool, or
listed under `approval.tools` in the agent's YAML) ends its step by waiting
for a person; the run resumes when someone approves (the tool then runs, with
edited arguments if given) or rejects (the model is told, with the comment). A
tool may also wait for a person's answer (`ToolContext.ask`) or for child runs
(a sub-agent, engine/subagents.py): the same step runs again once they arrive.

Model and tool calls are spans inside their step's span (GenAI semantic
conventions: `chat {model}`, `execute_tool {tool}`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field

from homeo.engine.answer import FinalAnswer
from homeo.engine.budgets import RunBudget, check_run_budget
from homeo.engine.errors import RetryableError, RunFailed
from homeo.engine.graph import END, FanOut, Graph, Node, Outcome, RunContext, RunState, Wait
from homeo.engine.runner import SCREENED, screen_output
from homeo.llm.base import Message, Model, ModelError, ModelResponse, ToolCall, ToolSpec
from homeo.llm.structured import request_structured
from homeo.observe import tracing
from homeo.safety.scrub import scrub, scrub_value
from homeo.safety.vault import VAULT, remask, remask_value, unmask, unmask_value
from homeo.tools.context import AskPerson, ToolContext, WaitForRuns
from homeo.tools.permissions import ToolGate
from homeo.tools.registry import Tool, ToolError

if TYPE_CHECKING:
    from homeo.engine.reflect import ReflectPolicy
    from homeo.safety.screen import Screening

MAX_TOOL_RESULT_CHARS = 20_000
# What the model reads instead of a tool result the safety policy blocked.
WITHHELD = ("[homeo safety: the result of {tool!r} was withheld: {why}. Do not act on it;"
            " tell the user it was withheld.]")
# Sent (not stored) with the turn after a repeated call, whose tools are withdrawn.
ANSWER_NOW = (
    "You already called that tool with the same arguments, and its result is above."
    " Do not call it again: answer now, using that result."
)


def call_key(call: ToolCall) -> str:
    """What makes two calls the same: the tool and its arguments."""
    return json.dumps([call.name, call.arguments], sort_keys=True, default=str)


def succeeded_calls(state: RunState) -> list[tuple[ToolCall, str]]:
    """Each tool call of the run that succeeded, with the result the model saw, in order."""
    succeeded: list[tuple[ToolCall, str]] = []
    # A result answers a call of the latest assistant turn: some servers reuse
    # ids (call_0) from turn to turn.
    calls: dict[str, ToolCall] = {}
    for message in state.messages:
        if message.tool_calls:
            calls = {call.id: call for call in message.tool_calls}
        elif message.role == "tool" and message.tool_call_id in calls and not message.is_error:
            succeeded.append((calls[message.tool_call_id], message.content))
    return succeeded


def recorded_result(state: RunState, call: ToolCall) -> str | None:
    """The result of an earlier, successful call that `call` repeats, if any."""
    key = call_key(call)
    return next((result for earlier, result in succeeded_calls(state)
                 if call_key(earlier) == key), None)


class ApprovalPolicy(BaseModel):
    """Which of an agent's tools a person approves before each call, and what
    happens when nobody decides in time (`timeout` seconds; None: wait for ever)."""

    model_config = ConfigDict(extra="forbid")
    tools: list[str] = Field(default_factory=list)
    timeout: float | None = Field(None, gt=0, le=365 * 86400)
    on_timeout: Literal["reject", "fail"] = "reject"
    # A rejected call: the model is told and goes on, or the run fails.
    on_reject: Literal["tell_model", "fail"] = "tell_model"


def turn_key(call: ToolCall, state: RunState) -> str:
    """Names one tool call of one model turn (ids repeat across turns on some servers)."""
    return f"t{state.model_turns}:{call.id}"


def task_of(state: RunState) -> str:
    """The run's task: its first user message (the run's input)."""
    return next((m.content for m in state.messages if m.role == "user"), "")


def last_success(state: RunState) -> tuple[ToolCall, str] | None:
    """The run's latest tool call that succeeded, and its result."""
    succeeded = succeeded_calls(state)
    return succeeded[-1] if succeeded else None


async def ask_model(
    model: Model,
    messages: list[Message],
    state: RunState,
    context: RunContext,
    *,
    tools: list[ToolSpec] | None = None,
    budget: RunBudget | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    json_schema: dict[str, Any] | None = None,
) -> tuple[ModelResponse, list[str]]:
    """One model call of a step, for every node that calls a model: budgets checked
    first, a `chat` span around it, provider errors as RetryableError/RunFailed,
    and with `json_schema` an answer checked against it (homeo.llm.structured).
    Returns the reply and the soft budgets newly reached (to add to the state)."""
    warned = set(state.warned_budgets)
    reached = check_run_budget(budget or RunBudget(), state.usage.total_tokens, warned,
                               context.token_budget)
    if context.budgets is not None:
        reached += await context.budgets.check(context.tenant_id, context.agent, warned)
    try:
        with tracing.span(
            context.tracer,
            f"chat {model.name}",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": model.name},
        ) as span:
            if json_schema is None:
                response = await model.request(messages, tools or [], max_tokens=max_tokens,
                                               temperature=temperature)
            else:
                response = await request_structured(model, messages, json_schema, tools,
                                                    max_tokens=max_tokens,
                                                    temperature=temperature)
            span.set_attributes({"gen_ai.usage.input_tokens": response.usage.input_tokens,
                                 "gen_ai.usage.output_tokens": response.usage.output_tokens})
    except ModelError as error:
        if error.retryable:
            raise RetryableError(f"model {model.name}: {error}") from error
        raise RunFailed(f"model {model.name}: {error}") from error
    return response, reached


class ModelNode(Node):
    kind = "model"

    def __init__(
        self,
        model: Model,
        tools: dict[str, Tool],
        *,
        max_steps: int,
        max_tokens: int | None = None,
        temperature: float | None = None,
        budget: RunBudget | None = None,
        answer: FinalAnswer | None = None,
        name: str = "model",
        tools_node: str = "tools",
        done: str = END,
    ) -> None:
        super().__init__(name)
        self.model = model
        self.tools = tools
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.budget = budget or RunBudget()
        self.answer = answer or FinalAnswer()
        self.tools_node = tools_node  # where its tool calls run
        self.done = done  # where a final answer goes

    def describe(self, state: RunState) -> Any:
        last = state.messages[-1] if state.messages else None
        described = {
            "model": self.model.name,
            "messages": len(state.messages),
            "last": last.model_dump(exclude_defaults=True) if last else None,
        }
        if state.answer_now:
            described["answer_now"] = True
        return described

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        if state.model_turns >= self.max_steps:
            raise RunFailed(
                f"the agent used all {self.max_steps} model turns (max_steps) without a final"
                " answer; raise max_steps in its definition or simplify the task"
            )
        # On its last allowed turn the model gets no tools, so it must answer
        # instead of spending the run's final step on another tool call.
        last_turn = state.model_turns == self.max_steps - 1 and self.max_steps > 1
        offered = [] if last_turn or state.answer_now else [
            tool.spec for tool in self.tools.values()]
        sent = state.messages
        if state.answer_now:
            sent = [*state.messages, Message(role="user", content=ANSWER_NOW)]
        response, reached = await ask_model(
            self.model, sent, state, context, tools=offered, budget=self.budget,
            max_tokens=self.max_tokens, temperature=self.temperature)
        message = response.message
        # States are never mutated in place, so a shallow copy with new lists is
        # enough (a deep copy per step would make a run quadratic in its length).
        changes: dict[str, Any] = {
            "messages": [*state.messages, message],
            "model_turns": state.model_turns + 1,
            "answer_now": False,
        }
        if reached:
            changes["warned_budgets"] = [*state.warned_budgets, *reached]
        if message.tool_calls:
            changes["pending_tool_calls"] = list(message.tool_calls)
            target = self.tools_node
        else:
            changes["output"] = self.answer.choose(message.content, last_success(state))
            target = self.done
        output = message.model_dump(exclude_defaults=True)
        if not message.tool_calls and changes["output"]:
            # The answer leaves with the owner's values back, and the output
            # rules read it as it leaves.
            changes["output"] = unmask(changes["output"], state.data.get(VAULT, {}))
            screening = await screen_output(changes["output"], context)
            if screening is not None:  # the runner need not read it again
                changes["data"] = {**state.data, SCREENED: screening.text}
            if screening is not None and screening.action is not None:
                output["safety"] = screening.to_json()
                if screening.text != changes["output"]:  # redacted
                    if message.content == changes["output"]:
                        changes["messages"] = [*state.messages, message.model_copy(
                            update={"content": screening.text})]
                        output["content"] = screening.text
                    changes["output"] = screening.text
        new = state.model_copy(update=changes)
        return Outcome(
            output=output,
            state=new,
            next=target,
            usage=response.usage,
            model=self.model.name,
        )


@dataclass(frozen=True)
class Attempt:
    """What one tool call did: its result, the ToolError it raised, or the
    recorded result of the earlier call it repeats (the tool did not run)."""

    result: Any = None
    error: ToolError | None = None
    recorded: str | None = None
    # What the safety guards found in the result (None: not screened).
    screening: Screening | None = None


class ToolNode(Node, FanOut):
    """Runs the first pending tool call. Errors the model can fix (unknown tool,
    a tool the tenant may not use or has called too often, bad arguments, a
    tool's exception or timeout) go back to it as the tool's result, up to
    `max_tool_errors`; then the run fails."""

    kind = "tool"

    def __init__(
        self, tools: dict[str, Tool], *, max_tool_errors: int = 3, name: str = "tools",
        gate: ToolGate | None = None, answer: FinalAnswer | None = None,
        approval: ApprovalPolicy | None = None, then: str = "model", done: str = END,
        reuse_results: bool = True,
    ) -> None:
        super().__init__(name)
        # A repeated call is answered from its record (for models that loop);
        # a graph's tool node always calls the tool.
        self.reuse_results = reuse_results
        self.tools = tools
        self.max_tool_errors = max_tool_errors
        self.gate = gate or ToolGate()
        self.answer = answer or FinalAnswer()
        self.approval = approval or ApprovalPolicy()
        self.then = then  # where the run goes once no call is left
        self.done = done  # where an answer taken from a tool result goes

    def step_name(self, state: RunState) -> str:
        return state.pending_tool_calls[0].name

    def describe(self, state: RunState) -> Any:
        return state.pending_tool_calls[0].model_dump()

    def needs_approval(self, tool: Tool) -> bool:
        return tool.requires_approval or tool.name in self.approval.tools

    def _recorded(self, state: RunState, call: ToolCall) -> str | None:
        return recorded_result(state, call) if self.reuse_results else None

    def is_idempotent(self, state: RunState) -> bool:
        call = state.pending_tool_calls[0]
        if _safety_id(call, state) in state.data.get(HELD, {}):
            return True  # its result waits for a person: the tool does not run again
        if self._recorded(state, call) is not None:
            return True  # answered from the record: the tool does not run
        tool = self.tools.get(call.name)
        if tool is None:
            return True  # an unknown tool never ran
        if self.needs_approval(tool) and _approval_id(call, state) not in state.decisions:
            return True  # the step only asks for approval
        return tool.idempotent

    def fan_out(self, state: RunState) -> int:
        """All pending calls at once when each is to an idempotent tool that
        cannot wait (no approval, no ToolContext: it can neither ask a person
        nor start a child run); otherwise one at a time."""
        calls = state.pending_tool_calls
        for call in calls:
            tool = self.tools.get(call.name)
            if (tool is None or not tool.idempotent or self.needs_approval(tool)
                    or tool.context_parameter is not None):
                return 1
        return len(calls)

    def piece(self, state: RunState, index: int) -> RunState:
        return state.model_copy(update={"pending_tool_calls": state.pending_tool_calls[index:]})

    async def work(self, state: RunState, index: int, context: RunContext) -> Attempt:
        return await self._attempt(state.pending_tool_calls[index], None, state, context)

    def settle(self, state: RunState, done: Any) -> Outcome:
        return self._settle(state, done)

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        call = state.pending_tool_calls[0]
        if _safety_id(call, state) in state.data.get(HELD, {}):
            return self._held(state, call)
        tool = self.tools.get(call.name)
        arguments = None
        if tool is not None and self.needs_approval(tool) and self._recorded(
                state, call) is None:
            decision = state.decisions.get(_approval_id(call, state))
            if decision is None:
                return self._wait_for_approval(state, call, context)
            if not decision.get("approved"):
                return self._rejected(state, call, decision)
            arguments = decision.get("arguments")
        try:
            attempt = await self._attempt(call, arguments, state, context)
        except AskPerson as ask:
            return self._wait(state, call, Wait(
                id=_input_id(call, state), kind="input",
                detail={"question": ask.question, "tool": call.name, "call_id": call.id}))
        except WaitForRuns as children:
            return self._wait(state, call, Wait(
                id=f"children:{turn_key(call, state)}", kind="children",
                detail={"runs": children.run_ids, "tool": call.name, "call_id": call.id}))
        if attempt.screening is not None and attempt.screening.action == "approve":
            return self._hold(state, call, attempt, context)
        return self._settle(state, attempt, edited=arguments)

    async def _attempt(
        self, call: ToolCall, arguments: dict[str, Any] | None, state: RunState,
        context: RunContext,
    ) -> Attempt:
        """Make the call (with `arguments` a person edited, if any); AskPerson and
        WaitForRuns pass through."""
        recorded = self._recorded(state, call)
        if recorded is not None:
            return Attempt(recorded=recorded)
        try:
            with tracing.span(
                context.tracer,
                f"execute_tool {call.name}",
                attributes={"gen_ai.operation.name": "execute_tool",
                            "gen_ai.tool.name": call.name, "gen_ai.tool.call.id": call.id},
            ):
                # The tool gets the values behind the run's own placeholders.
                result = await self._call(
                    call, unmask_value(call.arguments if arguments is None else arguments,
                                       state.data.get(VAULT, {})), state, context)
        except ToolError as error:
            return Attempt(error=error)
        return Attempt(result=result,
                       screening=await self._screen(call, result, context, state))

    async def _screen(self, call: ToolCall, result: Any, context: RunContext,
                      state: RunState) -> Screening | None:
        """The safety policy's tool_output (or, for a tool that retrieves stored
        documents, retrieved) rules on the result, before the model reads it."""
        tool = self.tools.get(call.name)
        boundary = "retrieved" if tool is not None and tool.retrieves else "tool_output"
        if context.safety is None or not context.safety.watches(boundary):
            return None
        from homeo.safety.guards import GuardUnavailable

        try:
            screening = await context.safety.check(boundary, _content(result),
                                                   state.data.get(VAULT))
        except GuardUnavailable as error:
            raise RunFailed(f"the safety policy needs a guard that cannot run: {error}") from None
        if screening.action is not None:
            context.emit({"type": "safety", "tenant_id": context.tenant_id,
                          "run_id": context.run_id, "tool": call.name,
                          "screening": screening.to_json()})
        return screening

    def _settle(self, state: RunState, attempt: Attempt,
                edited: dict[str, Any] | None = None) -> Outcome:
        """The step's outcome for the first pending call, given what it did."""
        call = state.pending_tool_calls[0]
        if attempt.recorded is not None:
            return self._repeated(state, call, attempt.recorded)
        tool_errors = state.tool_errors
        if attempt.error is not None:
            tool_errors += 1
            if tool_errors > self.max_tool_errors:
                raise RunFailed(
                    f"{attempt.error} (tool errors: {tool_errors}, more than max_tool_errors="
                    f"{self.max_tool_errors})"
                ) from attempt.error
            output: dict[str, Any] = {"error": str(attempt.error)}
            content = f"error: {attempt.error}"
        else:
            result = attempt.result
            output = {"result": result}
            content = _content(result)
            screening = attempt.screening
            if screening is not None and screening.action is not None:
                output["safety"] = screening.to_json()
                if screening.action == "block":
                    output = {"withheld": result, "safety": output["safety"]}
                    content = WITHHELD.format(tool=call.name, why=screening.reason)
                elif screening.action == "redact":
                    content = screening.text
                    output["result"] = content
                    if screening.vault is not None:
                        state = state.model_copy(
                            update={"data": {**state.data, VAULT: screening.vault}})
            if edited is not None:
                output["arguments"] = edited
                content = (f"(a person changed the arguments to"
                           f" {json.dumps(edited, default=str)})\n{content}")
        succeeded = attempt.error is None and not (
            attempt.screening is not None and attempt.screening.action == "block")
        if state.data.get(VAULT):  # values the run masked stay masked, read or recorded
            content = remask(content, state.data[VAULT])
            output = remask_value(output, state.data[VAULT])
        # No secret a tool printed reaches the model or the step's record.
        content, output = scrub(content), scrub_value(output)
        reply = Message(
            role="tool", content=content[:MAX_TOOL_RESULT_CHARS], tool_call_id=call.id,
            name=call.name, is_error=not succeeded,
        )
        changes: dict[str, Any] = {
            "messages": [*state.messages, reply],
            "pending_tool_calls": state.pending_tool_calls[1:],
            "tool_errors": tool_errors,
        }
        return self._next(state, call, reply, changes, output, succeeded=succeeded)

    def _wait_for_approval(self, state: RunState, call: ToolCall, context: RunContext) -> Outcome:
        timeout = self.approval.timeout
        return self._wait(state, call, Wait(
            id=_approval_id(call, state), kind="approval",
            detail={"tool": call.name, "arguments": call.arguments, "call_id": call.id},
            deadline=None if timeout is None else context.clock() + timeout,
            on_timeout=self.approval.on_timeout))

    def _wait(self, state: RunState, call: ToolCall, wait: Wait) -> Outcome:
        """End the step waiting; the same call runs again when the run wakes."""
        return Outcome(output={"waiting": wait.model_dump(exclude_none=True)}, state=state,
                       next=self.name, wait=wait)

    def _hold(self, state: RunState, call: ToolCall, attempt: Attempt,
              context: RunContext) -> Outcome:
        """The guards sent the result for approval: keep it in the state (the
        tool is not called again) and wait for a person."""
        assert attempt.screening is not None
        wait_id = _safety_id(call, state)
        record = attempt.screening.to_json()
        held = {**state.data.get(HELD, {}), wait_id: {"result": attempt.result,
                                                      "safety": record}}
        timeout = self.approval.timeout
        wait = Wait(id=wait_id, kind="approval",
                    detail={"tool": call.name, "call_id": call.id, "safety": record,
                            "question": f"the safety guards held the result of {call.name!r}"
                                        f" ({attempt.screening.reason}): let the model read it?"},
                    deadline=None if timeout is None else context.clock() + timeout,
                    on_timeout="reject")
        return Outcome(output={"waiting": wait.model_dump(exclude_none=True), "safety": record},
                       state=state.model_copy(update={"data": {**state.data, HELD: held}}),
                       next=self.name, wait=wait)

    def _held(self, state: RunState, call: ToolCall) -> Outcome:
        """The person decided on a held result: approved, the model reads it;
        rejected (or nobody answered in time), it reads the notice instead."""
        wait_id = _safety_id(call, state)
        held = dict(state.data[HELD])
        entry = held.pop(wait_id)
        decision = state.decisions.get(wait_id, {})
        state = state.model_copy(update={"data": {**state.data, HELD: held}})
        if decision.get("approved"):
            attempt = Attempt(result=entry["result"])
            outcome = self._settle(state, attempt)
            output = {**outcome.output, "safety": {**entry["safety"], "approved": True}}
            return outcome.model_copy(update={"output": output})
        why = "a person did not approve it" + (
            f" ({decision['comment']})" if decision.get("comment") else "")
        reply = Message(role="tool", content=WITHHELD.format(tool=call.name, why=why),
                        tool_call_id=call.id, name=call.name, is_error=True)
        changes: dict[str, Any] = {"messages": [*state.messages, reply],
                                   "pending_tool_calls": state.pending_tool_calls[1:]}
        return self._next(state, call, reply, changes,
                          {"withheld": entry["result"], "safety": {**entry["safety"],
                                                                   "approved": False}},
                          succeeded=False)

    def _rejected(self, state: RunState, call: ToolCall, decision: dict[str, Any]) -> Outcome:
        comment = decision.get("comment") or "no comment"
        why = "nobody approved it in time" if decision.get("expired") else "a person rejected it"
        if self.approval.on_reject == "fail" or (
                decision.get("expired") and self.approval.on_timeout == "fail"):
            raise RunFailed(f"the call to {call.name!r} was not made: {why} ({comment})")
        reply = Message(role="tool", content=f"error: not done: {why}: {comment}",
                        tool_call_id=call.id, name=call.name, is_error=True)
        changes: dict[str, Any] = {
            "messages": [*state.messages, reply],
            "pending_tool_calls": state.pending_tool_calls[1:],
        }
        return self._next(state, call, reply, changes,
                          {"rejected": True, "comment": comment}, succeeded=False)

    def _repeated(self, state: RunState, call: ToolCall, recorded: str) -> Outcome:
        """`call` repeats one that succeeded: its recorded result, without running
        the tool, and the model's next turn must answer."""
        reply = Message(role="tool", content=recorded, tool_call_id=call.id, name=call.name)
        changes: dict[str, Any] = {
            "messages": [*state.messages, reply],
            "pending_tool_calls": state.pending_tool_calls[1:],
            "answer_now": True,
        }
        return self._next(state, call, reply, changes, {"result": recorded, "repeated": True},
                          succeeded=True)

    def _next(
        self, state: RunState, call: ToolCall, reply: Message, changes: dict[str, Any],
        output: Any, *, succeeded: bool,
    ) -> Outcome:
        remaining = changes["pending_tool_calls"]
        if remaining:
            target = self.name
        elif succeeded and self.answer.source == "tool_result":
            changes["output"] = self.answer.compose(call, reply.content)
            target = self.done
        else:
            target = self.then
        return Outcome(output=output, state=state.model_copy(update=changes), next=target)

    async def _call(
        self, call: ToolCall, arguments: dict[str, Any], state: RunState, context: RunContext
    ) -> Any:
        name = call.name
        tool = self.tools.get(name)
        if tool is None:
            allowed = ", ".join(sorted(self.tools)) or "none"
            raise ToolError(f"tool {name!r} is not available to this agent (allowed: {allowed})")
        self.gate.admit(context.tenant_id, context.agent, tool)
        valid = tool.validate(arguments)
        if tool.context_parameter is not None:
            answered = state.decisions.get(_input_id(call, state), {})
            valid[tool.context_parameter] = ToolContext(
                tenant_id=context.tenant_id, run_id=context.run_id, agent=context.agent,
                call_id=call.id, settings=context.tools, answer=answered.get("answer"),
                call_key=f"{context.run_id}:{turn_key(call, state)}",
                children=context.children, memory=context.memory)
        try:
            if inspect.iscoroutinefunction(tool.function):
                pending = tool.function(**valid)
            else:
                pending = asyncio.to_thread(tool.function, **valid)
            return await asyncio.wait_for(pending, timeout=tool.timeout_seconds)
        except TimeoutError:
            raise ToolError(f"tool {name!r} timed out after {tool.timeout_seconds:g}s") from None
        except (ToolError, AskPerson, WaitForRuns):
            raise
        except Exception as error:
            raise ToolError(f"tool {name!r} raised {type(error).__name__}: {error}") from error


HELD = "safety_held"  # RunState.data: results the guards hold for approval, by wait id


def _content(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result, default=str)


def _safety_id(call: ToolCall, state: RunState) -> str:
    return f"safety:{turn_key(call, state)}"


def _approval_id(call: ToolCall, state: RunState) -> str:
    return f"approval:{turn_key(call, state)}"


def _input_id(call: ToolCall, state: RunState) -> str:
    return f"input:{turn_key(call, state)}"


def tool_calling_graph(
    model: Model,
    tools: list[Tool],
    *,
    max_steps: int,
    max_tool_errors: int = 3,
    max_tokens: int | None = None,
    temperature: float | None = None,
    budget: RunBudget | None = None,
    gate: ToolGate | None = None,
    answer: FinalAnswer | None = None,
    approval: ApprovalPolicy | None = None,
    reflect: ReflectPolicy | None = None,
) -> Graph:
    """`answer` says where the run's output comes from (default: the model's words);
    ValueError if its template names a field the tools do not have. With
    `reflect`, each answer goes to a critique step first (engine/reflect.py)."""
    from homeo.engine.reflect import CritiqueNode

    by_name = {tool.name: tool for tool in tools}
    answer = answer or FinalAnswer()
    answer.check(tool.spec for tool in tools)
    done = END if reflect is None else "critique"
    nodes: dict[str, Node] = {
        "model": ModelNode(
            model, by_name, max_steps=max_steps, max_tokens=max_tokens,
            temperature=temperature, budget=budget, answer=answer, done=done,
        ),
        "tools": ToolNode(by_name, max_tool_errors=max_tool_errors, gate=gate,
                          answer=answer, approval=approval, done=done),
    }
    if reflect is not None:
        nodes["critique"] = CritiqueNode(model, reflect, max_turns=max_steps,
                                         temperature=temperature, budget=budget)
    return Graph(nodes=nodes, start="model")
