"""Keyset pagination shared by every list route: opaque cursors that never skip or repeat rows.

A cursor is base64url JSON of the sort key of the last row returned; the next page asks for
rows strictly after it. Sort keys must be unique (end them with the primary key).
"""

import base64
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson

from services import timerange
from services.errors import InvalidInput

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
R = TypeVar("R")


def encode(key: Sequence[Any]) -> str:
    raw = orjson.dumps([v.isoformat() if isinstance(v, datetime) else v for v in key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, types: Sequence[type]) -> list[Any]:
    """The sort key in a cursor, each value converted to the given type; 400 when malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for v, t in zip(values, types, strict=True):
            if t is datetime:
                out.append(timerange.check("cursor", datetime.fromisoformat(v)))
            elif t is int:
                if type(v) is not int:
                    raise ValueError("not an integer")
                out.append(v)
            else:
                out.append(t(v))
        return out
    except (ValueError, TypeError, orjson.JSONDecodeError) as err:
        raise InvalidInput(
            f"cursor {cursor[:40]!r} is malformed; use next_cursor from a previous page"
        ) from err


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def page(rows: list[R], limit: int, key: Callable[[R], Sequence[Any]]) -> tuple[list[R], str | None]:
    """Given up to limit+1 rows fetched, the page and the cursor of the next one (None when last)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode(key(rows[-1]))
    return rows, None
