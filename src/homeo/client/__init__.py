"""The Python SDK: `Homeo` (sync) and `AsyncHomeo` (async) clients of the
HTTP API, typed models, and errors as types.

    from homeo.client import Homeo

    with Homeo("http://127.0.0.1:8000", "hk_...") as homeo:
        run = homeo.runs.submit("echo", "hello")
        print(homeo.runs.wait(run.id).output)
"""

from homeo.client.aio import AsyncHomeo
from homeo.client.calls import Retries
from homeo.client.errors import (
    APIError,
    Conflict,
    Forbidden,
    Gone,
    HomeoError,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    WaitTimeout,
)
from homeo.client.models import (
    Agent,
    Child,
    Collection,
    CreatedKey,
    Document,
    EndEvent,
    Event,
    Hit,
    Ingestion,
    Key,
    OtherEvent,
    Run,
    RunAccepted,
    RunDetail,
    RunEvent,
    SearchResults,
    Step,
    StepEvent,
    StepState,
    WaitingEvent,
)
from homeo.client.sync import Homeo

__all__ = [
    "APIError", "Agent", "AsyncHomeo", "Child", "Collection", "Conflict", "CreatedKey",
    "Document", "EndEvent", "Event", "Forbidden", "Gone", "Hit", "Homeo", "HomeoError", "Ingestion",
    "InvalidRequest", "Key", "NotFound", "OtherEvent", "RateLimited", "Retries", "Run",
    "RunAccepted", "RunDetail", "RunEvent", "SearchResults", "ServerError", "Step", "StepEvent",
    "StepState", "Unauthorized", "WaitTimeout", "WaitingEvent",
]
