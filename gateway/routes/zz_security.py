"""Installs the gateway's HTTP hardening (gateway/security.py) around every route.

Named to load last, so its middleware wraps what other route modules add.
"""

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway.security import LoginLimiter, LoginRateLimit, SecurityHeaders


def setup(app: FastAPI) -> None:
    settings = app.state.settings
    origins = list(settings.cors_origins)
    # Closed by default: without allowed origins no CORS header is ever sent, so browsers
    # keep other sites' pages from reading the API.
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            allow_credentials=False,
            max_age=600,
        )
    app.state.login_limiter = LoginLimiter()
    app.add_middleware(LoginRateLimit, limiter=app.state.login_limiter)
    # Added last, so outermost: 429s and CORS answers get the headers too.
    app.add_middleware(SecurityHeaders, cookie_secure=settings.cookie_secure, allowed_origins=origins)
