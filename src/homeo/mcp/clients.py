"""Open MCP sessions, one per server, kept open and shared by every call.

Starting a stdio server takes seconds, so a session is opened on first use and
reused until the process closes it. The `mcp` client holds its transport (the
server process, or the HTTP session) inside anyio task groups, which must be
entered and exited by the same task: each session therefore lives in a task of
its own that enters `Client`, waits until it is told to stop, and exits it,
while calls from other tasks use the session meanwhile. These tasks run on an
event loop in a thread of its own, so every caller (the worker's loop, the
API's, plain sync code) shares the sessions, and a slow server never stalls
the caller's loop: the caller only awaits a future.

A session whose connection is gone (a stdio server exited, the HTTP
transport broke) is noticed when its message stream ends, and the next call
opens a new one (starting a stdio server again). A call already sent when the
connection breaks fails and is not sent again: the tool may have run.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
import mcp.types as mcp_types
from mcp import Client, StdioServerParameters
from mcp.client import Transport
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED

from homeo.config import McpServer
from homeo.mcp.errors import McpUnavailable
from homeo.tools.registry import ToolError

T = TypeVar("T")


class _Watched:
    """The stream of messages from the server, noting when it ends: a stdio
    server exited, or the HTTP transport closed."""

    def __init__(self, inner: Any, ended: asyncio.Event) -> None:
        self._inner = inner
        self._ended = ended

    @property
    def last_context(self) -> Any:  # the dispatcher reads the sender's context here
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended.set()
            raise

    async def aclose(self) -> None:
        self._ended.set()
        await self._inner.aclose()

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _Watched:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _WatchedTransport:
    """A transport of the `mcp` package whose read stream is `_Watched`."""

    def __init__(self, inner: Transport, ended: asyncio.Event) -> None:
        self._inner = inner
        self._ended = ended

    async def __aenter__(self) -> tuple[Any, Any]:
        read_stream, write_stream = await self._inner.__aenter__()
        return _Watched(read_stream, self._ended), write_stream

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._ended.set()
        return await self._inner.__aexit__(*exc_info)


def _client(server: McpServer, ended: asyncio.Event) -> Client:
    transport: Transport
    if server.url:
        transport = streamable_http_client(server.url)
    else:
        transport = stdio_client(StdioServerParameters(
            command=server.command[0], args=server.command[1:], env=server.env or None
        ))
    return Client(_WatchedTransport(transport, ended),
                  read_timeout_seconds=server.timeout_seconds)


def reason(error: BaseException) -> str:
    """What went wrong, without the task groups the MCP client wraps it in."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"


class _Session:
    """One open `Client`, entered and exited by its own task (`hold`)."""

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.client: Client | None = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self.ended = asyncio.Event()  # the server's side of the connection closed
        self.stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self.hold())

    async def hold(self) -> None:
        try:
            async with _client(self.server, self.ended) as client:
                self.client = client
                self.ready.set()
                await self.stop.wait()
        except Exception as error:  # it could not open, or its transport broke
            self.error = error
        finally:
            self.client = None
            self.ready.set()


class McpClients:
    """The MCP sessions of one process, by server (name and settings)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Touched only on the sessions' loop.
        self._sessions: dict[str, _Session] = {}
        self._holders: set[asyncio.Task[None]] = set()
        self._listings: dict[str, list[mcp_types.Tool]] = {}

    # --- for callers, in any thread or loop ---------------------------------
    async def list_tools(self, name: str, server: McpServer) -> list[mcp_types.Tool]:
        """The server's tools (read once, then remembered)."""
        return await asyncio.wrap_future(self._submit(self._list(name, server)))

    async def call_tool(
        self, name: str, server: McpServer, tool: str, arguments: dict[str, Any]
    ) -> mcp_types.CallToolResult:
        return await asyncio.wrap_future(self._submit(self._call(name, server, tool, arguments)))

    def connected(self, name: str, server: McpServer) -> bool:
        """Whether a session to the server is open and its connection not seen to close."""
        return self._submit(self._connected(name, server)).result()

    def list_tools_now(self, name: str, server: McpServer) -> list[mcp_types.Tool]:
        """`list_tools` for sync code; it blocks its thread, so never call it on a loop."""
        return self._submit(self._list(name, server)).result()

    def close(self) -> None:
        """Close every session (stdio servers are stopped) and the thread; a
        later call opens them again."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close_all(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # --- on the sessions' loop ----------------------------------------------
    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="homeo-mcp", daemon=True
                )
                self._thread.start()
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    @staticmethod
    def _key(name: str, server: McpServer) -> str:
        return json.dumps([name, server.model_dump()], sort_keys=True)

    async def _open(self, name: str, server: McpServer) -> Client:
        """The server's open session: the kept one while its connection lives,
        else a new one (a stdio server is started again)."""
        key = self._key(name, server)
        session = self._sessions.get(key)
        if session is not None and (session.task.done() or session.ended.is_set()):
            self._drop(key, session)
            session = None
        if session is None:
            session = self._sessions[key] = _Session(server)
            self._holders.add(session.task)
            session.task.add_done_callback(self._holders.discard)
        assert session is not None
        await session.ready.wait()
        if session.client is None:
            self._drop(key, session)
            error = session.error or RuntimeError("closed")
            raise McpUnavailable(f"cannot connect: {reason(error)}")
        return session.client

    async def _connected(self, name: str, server: McpServer) -> bool:
        session = self._sessions.get(self._key(name, server))
        return session is not None and session.client is not None and not (
            session.task.done() or session.ended.is_set())

    def _drop(self, key: str, session: _Session) -> None:
        session.stop.set()
        if self._sessions.get(key) is session:
            del self._sessions[key]

    def _broken(self, key: str, error: Exception) -> None:
        """Close the session if `error` says its connection is gone (not when the
        server answered with an error), so the next call opens a new one."""
        answered = isinstance(error, MCPError) and error.code != CONNECTION_CLOSED
        session = self._sessions.get(key)
        if session is not None and not answered:
            self._drop(key, session)

    async def _list(self, name: str, server: McpServer) -> list[mcp_types.Tool]:
        key = self._key(name, server)
        if key not in self._listings:
            try:
                client = await self._open(name, server)
                self._listings[key] = list((await client.list_tools()).tools)
            except Exception as error:
                self._broken(key, error)
                problem = str(error) if isinstance(error, McpUnavailable) else reason(error)
                raise McpUnavailable(
                    f"MCP server {name!r}: cannot list its tools: {problem}"
                ) from None
        return self._listings[key]

    async def _call(
        self, name: str, server: McpServer, tool: str, arguments: dict[str, Any]
    ) -> mcp_types.CallToolResult:
        try:
            client = await self._open(name, server)
        except McpUnavailable as error:
            raise McpUnavailable(f"MCP server {name!r}: calling {tool!r} failed: {error}") from None
        try:
            return await client.call_tool(tool, arguments)
        except Exception as error:
            self._broken(self._key(name, server), error)
            raise ToolError(
                f"MCP server {name!r}: calling {tool!r} failed: {reason(error)}"
            ) from None

    async def _close_all(self) -> None:
        for session in list(self._sessions.values()):
            session.stop.set()
        self._sessions.clear()
        self._listings.clear()
        await asyncio.gather(*self._holders, return_exceptions=True)
        # Whatever still waits (a call on a session that was opening) ends now,
        # so no caller awaits a loop that is about to stop.
        waiting = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
