"""Reflection: a critique step judges each draft answer; the agent revises until it passes.

    reflect: {max_rounds: 2, criteria: "Name the city; one sentence."}

After the agent's draft answer, a critique step asks the model for a verdict
as JSON (`{"pass": bool, "reasons": [...]}`, structured output) on the task,
the draft and the criteria. When the draft fails, the reasons go back to the
agent as a message and it writes a new answer (with its tools, as before),
which is judged again, up to `max_rounds` critiques; the last draft is the
run's output either way. Each critique is its own step, and every verdict is
kept in `RunState.data["critiques"]`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from homeo.engine.budgets import RunBudget
from homeo.engine.graph import END, Node, Outcome, RunContext, RunState
from homeo.engine.react import ask_model, task_of
from homeo.llm.base import Message, Model


class ReflectPolicy(BaseModel):
    """The agent's `reflect:` in its YAML."""

    model_config = ConfigDict(extra="forbid")
    max_rounds: int = Field(2, ge=1, le=10, description="Critiques at most, per run.")
    criteria: str = Field("", max_length=4000, description="What a good answer does.")
    # Room for the JSON verdict, whatever the agent's own max_tokens.
    max_tokens: int = Field(256, ge=16, le=4096)


VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "pass": {"type": "boolean"},
        "reasons": {"type": "array", "items": {"type": "string", "maxLength": 300},
                    "maxItems": 5},
    },
    "required": ["pass", "reasons"],
}

CRITIC = ("You review an answer to a task. Reply with JSON: pass is true when the answer"
          " does the task and meets the criteria; reasons say what is wrong or missing.")


def revise_request(reasons: list[str]) -> str:
    listed = "\n".join(f"- {reason}" for reason in reasons) or "- it does not do the task"
    return ("A reviewer judged your answer and found problems:\n" + listed
            + "\nWrite a better answer to the task.")


class CritiqueNode(Node):
    """Judges `state.output`; passes it to `END`, or sends the agent back to `revise`."""

    kind = "critique"

    def __init__(
        self, model: Model, policy: ReflectPolicy, *, revise: str = "model", max_turns: int,
        temperature: float | None = None, budget: RunBudget | None = None,
        name: str = "critique",
    ) -> None:
        super().__init__(name)
        self.model = model
        self.policy = policy
        self.revise = revise
        self.max_turns = max_turns  # the agent's max_steps: a revision needs a model turn
        self.temperature = temperature
        self.budget = budget

    def describe(self, state: RunState) -> Any:
        return {"model": self.model.name, "round": len(state.data.get("critiques", [])) + 1,
                "draft": state.output}

    async def run(self, state: RunState, context: RunContext) -> Outcome:
        critiques = list(state.data.get("critiques", []))
        draft = state.output or ""
        prompt = f"Task: {task_of(state)}\n\nAnswer: {draft}"
        if self.policy.criteria:
            prompt += f"\n\nCriteria: {self.policy.criteria}"
        response, reached = await ask_model(
            self.model, [Message(role="system", content=CRITIC),
                         Message(role="user", content=prompt)],
            state, context, budget=self.budget, max_tokens=self.policy.max_tokens,
            temperature=self.temperature, json_schema=VERDICT_SCHEMA)
        verdict = json.loads(response.message.content)
        passed = bool(verdict["pass"])
        reasons = [str(reason) for reason in verdict.get("reasons", [])]
        record = {"round": len(critiques) + 1, "pass": passed, "reasons": reasons,
                  "draft": draft}
        changes: dict[str, Any] = {"data": {**state.data, "critiques": [*critiques, record]}}
        if reached:
            changes["warned_budgets"] = [*state.warned_budgets, *reached]
        target = END
        if passed:
            ending = "passed"
        elif record["round"] >= self.policy.max_rounds:
            ending = "max_rounds reached: the last draft is the answer"
        elif state.model_turns >= self.max_turns:
            ending = "max_steps reached: no model turn is left to revise"
        else:
            ending, target = "revise", self.revise
            changes["messages"] = [*state.messages,
                                   Message(role="user", content=revise_request(reasons))]
        return Outcome(output={**record, "then": ending}, state=state.model_copy(update=changes),
                       next=target, usage=response.usage, model=self.model.name)
