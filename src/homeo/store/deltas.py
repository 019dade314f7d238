"""Checkpoint deltas: what a step changed in the run's state, not the whole state.

A run's state is mostly its conversation, which only grows. Each completed
step keeps the checkpoint it produced as a delta from the step before:

    {"seq": 4, "next": "tools", "append": [<new messages>], "set": {<changed fields>}}

The first step a run completes (a fork's too) has nothing before it in the
run, so its delta carries the whole state: {"seq": 1, "next": ..., "state": {...}}.
A step that rewrote earlier messages (not only appended) sets `messages` whole.
`rebuild` applies a run's deltas in order to get the state at any step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def diff(previous: dict[str, Any] | None, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The delta that turns state `previous` into `checkpoint`'s state
    (`checkpoint` is {"seq", "next", "state"}); whole when `previous` is None."""
    state = checkpoint.get("state")
    delta: dict[str, Any] = {"seq": checkpoint.get("seq"), "next": checkpoint.get("next")}
    if not isinstance(previous, dict) or not isinstance(state, dict):
        delta["state"] = state
        return delta
    changed = {key: value for key, value in state.items()
               if key != "messages" and previous.get(key, _MISSING) != value}
    before, after = previous.get("messages", []), state.get("messages", [])
    if len(after) >= len(before) and after[:len(before)] == before:
        if len(after) > len(before):
            delta["append"] = after[len(before):]
    else:
        changed["messages"] = after
    if changed:
        delta["set"] = changed
    return delta


def rebuild(deltas: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint after the last of `deltas` (in step order, starting with a
    whole one): {"seq", "next", "state"}."""
    state: dict[str, Any] | None = None
    last: dict[str, Any] = {}
    for delta in deltas:
        if "state" in delta:
            whole = delta["state"]
            state = dict(whole) if isinstance(whole, dict) else whole
        elif state is None:
            raise ValueError(f"the delta of checkpoint {delta.get('seq')} has no state before it")
        else:
            if "append" in delta:
                state["messages"] = [*state.get("messages", []), *delta["append"]]
            state.update(delta.get("set", {}))
        last = delta
    if not last:
        raise ValueError("no checkpoint to rebuild")
    return {"seq": last["seq"], "next": last["next"], "state": state}


def is_whole(delta: dict[str, Any]) -> bool:
    return "state" in delta


_MISSING = object()
