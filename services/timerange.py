"""Times and ranges given by callers (query parameters, bodies, cursors): parsed once, kept sane.

Python's datetime ends at year 1 and 9999 and PostgreSQL's timestamptz at 294276; a time near
either end of Python's range made the arithmetic of a route (`to - 24 h`, bucket alignment,
`+ width`) raise OverflowError, or PostgreSQL refuse a shifted value, and the caller got a 500.
Every time a caller gives is therefore kept within [EARLIEST, LATEST): far wider than any data the
IOC holds, far enough from both ends that the widest arithmetic a route does (a range, a bucket of
at most MAX_BUCKET) stays representable. Outside it, the answer is a 400 naming the parameter.
"""

import re
from datetime import UTC, datetime, timedelta

from services.errors import InvalidInput

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_BUCKET = timedelta(days=36600)  # a century: wide enough for any report, safe to add
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BUCKET_RE = re.compile(r"([1-9][0-9]{0,8})([smhd])")
# A "+" in a query string arrives as a space when the client did not escape it.
_PLUS_AS_SPACE = re.compile(r"(.*T[0-9:.]+) ([0-9]{2}(?::?[0-9]{2})?)")
_BOUNDS = f"between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"


def check(name: str, dt: datetime) -> datetime:
    """`dt` as UTC (naive means UTC) when within [EARLIEST, LATEST); 400 naming `name` otherwise."""
    try:
        utc = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        utc = None  # shifted to UTC, past year 1 or 9999
    if utc is None or not EARLIEST <= utc < LATEST:
        raise InvalidInput(f"{name}={dt.isoformat()} is out of range: give a time {_BOUNDS}")
    return utc


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 time (date, or date and time; no offset means UTC) within range, as UTC; 400 otherwise."""
    text = value.strip()
    m = _PLUS_AS_SPACE.fullmatch(text)
    if m:
        text = f"{m[1]}+{m[2]}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as err:
        raise InvalidInput(
            f"{name}={value!r} is not an ISO 8601 time; give e.g. 2026-01-31T08:00:00+07:00 or 2026-01-31"
        ) from err
    return check(name, dt)


def time_range(
    start: str | None,
    end: str | None,
    now: datetime,
    *,
    default_span: timedelta,
    max_span: timedelta | None = None,
    names: tuple[str, str] = ("from", "to"),
) -> tuple[datetime, datetime]:
    """`[start, end)` from two optional query values: end defaults to now, start to end - default_span;
    start must be before end, and at most max_span apart; 400 naming the parameter otherwise."""
    t1 = parse_time(names[1], end) if end else now
    t0 = parse_time(names[0], start) if start else t1 - default_span
    if t0 >= t1:
        raise InvalidInput(f"{names[0]} ({t0.isoformat()}) must be before {names[1]} ({t1.isoformat()})")
    if max_span is not None and t1 - t0 > max_span:
        raise InvalidInput(
            f"{names[0]} and {names[1]} are more than {max_span.days} days apart; ask for a shorter range"
        )
    return t0, t1


def parse_bucket(value: str, name: str = "bucket") -> timedelta:
    """A bucket width like 30s, 5m, 1h, 1d, at most MAX_BUCKET; 400 otherwise."""
    m = _BUCKET_RE.fullmatch(value.strip())
    if not m:
        raise InvalidInput(f"{name}={value!r} is not a width like 30s, 5m, 1h or 1d")
    width = timedelta(seconds=int(m[1]) * _UNITS[m[2]])
    if width > MAX_BUCKET:
        raise InvalidInput(f"{name}={value!r} is wider than {MAX_BUCKET.days}d")
    return width
