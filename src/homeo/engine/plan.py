"""Plan and execute: a planning step writes a plan; each item runs as its own steps.

    pattern: plan_execute
    plan: {max_items: 4, max_replans: 2, replan: on_failure}   # or after_each

    plan --> item --> model <--> tools          (the tool-calling loop, per item)
               ^        \\--(answer)--> check --> replan --\\
               |                         \\------------------+--> item
               \\--(no item left)--> answer --> END

The planning step asks the model for a plan as JSON (`{"items": [{"goal": ...}]}`,
structured output). Each item is handed to the agent as a message and runs
through the same model and tool steps as a tool-calling agent, until the
model answers it. The check step records the item's result; an item whose
tool calls failed (or, with `replan: after_each`, every item) leads to a
re-plan step, which asks the model for the remaining items given the results
so far. A final model turn answers the task from the results.

The plan lives in `RunState.data["plan"]`: its items (goal, status, result),
the current item and each revision. The plan, check and re-plan steps show
it in their outputs. `max_steps` counts the model turns of all items together.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from homeo.engine.answer import FinalAnswer
from homeo.engine.budgets import RunBudget
from homeo.engine.graph import Graph, Node, Outcome, RunContext, RunState
from homeo.engine.react import ApprovalPolicy, ModelNode, ToolNode, ask_model, task_of
from homeo.llm.base import Message, Model
from homeo.tools.permissions import ToolGate
from homeo.tools.registry import Tool


class PlanPolicy(BaseModel):
    """The agent's `plan:` in its YAML (with `pattern: plan_execute`)."""

    model_config = ConfigDict(extra="forbid")
    max_items: int = Field(5, ge=1, le=20)
    max_replans: int = Field(2, ge=0, le=10)
    # on_failure: re-plan after an item whose tool calls failed; after_each: after
    # every item that leaves items to do (the model judges what surprised it).
    replan: Literal["on_failure", "after_each"] = "on_failure"
    # Room for the JSON plan, whatever the agent's own max_tokens.
    max_tokens: int = Field(512, ge=32, le=8192)


def plan_schema(max_items: int, *, at_least: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"items": {
            "type": "array", "minItems": at_least, "maxItems": max_items,
            "items": {"type": "object", "properties": {"goal": {"type": "string",
                                                                 "maxLength": 500}},
                      "required": ["goal"]}}},
        "required": ["items"],
    }


PLAN_REQUEST = ("Before doing anything, write a plan for the task: a short list of steps,"
                " each with its goal. Reply with JSON only.")
ITEM_REQUEST = "Step {number} of your plan: {goal}\nDo this step now, then reply with its result."
FINISH_REQUEST = "Every step of the plan is done. Answer the task now: {task}"


def _plan(state: RunState) -> dict[str, Any]:
    return state.data.get("plan", {"items": [], "current": 0, "revisions": []})


def _items(goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"goal": str(item["goal"]), "status": "pending", "result": None} for item in goals]


class PlanNode(Node):
    """Writes the plan (`replan=False`) or revises what is left of it."""

    kind = "plan"

    def __init__(self, model: Model, policy: PlanPolicy, *, replan: bool,
                 temperature: float | None = None, budget: RunBudget | None = None) -> None:
        super().__init__("replan" if replan else "plan")
        self.model = model
        self.policy = policy
        self.replan = replan
        self.temperature = temperature
        self.budget = budget

    def describe(self, state: RunState) -> Any:
        plan = _plan(state)
        return {"model": self.model.name, "revision": len(plan["revisions"]) + 1} if (
            self.replan) else {"model": self.model.name}

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        plan = _plan(state)
        if self.replan:
            done = plan["items"][: plan["current"] + 1]
            report = "\n".join(f"{n}. {item['goal']} -> {item['status']}: {item['result']}"
                               for n, item in enumerate(done, 1))
            left = "\n".join(f"- {item['goal']}" for item in plan["items"][plan["current"] + 1:])
            messages = [Message(role="user", content=(
                f"Task: {task_of(state)}\n\nDone so far:\n{report}\n\nSteps still planned:\n"
                f"{left or '(none)'}\n\nRevise the steps still to do in the light of the"
                " results (an empty list when the task can be answered now). Reply with"
                " JSON only."))]
            room = self.policy.max_items - len(done)
            schema = plan_schema(max(room, 0), at_least=0)
        else:
            messages = [*state.messages, Message(role="user", content=PLAN_REQUEST)]
            schema = plan_schema(self.policy.max_items, at_least=1)
        response, reached = await ask_model(
            self.model, messages, state, context, budget=self.budget,
            max_tokens=self.policy.max_tokens, temperature=self.temperature, json_schema=schema)
        goals = _items(json.loads(response.message.content)["items"])
        if self.replan:
            current = plan["current"] + 1
            revision = {"after_item": plan["current"],
                        "reason": plan["items"][plan["current"]]["status"],
                        "items": [item["goal"] for item in goals]}
            plan = {**plan, "items": [*plan["items"][:current], *goals], "current": current,
                    "revisions": [*plan["revisions"], revision]}
            output: dict[str, Any] = {"revision": len(plan["revisions"]), **revision}
        else:
            plan = {"items": goals, "current": 0, "revisions": []}
            output = {"plan": [item["goal"] for item in goals]}
        changes: dict[str, Any] = {"data": {**state.data, "plan": plan}}
        if reached:
            changes["warned_budgets"] = [*state.warned_budgets, *reached]
        return Outcome(output=output, state=state.model_copy(update=changes), next="item",
                       usage=response.usage, model=self.model.name)


class ItemNode(Node):
    """Hands the agent the plan's current item, or asks for the answer when none is left."""

    kind = "branch"

    def __init__(self) -> None:
        super().__init__("item")

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        plan = _plan(state)
        items, current = plan["items"], plan["current"]
        if current >= len(items):
            request = FINISH_REQUEST.format(task=task_of(state))
            return Outcome(output={"next": "answer"}, next="answer", state=state.model_copy(
                update={"messages": [*state.messages, Message(role="user", content=request)]}))
        request = ITEM_REQUEST.format(number=current + 1, goal=items[current]["goal"])
        plan = {**plan, "began_at": len(state.messages) + 1}
        return Outcome(
            output={"item": current, "goal": items[current]["goal"]}, next="model",
            state=state.model_copy(update={
                "messages": [*state.messages, Message(role="user", content=request)],
                "data": {**state.data, "plan": plan}}))


class CheckNode(Node):
    """Records the item's result; picks a re-plan or the next item."""

    kind = "branch"

    def __init__(self, policy: PlanPolicy) -> None:
        super().__init__("check")
        self.policy = policy

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        plan = _plan(state)
        current = plan["current"]
        began = plan.get("began_at", 0)
        failed = any(m.role == "tool" and m.is_error for m in state.messages[began:])
        item = {**plan["items"][current], "status": "failed" if failed else "done",
                "result": state.output}
        items = [*plan["items"][:current], item, *plan["items"][current + 1:]]
        more = current + 1 < len(items)
        wanted = failed or (self.policy.replan == "after_each" and more)
        if wanted and len(plan["revisions"]) < self.policy.max_replans:
            target, plan = "replan", {**plan, "items": items}
        else:
            target, plan = "item", {**plan, "items": items, "current": current + 1}
        return Outcome(output={"item": current, **item, "next": target}, next=target,
                       state=state.model_copy(update={"data": {**state.data, "plan": plan},
                                                      "output": None}))


def plan_execute_graph(
    model: Model,
    tools: list[Tool],
    *,
    policy: PlanPolicy,
    max_steps: int,
    max_tool_errors: int = 3,
    max_tokens: int | None = None,
    temperature: float | None = None,
    budget: RunBudget | None = None,
    gate: ToolGate | None = None,
    answer: FinalAnswer | None = None,
    approval: ApprovalPolicy | None = None,
) -> Graph:
    by_name = {tool.name: tool for tool in tools}
    answer = answer or FinalAnswer()
    answer.check(tool.spec for tool in tools)
    return Graph(nodes={
        "plan": PlanNode(model, policy, replan=False, temperature=temperature, budget=budget),
        "item": ItemNode(),
        "model": ModelNode(model, by_name, max_steps=max_steps, max_tokens=max_tokens,
                           temperature=temperature, budget=budget, answer=answer, done="check"),
        "tools": ToolNode(by_name, max_tool_errors=max_tool_errors, gate=gate, answer=answer,
                          approval=approval, done="check"),
        "check": CheckNode(policy),
        "replan": PlanNode(model, policy, replan=True, temperature=temperature, budget=budget),
        # One more turn than the items may use, so the answer always has one.
        "answer": ModelNode(model, {}, max_steps=max_steps + 1, max_tokens=max_tokens,
                            temperature=temperature, budget=budget, name="answer"),
    }, start="plan")
