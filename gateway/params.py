"""Request parameters every operator route shares: bounded times, and unknown parameters refused.

Share routes refuse an unknown query parameter through their `extra="forbid"` query models; the
operator routes declare theirs one by one, so `known_only`, a router dependency, refuses any
query parameter the route does not declare, with the same 400 (`extra_forbidden`). A typo
(`?comune=`) is then an error instead of a silently unfiltered list.
"""

from datetime import datetime
from typing import Annotated, Any, get_args

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel

from services import timerange
from services.errors import InvalidInput


def _bounded(value: datetime) -> datetime:
    try:
        return timerange.check("time", value)
    except InvalidInput as err:
        raise ValueError(
            f"out of range: give a time between {timerange.EARLIEST:%Y-%m-%d} and {timerange.LATEST:%Y-%m-%d}"
        ) from err


# A datetime parameter or body field kept within services.timerange's bounds (as UTC).
Time = Annotated[datetime, AfterValidator(_bounded)]


def query_names(dependant: Dependant) -> set[str]:
    """The query parameter names a route and its dependencies declare (a query model's field aliases)."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        d = stack.pop()
        stack.extend(d.dependencies)
        for field in d.query_params:
            annotation: Any = field.field_info.annotation
            models = [a for a in (annotation, *get_args(annotation)) if isinstance(a, type)]
            model = next((m for m in models if issubclass(m, BaseModel)), None)
            if model is None:
                names.add(field.alias)
            else:
                names.update(f.alias or n for n, f in model.model_fields.items())
    return names


def _declared(route: APIRoute) -> frozenset[str]:
    # Kept on the route itself (routes compare by value, so they cannot key a dict).
    names: frozenset[str] | None = route.__dict__.get("_ioc_query_names")
    if names is None:
        names = route.__dict__["_ioc_query_names"] = frozenset(query_names(route.dependant))
    return names


def known_only(request: Request) -> None:
    """Refuses (400) a query parameter the matched route does not declare."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _declared(route)
    unknown = [(k, v) for k, v in request.query_params.multi_items() if k not in declared]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", k),
                    "msg": "Extra inputs are not permitted",
                    "input": v,
                }
                for k, v in unknown
            ]
        )
