"""Who can be given an alert: the users an operator or technician may pick when assigning."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from gateway import params
from gateway.deps import Conn, Technician
from services import auth, paging

router = APIRouter(prefix="/api/v1", tags=["users"], dependencies=[Depends(params.known_only)])


class UserRow(BaseModel):
    username: str
    role: str = Field(description="admin, operator, technician or viewer")
    communes: list[str] | None = Field(description="the communes the user may see; null: every commune")


class UserPage(BaseModel):
    items: list[UserRow]
    next_cursor: str | None


@router.get("/users", response_model=UserPage)
def list_users(
    conn: Conn,
    user: Technician,
    limit: Annotated[int | None, Query(description=f"1..{paging.MAX_LIMIT}")] = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Active users by username (`username, role, communes`), for the assign picker; the roles that
    may assign alerts (admin, operator, technician). A user limited to some communes sees the users
    who share at least one of them and those with every commune. Disabled users are left out."""
    items, next_cursor = auth.list_users(
        conn, communes=user.communes, limit=paging.check_limit(limit), cursor=cursor
    )
    return {"items": items, "next_cursor": next_cursor}
