"""Mount the dashboard on the app: its stylesheet and its routers."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from homeo.api.ui import agents, autonomic, memory, runs, session, slo, system
from homeo.api.ui.render import STATIC, STATIC_PATH


def install(app: FastAPI) -> None:
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(session.router)
    app.include_router(runs.router)
    app.include_router(agents.router)
    app.include_router(slo.router)
    app.include_router(system.router)
    app.include_router(autonomic.router)
    app.include_router(memory.router)
