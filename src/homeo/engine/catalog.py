"""Find the agent a run names. Definitions live in the store, so every worker
process (on any host) builds the same agent; built agents are cached until
their definition changes.

The store follows the agents folder: `publish` writes the folder's agents for
a tenant and removes the ones whose file is gone. A run is built from the
definition stored when it first starts, so a queued run of an edited agent
runs the edited agent, and a queued run of a removed agent fails saying so.

Every stored definition is a version (store `put_agent`). A run executes one
version: the one it was submitted with (an evaluation, a canary), or the one
current when it was first claimed. A run resumed after the agent changed (a
crash, a wait for approval) goes on with the version it started with, so one
run never mixes two definitions.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING

from homeo.config import McpServer
from homeo.engine.agents import Agent, AgentError, AgentSpec, aload_tools, build_agent
from homeo.engine.errors import RetryableError
from homeo.llm.base import ModelError
from homeo.llm.resolve import ModelCatalog
from homeo.mcp.errors import McpUnavailable
from homeo.store.base import Store
from homeo.tools.permissions import ToolGate

if TYPE_CHECKING:  # the `mcp` client is a slow import: loaded when an agent uses MCP tools
    from homeo.mcp.clients import McpClients


class AgentCatalog:
    def __init__(
        self,
        store: Store,
        models: ModelCatalog,
        *,
        mcp_servers: dict[str, McpServer] | None = None,
        mcp: McpClients | None = None,
        gate: ToolGate | None = None,
    ) -> None:
        """`mcp` holds the sessions of the MCP servers in `mcp_servers` that the
        built agents' tools call (the runtime closes it); `gate` checks every
        tool call against the operator's tool policy."""
        self.store = store
        self.models = models
        self.gate = gate or ToolGate()
        self.mcp_servers = mcp_servers or {}
        self._mcp = mcp
        # Built agents by tenant, name and definition: versions a canary or an
        # evaluation runs side by side are each built once.
        self._built: dict[tuple[str, str, str], Agent] = {}
        self._lock = threading.Lock()

    @property
    def mcp(self) -> McpClients:
        """The MCP sessions, made on first use."""
        with self._lock:
            if self._mcp is None:
                from homeo.mcp.clients import McpClients

                self._mcp = McpClients()
            return self._mcp

    def publish(
        self, tenant_id: str, specs: dict[str, AgentSpec], *, author: str = "folder"
    ) -> None:
        """Make the tenant's stored agents exactly `specs`: new ones are added,
        changed ones replaced (a new version by `author`), and the ones not in
        `specs` removed (their versions are kept)."""
        stored = {record.name: record for record in self.store.list_agents(tenant_id)}
        for spec in specs.values():
            definition = spec.model_dump(mode="json")
            record = stored.get(spec.name)
            if (record is None or record.version is None
                    or _fingerprint(record.spec) != _fingerprint(definition)):
                self.store.put_agent(tenant_id, spec.name, definition, author=author)
        for name in stored.keys() - specs.keys():
            self.store.delete_agent(tenant_id, name)

    async def aget(self, tenant_id: str, name: str, version: str | None = None) -> Agent:
        """The agent's `version`, or (None) the agent as stored now, built off
        the caller's loop: the store read and the model's loading run in
        threads, MCP listings are awaited. AgentError if it cannot be built;
        RetryableError if an MCP server it uses cannot be reached now."""
        if version is not None:
            kept = await asyncio.to_thread(self.store.get_agent_version, tenant_id, name, version)
            if kept is None:
                raise AgentError(f"agent {name!r} has no version {version!r} for tenant"
                                 f" {tenant_id!r}; `homeo agents versions {name}` lists them")
            definition = kept.spec
        else:
            record = await asyncio.to_thread(self.store.get_agent, tenant_id, name)
            if record is None:
                raise AgentError(
                    f"agent {name!r} is not defined for tenant {tenant_id!r}: its YAML file is"
                    " not in the agents folder (HOMEO_AGENTS_DIR); put it back and restart homeo"
                )
            definition = record.spec
        fingerprint = _fingerprint(definition)
        with self._lock:
            cached = self._built.get((tenant_id, name, fingerprint))
            if cached is not None:
                return cached
        try:
            spec = AgentSpec.model_validate(definition)
        except ValueError as error:
            raise AgentError(f"agent {name!r}: its stored definition is invalid: {error}") from None
        try:
            model = await asyncio.to_thread(self.models.get, spec.model, tenant_id)
        except ModelError as error:
            raise AgentError(f"{spec.origin}: {error}") from None
        try:
            tools = await aload_tools(spec, self.mcp_servers, lambda: self.mcp)
        except McpUnavailable as error:
            raise RetryableError(str(error)) from None
        descriptions = {}
        for other in spec.agents:
            found = await asyncio.to_thread(self.store.get_agent, tenant_id, other)
            if found is None:
                raise AgentError(f"{spec.origin}: agents: agent {other!r} is not defined")
            descriptions[other] = str(found.spec.get("description", ""))
        agent = build_agent(spec, model, self.gate, tools=tools,
                            agent_descriptions=descriptions)
        with self._lock:
            self._built[(tenant_id, name, fingerprint)] = agent
        return agent

    async def aclose(self) -> None:
        """Close the MCP sessions the agents' tools opened."""
        with self._lock:
            opened = self._mcp
        if opened is not None:
            await opened.aclose()


def _fingerprint(definition: object) -> str:
    return json.dumps(definition, sort_keys=True)
