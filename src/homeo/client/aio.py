"""`AsyncHomeo`, the asynchronous client: `Homeo`'s methods, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from homeo.client import calls, models
from homeo.client.calls import Call, DocumentFormat, Retries, SearchMode
from homeo.client.errors import WaitTimeout
from homeo.client.sync import stops_waiting

T = TypeVar("T")


class AsyncHomeo:
    """A client of one homeo server, with one API key (its tenant's).

        async with AsyncHomeo("http://127.0.0.1:8000", "hk_...") as homeo:
            run = await homeo.runs.submit("echo", "hello")
            print((await homeo.runs.wait(run.id)).output)

    `retries` says how 429 and 503 answers are retried; `sleep` and `clock`
    are what it waits and times with (tests pass their own)."""

    def __init__(self, url: str, key: str, *, timeout: float = 30.0,
                 retries: Retries = Retries(),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport,
                                      headers={"authorization": f"Bearer {key}"})
        self.retries = retries
        self.sleep = sleep
        self.clock = clock
        self.runs = Runs(self)
        self.agents = Agents(self)
        self.keys = Keys(self)
        self.collections = Collections(self)

    async def send(self, call: Call[T]) -> T:
        """Send `call`, retrying as `retries` says; its answer read, or an APIError."""
        attempt = 0
        while True:
            response = await self.http.send(call.request(self.http))
            delay = self.retries.delay(attempt, response)
            if delay is None:
                return call.read(calls.checked(response))
            await response.aclose()
            await self.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncHomeo:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Runs:
    def __init__(self, client: AsyncHomeo) -> None:
        self._client = client

    async def submit(self, agent: str, input: str, *,
               idempotency_key: str | None = None,
               user: str | None = None) -> models.RunAccepted:
        """Queue a run. Without `idempotency_key` the SDK makes one, so its own
        retries never start a second run. `user`: the person it works for (an
        agent with `memory: {scope: user}` needs one; a JWT caller is its own)."""
        return await self._client.send(calls.submit(agent, input, idempotency_key, user))

    async def get(self, run_id: str) -> models.RunDetail:
        return await self._client.send(calls.get_run(run_id))

    async def page(self, *, status: str | None = None, agent: str | None = None, limit: int = 50,
             before: str | None = None) -> models.RunPage:
        return await self._client.send(calls.list_runs(status, agent, limit, before))

    async def list(self, *, status: str | None = None, agent: str | None = None,
             page_size: int = 50) -> AsyncIterator[models.Run]:
        """Every run, newest first, fetching a page at a time as you iterate."""
        before = None
        while True:
            page = await self.page(status=status, agent=agent, limit=page_size, before=before)
            for run in page.runs:
                yield run
            if page.next_before is None:
                return
            before = page.next_before

    async def wait(self, run_id: str, timeout: float = 60.0, *,
             poll_seconds: float = 0.2) -> models.RunDetail:
        """The run once it is final or waits for a person; WaitTimeout after `timeout`."""
        deadline = self._client.clock() + timeout
        while True:
            run = await self.get(run_id)
            if stops_waiting(run):
                return run
            if self._client.clock() >= deadline:
                raise WaitTimeout(run_id, run.status, timeout)
            await self._client.sleep(poll_seconds)

    async def events(self, run_id: str) -> AsyncIterator[models.Event]:
        """The run's events as they happen, ending after its `EndEvent`."""
        client = self._client
        async with client.http.stream("GET", calls.events_path(run_id)) as response:
            if response.status_code >= 400:
                await response.aread()
                calls.checked(response)
            reader = calls.EventReader()
            async for line in response.aiter_lines():
                for event in reader.feed(line):
                    yield event

    async def cancel(self, run_id: str) -> models.Run:
        return await self._client.send(calls.cancel(run_id))

    async def approve(self, run_id: str, *, comment: str = "",
                arguments: dict[str, Any] | None = None) -> models.Run:
        """Approve the tool call the run waits on (with `arguments`: run it with those)."""
        return await self._client.send(calls.approve(run_id, comment, arguments))

    async def reject(self, run_id: str, *, comment: str = "") -> models.Run:
        return await self._client.send(calls.reject(run_id, comment))

    async def input(self, run_id: str, answer: str) -> models.Run:
        """Answer the question the run asked."""
        return await self._client.send(calls.give_input(run_id, answer))

    async def fork(self, run_id: str, from_step: int, *, state: dict[str, Any] | None = None,
             idempotency_key: str | None = None) -> models.Run:
        return await self._client.send(calls.fork(run_id, from_step, state, idempotency_key))

    async def step(self, run_id: str, seq: int) -> models.StepState:
        return await self._client.send(calls.step(run_id, seq))


class Agents:
    def __init__(self, client: AsyncHomeo) -> None:
        self._client = client

    async def list(self) -> list[models.Agent]:
        return await self._client.send(calls.list_agents())

    async def versions(self, name: str) -> models.AgentVersions:
        """Every version of the agent, oldest first, with its KPIs."""
        return await self._client.send(calls.agent_versions(name))


class Keys:
    """The tenant's API keys; every call needs an admin key."""

    def __init__(self, client: AsyncHomeo) -> None:
        self._client = client

    async def list(self) -> list[models.Key]:
        return await self._client.send(calls.list_keys())

    async def create(self, name: str = "", role: models.KeyRole = "member") -> models.CreatedKey:
        return await self._client.send(calls.create_key(name, role))

    async def revoke(self, key_id: str) -> models.Key:
        return await self._client.send(calls.revoke_key(key_id))


class Collections:
    def __init__(self, client: AsyncHomeo) -> None:
        self._client = client

    async def list(self) -> list[models.Collection]:
        return await self._client.send(calls.list_collections())

    async def delete(self, name: str) -> None:
        await self._client.send(calls.delete_collection(name))

    async def add(self, collection: str, text: str, *, format: DocumentFormat = "markdown",
            title: str | None = None, source: str | None = None) -> calls.Added:
        """Add a document (the collection is made on first use): the Document,
        or, for a text longer than the server indexes at once, the Ingestion
        a worker indexes (follow it with `ingestion`)."""
        return await self._client.send(
            calls.add_document(collection, text, format, title, source))

    async def upload(self, collection: str, path: str | Path, *,
               title: str | None = None) -> calls.Added:
        return await self._client.send(calls.upload(collection, Path(path), title))

    async def ingestion(self, collection: str, ingestion_id: str) -> models.Ingestion:
        """An accepted document's status and progress."""
        return await self._client.send(calls.get_ingestion(collection, ingestion_id))

    async def replace(self, collection: str, document_id: str, text: str, *,
                format: DocumentFormat = "markdown", title: str | None = None,
                source: str | None = None) -> calls.Added:
        return await self._client.send(
            calls.replace_document(collection, document_id, text, format, title, source))

    async def documents(self, collection: str, *,
                        page_size: int = 100) -> AsyncIterator[models.Document]:
        """Its documents, newest first, a page at a time as you iterate."""
        before = None
        while True:
            page = await self._client.send(calls.list_documents(collection, page_size, before))
            for document in page.documents:
                yield document
            if page.next_before is None:
                return
            before = page.next_before

    async def document(self, collection: str, document_id: str) -> models.Document:
        """One document, with its text."""
        return await self._client.send(calls.get_document(collection, document_id))

    async def delete_document(self, collection: str, document_id: str) -> None:
        await self._client.send(calls.delete_document(collection, document_id))

    async def search(self, collection: str, query: str, *, k: int = 10,
               mode: SearchMode = "hybrid") -> models.SearchResults:
        return await self._client.send(calls.search(collection, query, k, mode))
