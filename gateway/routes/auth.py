"""Operator sign-in: a bearer token and the same token as an HttpOnly cookie."""

import anyio.from_thread
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from gateway import params
from gateway.deps import SESSION_COOKIE, Conn, CurrentUser, bearer
from services import auth

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], dependencies=[Depends(params.known_only)])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    token: str
    role: str
    username: str


class Me(BaseModel):
    username: str
    role: str
    communes: list[str] | None


@router.post("/login", response_model=LoginOut)
def login(body: LoginIn, request: Request, response: Response, conn: Conn) -> LoginOut:
    """Sign in; the token works as `Authorization: Bearer` and is also set as a cookie."""
    # The failed-login counter must be saved even though the login is refused.
    try:
        token, user = auth.login(conn, body.username, body.password)
    finally:
        conn.commit()
    settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        max_age=int(auth.SESSION_TTL.total_seconds()),
        path="/",
    )
    return LoginOut(token=token, role=user.role, username=user.username)


@router.post("/logout", status_code=204)
def logout(request: Request, response: Response, conn: Conn, user: CurrentUser) -> Response:
    """End this session; its open live feeds (`/ws/live`) are closed too, on every gateway."""
    token = bearer(request) or request.cookies.get(SESSION_COOKIE)
    if token:
        auth.logout(conn, token)
        live = getattr(request.app.state, "live", None)
        if live is not None:
            # This gateway's sockets now; the other gateways' within their session check.
            anyio.from_thread.run_sync(live.sign_out, auth.token_hash(token))
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=Me)
def me(user: CurrentUser) -> Me:
    """Who is signed in."""
    return Me(username=user.username, role=user.role, communes=list(user.communes) if user.communes else None)
