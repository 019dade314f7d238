"""Language models behind one small interface."""

from homeo.llm.base import (
    Message,
    Model,
    ModelError,
    ModelResponse,
    StreamEnd,
    StreamEvent,
    StreamInterrupted,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

__all__ = [
    "Message",
    "Model",
    "ModelError",
    "ModelResponse",
    "StreamEnd",
    "StreamEvent",
    "StreamInterrupted",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "Usage",
]
