"""Documented shapes of operator answers that routes build as plain dicts (alerts, maintenance).

Declared as `responses={200: {"model": ...}}` (documentation, not a filter: a route may add
fields), so /openapi.json describes them and the HTTP fuzzing checks every answer against them.
"""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class AlertRow(_Open):
    id: int
    rule: str = Field(description="the rule that raised it, e.g. offline, camera_tamper")
    device_id: str | None = Field(description="null for IOC-wide alerts (the IOC lost its broker)")
    commune: str | None
    village: str | None
    kind: str | None
    severity: Literal["info", "warning", "critical"]
    state: Literal["open", "acked", "resolved"]
    message: str
    details: dict[str, Any]
    affected: list[str] = Field(description="devices down below this one: one incident, not many alerts")
    since: datetime = Field(description="when the condition began")
    opened_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    comment: str | None
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="null: resolved by itself when the condition cleared")
    assignee: str | None
    assigned_at: datetime | None
    escalation_level: int
    notify_count: int


class AlertPage(_Open):
    items: list[AlertRow]
    next_cursor: str | None


class AlertStep(_Open):
    at: datetime
    action: str = Field(description="opened, notified, acknowledged, assigned, escalated, resolved, ...")
    actor: str | None
    details: dict[str, Any] | None


class AlertDetail(AlertRow):
    history: list[AlertStep]


class MaintenanceRow(_Open):
    id: int
    commune: str
    device_id: str | None
    village: str | None
    kind: str | None
    starts_at: datetime
    ends_at: datetime
    rrule: str | None = Field(description="RFC 5545 RRULE; occurrences on the commune's clock")
    reason: str
    created_by: str | None
    created_at: datetime
    active: bool = Field(description="whether an occurrence covers now")


class MaintenancePage(_Open):
    items: list[MaintenanceRow]
    next_cursor: str | None


def ok(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """`responses=` documenting a route's success answer as `model`."""
    return {status: {"model": model}}
