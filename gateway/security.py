"""HTTP hardening as plain ASGI middleware: security headers, secure cookies, WebSocket origin
check, and a limit on failed sign-ins per client address and per username; `install` wires them
with the CSRF guard, the body limits and the load limit (gateway.csrf, body_limits, load_shed)."""

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway import input_guard
from gateway.admission import Slots
from gateway.body_limits import BodyGuard
from gateway.csrf import CsrfGuard
from gateway.load_shed import LoadShed
from services import media

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOGIN_PATH = "/api/v1/auth/login"

# The dashboard needs nothing from elsewhere (SPEC: no internet). Inline style attributes are
# allowed because map libraries set them; scripts only from the gateway itself.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class SecurityHeaders:
    """Adds security headers to every HTTP response; marks cookies Secure when served over TLS;
    refuses WebSocket handshakes from foreign web pages (a cookie would otherwise ride along)."""

    def __init__(
        self, app: ASGIApp, *, cookie_secure: bool = False, allowed_origins: list[str] | None = None
    ) -> None:
        self.app = app
        self.cookie_secure = cookie_secure
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins or []}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if not self._origin_ok(scope):
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        api = path.startswith(("/api/", "/ngsi-ld/"))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])]
                present = {k.lower() for k, _ in headers}
                extra = {**HEADERS, "content-security-policy": CSP}
                if api:
                    extra["cache-control"] = "no-store"
                for name, value in extra.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if self.cookie_secure:
                    headers = [
                        (k, _secure_cookie(v) if k.lower() == b"set-cookie" else v) for k, v in headers
                    ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _origin_ok(self, scope: Scope) -> bool:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        origin = headers.get(b"origin")
        if origin is None:
            return True  # not a browser: it carries its own token
        o = origin.decode("latin-1").rstrip("/").lower()
        if o in self.allowed_origins:
            return True
        host = headers.get(b"host", b"").decode("latin-1").lower()
        return bool(host) and urlsplit(o).netloc == host


def _secure_cookie(value: bytes) -> bytes:
    if b"secure" in [p.strip().lower() for p in value.split(b";")]:
        return value
    return value + b"; Secure"


@dataclass
class LoginLimiter:
    """Failed sign-ins in a sliding window, per client address and per username.

    In memory, per gateway process: the database lockout (services.auth) already bounds
    guesses per existing user across all gateways; this adds a per-address limit and covers
    unknown usernames. The reverse proxy limits the request rate in front of it.
    """

    per_ip: int = 20
    per_user: int = 10
    window_s: float = 300.0
    max_keys: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _fails: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def retry_after(self, ip: str, username: str | None) -> int:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        now = self.clock()
        wait = 0.0
        checks = [(("ip", ip), self.per_ip)] + ([(("user", username), self.per_user)] if username else [])
        for key, limit in checks:
            q = self._recent(key, now)
            if len(q) >= limit:
                wait = max(wait, q[len(q) - limit] + self.window_s - now)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, ip: str, username: str | None) -> None:
        now = self.clock()
        keys = [("ip", ip)] + ([("user", username)] if username else [])
        for key in keys:
            self._fails.setdefault(key, deque()).append(now)
        while len(self._fails) > self.max_keys:
            del self._fails[next(iter(self._fails))]

    def succeeded(self, username: str | None) -> None:
        if username:
            self._fails.pop(("user", username), None)


class LoginRateLimit:
    """Answers 429 with Retry-After to sign-ins from an address or for a username with too
    many recent failures; counts the failures (401) the login route answers."""

    max_body = 64 * 1024

    def __init__(self, app: ASGIApp, *, limiter: LoginLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != LOGIN_PATH:
            await self.app(scope, receive, send)
            return
        body, more, messages = b"", True, []
        while more and len(body) <= self.max_body:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        ip = (scope.get("client") or ("unknown", 0))[0]
        username = _username(body)
        wait = self.limiter.retry_after(ip, username)
        if wait:
            await _too_many(send, wait)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        status: list[int] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, replay, send_wrapper)
        if status and status[0] == 401:
            self.limiter.failed(ip, username)
        elif status and status[0] == 200:
            self.limiter.succeeded(username)


def _username(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    name = data.get("username") if isinstance(data, dict) else None
    return name[:64] if isinstance(name, str) else None


async def _too_many(send: Send, retry_after_s: int) -> None:
    payload = json.dumps(
        {
            "error": {
                "code": "rate_limited",
                "message": f"too many failed sign-ins; try again in {retry_after_s} s",
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(retry_after_s).encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def install(app: FastAPI) -> None:
    """Installs the HTTP hardening around every route; call it after everything else is added."""
    settings = app.state.settings
    origins = list(settings.cors_origins)
    input_guard.install(app)  # innermost: limits and audit see its 400s
    app.state.login_limiter = LoginLimiter()
    app.add_middleware(LoginRateLimit, limiter=app.state.login_limiter)
    # Outside the login limiter and the audit: a request shed or refused here costs no thread
    # and no database connection.
    app.state.load_shed = Slots(
        size=settings.http_max_inflight, queue=settings.http_queue, wait_s=settings.http_queue_wait_s
    )
    app.add_middleware(LoadShed, slots=app.state.load_shed, refusal_delay_s=settings.http_refusal_delay_s)
    app.add_middleware(
        BodyGuard,
        max_bytes=settings.http_body_max_bytes,
        by_path=settings.http_body_max_bytes_by_path,
        notes={"/api/v1/media": media.too_large_text(settings.media_max_bytes)},
        timeout_s=settings.http_body_timeout_s,
        min_bps=settings.http_body_min_bps,
    )
    app.add_middleware(CsrfGuard, allowed_origins=origins, public_url=settings.public_url)
    # Outside the guards, so allowed pages can read their refusals. Closed by default: without
    # allowed origins no CORS header is ever sent, so browsers keep other sites' pages from
    # reading the API.
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            allow_credentials=False,
            max_age=600,
        )
    # Added last, so outermost: 429s, 503s and CORS answers get the headers too.
    app.add_middleware(SecurityHeaders, cookie_secure=settings.cookie_secure, allowed_origins=origins)
