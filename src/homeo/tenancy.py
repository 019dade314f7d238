"""The tenant that the current task works for, as a context variable.

Set where work enters (the worker for a run, the API for a request) and read
by parts that sit below any tenant argument, such as the response cache, so
that nothing they keep is shared between tenants."""

from __future__ import annotations

from contextvars import ContextVar

current_tenant: ContextVar[str | None] = ContextVar("homeo_current_tenant", default=None)
