"""The requests the SDK makes, without I/O: each API call is a `Call` (its
method, path, query, body and how to read the answer) that `Homeo` sends with
httpx and `AsyncHomeo` sends with httpx's async client. The retry rule and the
SSE reader live here too, so the two clients share all but the sending."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import TypeAdapter

from homeo.client import models
from homeo.client.errors import error_of, retry_after

T = TypeVar("T")
SearchMode = Literal["hybrid", "text", "vector"]
DocumentFormat = Literal["text", "markdown", "html"]
RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = None if self.params is None else {
            name: value for name, value in self.params.items() if value is not None}
        return client.build_request(self.method, self.path, params=params, json=self.body,
                                    files=self.files, data=self.data)


@dataclass(frozen=True)
class Retries:
    """Retry 429 and 503 answers up to `attempts` more times, waiting
    `backoff * 2**n` seconds (at most `max_backoff`), or longer when the
    server's Retry-After asks for it."""

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0

    def delay(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again, or None: give up and raise."""
        if response.status_code not in RETRIED_STATUSES or attempt >= self.attempts:
            return None
        wanted = retry_after(response)
        backoff = min(self.backoff * 2 ** attempt, self.max_backoff)
        return backoff if wanted is None else max(wanted, backoff)


def checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_of(response)
    return response


def _model(cls: type[T]) -> Callable[[httpx.Response], T]:
    adapter = TypeAdapter(cls)
    return lambda response: adapter.validate_json(response.content)


def _nothing(response: httpx.Response) -> None:
    return None


def new_idempotency_key() -> str:
    return f"sdk-{uuid.uuid4().hex}"


# Runs

def submit(agent: str, input: str, idempotency_key: str | None,
           user: str | None = None) -> Call[models.RunAccepted]:
    body: dict[str, Any] = {"agent": agent, "input": input,
                            "idempotency_key": idempotency_key or new_idempotency_key()}
    if user is not None:
        body["user"] = user
    return Call("POST", "/v1/runs", _model(models.RunAccepted), body=body)


def get_run(run_id: str) -> Call[models.RunDetail]:
    return Call("GET", f"/v1/runs/{run_id}", _model(models.RunDetail))


def list_runs(status: str | None, agent: str | None, limit: int,
              before: str | None) -> Call[models.RunPage]:
    return Call("GET", "/v1/runs", _model(models.RunPage),
                params={"status": status, "agent": agent, "limit": limit, "before": before})


def cancel(run_id: str) -> Call[models.Run]:
    return Call("POST", f"/v1/runs/{run_id}/cancel", _model(models.Run))


def approve(run_id: str, comment: str, arguments: dict[str, Any] | None) -> Call[models.Run]:
    body: dict[str, Any] = {"comment": comment}
    if arguments is not None:
        body["arguments"] = arguments
    return Call("POST", f"/v1/runs/{run_id}/approve", _model(models.Run), body=body)


def reject(run_id: str, comment: str) -> Call[models.Run]:
    return Call("POST", f"/v1/runs/{run_id}/reject", _model(models.Run),
                body={"comment": comment})


def give_input(run_id: str, answer: str) -> Call[models.Run]:
    return Call("POST", f"/v1/runs/{run_id}/input", _model(models.Run), body={"answer": answer})


def fork(run_id: str, from_step: int, state: dict[str, Any] | None,
         idempotency_key: str | None) -> Call[models.Run]:
    body: dict[str, Any] = {"from_step": from_step,
                            "idempotency_key": idempotency_key or new_idempotency_key()}
    if state is not None:
        body["state"] = state
    return Call("POST", f"/v1/runs/{run_id}/fork", _model(models.Run), body=body)


def step(run_id: str, seq: int) -> Call[models.StepState]:
    return Call("GET", f"/v1/runs/{run_id}/steps/{seq}", _model(models.StepState))


def events_path(run_id: str) -> str:
    return f"/v1/runs/{run_id}/events"


# Agents and keys

def list_agents() -> Call[list[models.Agent]]:
    return Call("GET", "/v1/agents", _model(list[models.Agent]))


def agent_versions(name: str) -> Call[models.AgentVersions]:
    return Call("GET", f"/v1/agents/{name}/versions", _model(models.AgentVersions))


def list_keys() -> Call[list[models.Key]]:
    return Call("GET", "/v1/keys", _model(list[models.Key]))


def create_key(name: str, role: models.KeyRole) -> Call[models.CreatedKey]:
    return Call("POST", "/v1/keys", _model(models.CreatedKey), body={"name": name, "role": role})


def revoke_key(key_id: str) -> Call[models.Key]:
    return Call("POST", f"/v1/keys/{key_id}/revoke", _model(models.Key))


# Collections

def list_collections() -> Call[list[models.Collection]]:
    adapter = TypeAdapter(dict[str, list[models.Collection]])
    return Call("GET", "/v1/collections",
                lambda response: adapter.validate_json(response.content)["collections"])


def delete_collection(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/collections/{name}", _nothing)


def _document_body(text: str, format: DocumentFormat, title: str | None,
                   source: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text, "format": format}
    if title is not None:
        body["title"] = title
    if source is not None:
        body["source"] = source
    return body


Added = models.Document | models.Ingestion


def _added(response: httpx.Response) -> Added:
    """201: the document, indexed; 202: the ingestion a worker indexes."""
    if response.status_code == 202:
        return models.Ingestion.model_validate_json(response.content)
    return models.Document.model_validate_json(response.content)


def add_document(collection: str, text: str, format: DocumentFormat, title: str | None,
                 source: str | None) -> Call[Added]:
    return Call("POST", f"/v1/collections/{collection}/documents", _added,
                body=_document_body(text, format, title, source))


def upload(collection: str, path: Path, title: str | None) -> Call[Added]:
    """A file (.txt, .md, .html, .pdf), read by its suffix on the server."""
    return Call("POST", f"/v1/collections/{collection}/documents", _added,
                files={"file": (path.name, path.read_bytes())},
                data=None if title is None else {"title": title})


def get_ingestion(collection: str, ingestion_id: str) -> Call[models.Ingestion]:
    return Call("GET", f"/v1/collections/{collection}/ingestions/{ingestion_id}",
                _model(models.Ingestion))


def replace_document(collection: str, document_id: str, text: str, format: DocumentFormat,
                     title: str | None, source: str | None) -> Call[Added]:
    return Call("PUT", f"/v1/collections/{collection}/documents/{document_id}",
                _added, body=_document_body(text, format, title, source))


def list_documents(collection: str, limit: int,
                   before: str | None) -> Call[models.DocumentPage]:
    return Call("GET", f"/v1/collections/{collection}/documents", _model(models.DocumentPage),
                params={"limit": limit, "before": before})


def get_document(collection: str, document_id: str) -> Call[models.Document]:
    return Call("GET", f"/v1/collections/{collection}/documents/{document_id}",
                _model(models.Document))


def delete_document(collection: str, document_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/collections/{collection}/documents/{document_id}", _nothing)


def search(collection: str, query: str, k: int, mode: SearchMode) -> Call[models.SearchResults]:
    return Call("GET", f"/v1/collections/{collection}/search", _model(models.SearchResults),
                params={"q": query, "k": k, "mode": mode})


@dataclass
class EventReader:
    """Server-sent events to typed events, fed one line at a time."""

    name: str | None = None
    data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Iterator[models.Event]:
        if line == "":
            if self.name is not None:
                yield models.event_of(self.name, json.loads("\n".join(self.data)))
            self.name, self.data = None, []
        elif not line.startswith(":"):  # a comment: the server's keep-alive
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self.name = value
            elif name == "data":
                self.data.append(value)
