"""Language models behind one small interface."""

from homeo.llm.base import (
    Embeddings,
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
    Unsupported,
    Usage,
)

__all__ = [
    "Embeddings",
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
    "Unsupported",
    "Usage",
]
