"""Reversible redaction: personal data that a rule with `reversible: true`
masks is replaced by numbered placeholders (`<EMAIL_ADDRESS_1>`), and the run
keeps the map from each placeholder to its value in its own state
(`data["vault"]`, stored with its checkpoints, so encrypted at rest for a
tenant that asks).

The model reads only placeholders. The run puts the values back where they
serve the data's owner: in the arguments of the tools it calls (so "write to
<EMAIL_ADDRESS_1>" reaches the mail tool as the address) and in its answer.
A placeholder that the run's own vault does not name stays as it is, so no
run, and no tenant, can restore another's values. The same value masked twice
in one run gets the same placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from homeo.safety.verdict import Span, drop_overlaps

VAULT = "vault"  # the key of the run's map in RunState.data
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")


def mask(text: str, spans: Iterable[Span], vault: Mapping[str, str],
         reversible: Iterable[Span] = ()) -> tuple[str, dict[str, str]]:
    """`text` with each of `spans` replaced by `<KIND>` and each of
    `reversible` by a numbered placeholder of its kind (the one `vault` already
    has for the same value and kind, else the kind's next number). Of
    overlapping spans the higher-scoring (then longer) one is replaced.
    Returns the text and the vault with the new placeholders."""
    numbered = set(reversible)
    kept = dict(vault)
    known = {(value, placeholder.rsplit("_", 1)[0][1:]): placeholder
             for placeholder, value in kept.items()}
    pieces, at = [], 0
    for span in drop_overlaps([*spans, *numbered]):
        pieces.append(text[at:span.start])
        value = text[span.start:span.end]
        if span not in numbered:
            pieces.append(f"<{span.kind}>")
        elif (value, span.kind) in known:
            pieces.append(known[value, span.kind])
        else:
            count = sum(1 for p in kept if p.rsplit("_", 1)[0] == f"<{span.kind}")
            placeholder = f"<{span.kind}_{count + 1}>"
            kept[placeholder], known[value, span.kind] = value, placeholder
            pieces.append(placeholder)
        at = span.end
    pieces.append(text[at:])
    return "".join(pieces), kept


def remask(text: str, vault: Mapping[str, str]) -> str:
    """`text` with every value `vault` holds replaced by its placeholder: a
    tool that echoes a value it was given back does not show it to the model."""
    for placeholder, value in sorted(vault.items(), key=lambda item: -len(item[1])):
        text = text.replace(value, placeholder)
    return text


def unmask(text: str, vault: Mapping[str, str]) -> str:
    """`text` with every placeholder `vault` names replaced by its value."""
    if not vault or "<" not in text:
        return text
    return _PLACEHOLDER.sub(lambda match: vault.get(match.group(), match.group()), text)


def remask_value(value: Any, vault: Mapping[str, str]) -> Any:
    """`remask` over the strings of a JSON-like value (a step's record)."""
    return _strings(value, lambda text: remask(text, vault)) if vault else value


def unmask_value(value: Any, vault: Mapping[str, str]) -> Any:
    """`unmask` over the strings of a JSON-like value (a tool call's arguments)."""
    return _strings(value, lambda text: unmask(text, vault)) if vault else value


def _strings(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: _strings(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_strings(item, change) for item in value]
    return value
