"""The sandbox's errors, as types the caller can react to."""

from __future__ import annotations


class SandboxError(Exception):
    """The sandbox could not run the command (not: the command failed)."""


class SandboxUnavailable(SandboxError):
    """A protection layer is missing and the operator has not turned it off."""

    def __init__(self, layer: str, detail: str, fix: str) -> None:
        self.layer = layer
        self.fix = fix
        super().__init__(f"sandbox layer {layer!r} is not available: {detail}; fix: {fix}")
