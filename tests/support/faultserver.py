"""The fault-injecting OpenAI-compatible server ships with the chaos harness
(homeo.autonomic.chaos.faultserver); tests import it from here as before."""

from homeo.autonomic.chaos.faultserver import (
    Endpoint,
    FaultServer,
    Reply,
    completion,
    embeddings_body,
    error,
    fault_server,
    stream_chunks,
    vector_for,
)

__all__ = ["Endpoint", "FaultServer", "Reply", "completion", "embeddings_body", "error",
           "fault_server", "stream_chunks", "vector_for"]
