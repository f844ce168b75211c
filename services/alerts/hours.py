"""Daily spans of local time ('22:00-06:00'): quiet hours of notifications, on hours of e-boards.
A span may cross midnight. Pure."""

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any


def _hhmm(v: str) -> time:
    return datetime.strptime(v.strip(), "%H:%M").time()


def parse_hours(v: Any) -> tuple[time, time]:
    """'22:00-06:00' or {start, end} -> (start, end); the span may cross midnight."""
    if isinstance(v, Mapping):
        return _hhmm(str(v["start"])), _hhmm(str(v["end"]))
    return _parse_span(str(v))


@lru_cache(maxsize=64)
def _parse_span(v: str) -> tuple[time, time]:
    start, _, end = v.partition("-")
    return _hhmm(start), _hhmm(end)


def in_hours(span: tuple[time, time], local: datetime) -> bool:
    start, end = span
    t = local.time()
    return start <= t < end if start <= end else (t >= start or t < end)


def hours_end(span: tuple[time, time], local: datetime) -> datetime:
    """The next end of the span after `local` (same tz)."""
    end = local.replace(hour=span[1].hour, minute=span[1].minute, second=0, microsecond=0)
    return end if end > local else end + timedelta(days=1)
