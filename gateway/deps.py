"""Request dependencies: a database connection and the signed-in operator."""

from collections.abc import Callable, Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request

from services import auth
from services.auth import User
from services.errors import Forbidden, Unauthorized

SESSION_COOKIE = "ioc_session"


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    """A pooled connection for the request; committed when the route returns normally."""
    with request.app.state.pool.connection() as conn:
        yield conn


Conn = Annotated[psycopg.Connection, Depends(get_conn)]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def current_user(request: Request, conn: Conn) -> User:
    token = bearer(request) or request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("sign in first: POST /api/v1/auth/login")
    user = auth.session_user(conn, token)
    request.state.actor = user.username
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(*roles: str) -> Callable[[User], User]:
    """A dependency that admits only the given roles."""

    def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {user.role}")
        return user

    return check


Admin = Annotated[User, Depends(require("admin"))]
Operator = Annotated[User, Depends(require("admin", "operator"))]
Technician = Annotated[User, Depends(require("admin", "operator", "technician"))]


def check_commune(user: User, commune_id: str | None) -> None:
    """A user limited to some communes may not ask for another."""
    if commune_id is not None and user.communes is not None and commune_id not in user.communes:
        raise Forbidden(f"you have no access to commune {commune_id}")
