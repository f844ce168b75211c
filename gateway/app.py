"""The gateway's FastAPI application: factory and lifespan."""

import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import errors, routes
from gateway.settings import GatewaySettings
from services.db import pool

log = logging.getLogger(__name__)

DESCRIPTION = """
Commune IOC — the operations center of a smart commune.

* **Operators** sign in with `POST /api/v1/auth/login` and use `/api/v1/...`.
* **The district and province** pull shared data with an API key (`Authorization: Bearer <key>`)
  from `/api/share/v1/...` and the NGSI-LD view under `/ngsi-ld/v1/...`.
  *Huyện và tỉnh lấy dữ liệu chia sẻ bằng khóa API.*

Errors are `{"error": {"code": "...", "message": "..."}}`.
"""


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the app; every module in gateway/routes with a `router` is mounted."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool.open(wait=False)
        for hook in app.state.startup:
            await hook(app)
        try:
            yield
        finally:
            for hook in reversed(app.state.shutdown):
                await hook(app)
            app.state.pool.close()

    app = FastAPI(title="Commune IOC", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    assert settings.database_url is not None
    app.state.pool = pool(settings.database_url, max_size=16, name="ioc-gateway")
    # Route modules may register async start/stop hooks (live feed listener, ...).
    app.state.startup = []
    app.state.shutdown = []
    errors.install(app)
    for info in sorted(pkgutil.iter_modules(routes.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"gateway.routes.{info.name}")
        if hasattr(module, "setup"):
            module.setup(app)
        if hasattr(module, "router"):
            app.include_router(module.router)
    return app
