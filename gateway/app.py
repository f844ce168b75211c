"""The gateway's FastAPI application: factory and lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import deps, errors, openapi, security
from gateway.routes import (
    alerts,
    audit,
    auth,
    broadcasts,
    criteria,
    dashboard,
    devices,
    health,
    live,
    maintenance,
    media,
    ngsi,
    ngsi_subscriptions,
    reports,
    share,
    upstreams,
    users,
)
from gateway.settings import GatewaySettings
from services.db import pool
from services.workers import Tasks

log = logging.getLogger(__name__)

DESCRIPTION = """
Commune IOC — the operations center of a smart commune.

* **Operators** sign in with `POST /api/v1/auth/login` and use `/api/v1/...`.
* **The province and neighbouring communes** pull shared data with an API key (`Authorization: Bearer <key>`)
  from `/api/share/v1/...` and the NGSI-LD view under `/ngsi-ld/v1/...`.
  *Tỉnh và các xã lân cận lấy dữ liệu chia sẻ bằng khóa API.*

Errors are `{"error": {"code": "...", "message": "..."}}`.
"""


def _stop_server(app: FastAPI) -> None:
    stop = getattr(app.state, "stop_server", None)
    if stop is not None:
        stop()


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the app: every router, the start/stop hooks, and the middleware, named here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The app's workers (the live feed's `live.tail` and `live.sessions`, started by the hooks)
        # run in one task group owned here. The first that fails turns /readyz to 503 and stops the
        # server (`app.state.stop_server`, given by `ioc gateway`), which then exits non-zero.
        app.state.pool.open(wait=False)
        try:
            async with Tasks(on_failure=lambda _: _stop_server(app)) as workers:
                app.state.workers = workers
                for hook in app.state.startup:
                    await hook(app)
                try:
                    yield
                finally:
                    for hook in reversed(app.state.shutdown):
                        await hook(app)
        finally:
            app.state.pool.close()

    # /docs is the gateway's own page (gateway/routes/dashboard.py): FastAPI's loads Swagger UI from a CDN.
    app = FastAPI(
        title="Commune IOC",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    assert settings.database_url is not None
    app.state.pool = pool(
        settings.database_url, max_size=settings.db_pool_size, name="ioc-gateway", timeout=settings.db_wait_s
    )
    # Requests wait for a connection here, on the event loop (gateway.deps.get_conn).
    app.state.db_gate = deps.connection_gate(settings.db_pool_size, settings.db_wait_s, settings.http_queue)
    # Route modules may register async start/stop hooks (live feed listener, ...).
    app.state.startup = []
    app.state.shutdown = []
    errors.install(app)
    live.setup(app)  # the live-feed tailer, started and stopped with the app
    dashboard.setup(app)  # /ui static files, before any route that could shadow them
    for module in (
        alerts,
        audit,
        auth,
        broadcasts,
        criteria,
        dashboard,
        devices,
        health,
        live,
        maintenance,
        media,
        ngsi,
        ngsi_subscriptions,
        reports,
        share,
        upstreams,
        users,
    ):
        app.include_router(module.router)
    openapi.install(app)  # /openapi.json with each route's error answers and security
    share.setup(app)  # the audit middleware of sharing calls
    criteria.setup(app)  # the criteria file is checked at start
    # Last, so its middleware is outermost: every answer (429s, CORS, errors) gets the headers.
    security.install(app)
    return app
