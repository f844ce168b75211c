"""Validation of device MQTT payloads (SPEC §4).

Hand-written checks instead of a model per message: ingest parses tens of thousands of
messages a second on one core, and a dict lookup per field is what that budget allows.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MAX_PAYLOAD = 64 * 1024
# Deeper documents and more keys than any device sends; beyond these, every jsonb operation on the
# row (the merge into device_state, the live feed) costs in proportion, on every later status.
MAX_DEPTH = 32
MAX_KEYS = 1024
_MIN_MANY_KEYS = 4 * MAX_KEYS  # bytes: the shortest JSON with more keys (`"":0,` minus repeats)
MAX_FUTURE = timedelta(minutes=5)
SEVERITIES = ("info", "warning", "critical")


class BadPayload(Exception):
    """A message that goes to the dead-letter store; `reason` is a short stable label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _num(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v == v  # NaN is not a reading


def _nonneg(v: Any) -> bool:
    return _num(v) and v >= 0


def _pct(v: Any) -> bool:
    return _num(v) and 0 <= v <= 100


def _int(v: Any) -> bool:
    return type(v) is int or (type(v) is float and v.is_integer())


def _count(v: Any) -> bool:
    return _int(v) and v >= 0


def _bool(v: Any) -> bool:
    return type(v) is bool


def _str(v: Any) -> bool:
    return type(v) is str


def _str_or_int(v: Any) -> bool:
    return type(v) is str or type(v) is int


def _str_list(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _one_of(*values: str) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        return v in values

    check.__doc__ = "one of " + "/".join(values)
    return check


_EXPECT: dict[Callable[[Any], bool], str] = {
    _num: "a number",
    _nonneg: "a number >= 0",
    _pct: "a number 0-100",
    _int: "an integer",
    _count: "an integer >= 0",
    _bool: "true or false",
    _str: "a string",
    _str_or_int: "a string or integer",
    _str_list: "a list of strings",
}

FIELDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "speaker": {
        "volume": _pct,
        "playing": _bool,
        "source": _str,
        "rssi_dbm": _num,
        "power": _one_of("mains", "battery", "solar"),
        "battery_pct": _pct,
        "temperature_c": _num,
        "firmware": _str,
    },
    "eboard": {
        "screen_on": _bool,
        "brightness_pct": _pct,
        "temperature_c": _num,
        "content_id": _str_or_int,
        "errors": _str_list,
        "firmware": _str,
    },
    "wifi": {
        "clients": _count,
        "uptime_s": _nonneg,
        "uplink_up": _bool,
        "rx_bytes": _count,
        "tx_bytes": _count,
        "channel": _count,
        "cpu_pct": _pct,
        "mem_pct": _pct,
        "firmware": _str,
    },
    "gateway": {"uplink_up": _bool, "uptime_s": _nonneg, "rtt_ms": _nonneg, "cpu_pct": _pct, "mem_pct": _pct},
    "camera": {
        "reachable": _bool,
        "rtt_ms": _nonneg,
        "clock_offset_s": _num,
        "recording": _bool,
        "tamper": _bool,
        "motion": _bool,
        "manufacturer": _str,
        "model": _str,
        "firmware": _str,
        # set by the ONVIF poller when the camera answers but refuses our credentials
        "auth_failed": _bool,
    },
}


@dataclass(frozen=True, slots=True)
class Status:
    ts: datetime
    has_ts: bool
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    ts: datetime
    has_ts: bool
    type: str
    severity: str
    message: str | None
    fields: dict[str, Any]


def parse_ts(value: Any, now: datetime) -> datetime:
    """RFC 3339 with an offset, or epoch milliseconds; at most 5 minutes ahead of `now`."""
    if type(value) is str:
        try:
            ts = datetime.fromisoformat(value)
        except ValueError as err:
            raise BadPayload("bad_ts", f"ts {value!r} is not RFC 3339") from err
        if ts.tzinfo is None:
            raise BadPayload("bad_ts", f"ts {value!r} has no UTC offset")
    elif type(value) is int or type(value) is float:
        try:
            ts = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, ValueError, OSError) as err:
            raise BadPayload("bad_ts", f"ts {value!r} is out of range for epoch milliseconds") from err
    else:
        raise BadPayload("bad_ts", "ts must be an RFC 3339 string or epoch milliseconds")
    if ts - now > MAX_FUTURE:
        raise BadPayload("ts_future", f"ts {ts.isoformat()} is more than 5 minutes ahead of the IOC clock")
    return ts


def _object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_PAYLOAD:
        raise BadPayload("too_large", f"payload of {len(raw)} bytes exceeds 65536")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadPayload("not_json", f"payload is not JSON: {err}") from err
    if type(doc) is not dict:
        raise BadPayload("not_object", f"payload is JSON {type(doc).__name__}, not an object")
    # Each level needs a bracket: a payload with few (nearly all) cannot nest too deep, and a
    # short one cannot hold too many keys; brackets inside strings only cost the walk.
    if len(raw) > _MIN_MANY_KEYS or raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        _check_shape(doc)
    return doc  # type: ignore[no-any-return]


def _check_shape(doc: dict[str, Any]) -> None:
    """At most MAX_DEPTH levels and MAX_KEYS keys in all."""
    keys = len(doc)
    todo: list[tuple[Any, int]] = [(v, 2) for v in doc.values() if type(v) is dict or type(v) is list]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise BadPayload("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
        children = value.values() if type(value) is dict else value
        if type(value) is dict:
            keys += len(value)
        todo += [(v, depth + 1) for v in children if type(v) is dict or type(v) is list]
    if keys > MAX_KEYS:
        raise BadPayload("too_many_keys", f"JSON has {keys} keys; at most {MAX_KEYS}")


def _take_ts(doc: dict[str, Any], now: datetime) -> tuple[datetime, bool]:
    raw_ts = doc.pop("ts", None)
    if raw_ts is None:
        return now, False
    return parse_ts(raw_ts, now), True


def parse_status(kind: str, raw: bytes, now: datetime) -> Status:
    """Check a status payload against its kind's fields; unknown fields are kept."""
    doc = _object(raw)
    ts, has_ts = _take_ts(doc, now)
    checks = FIELDS[kind]
    for name, value in doc.items():
        check = checks.get(name)
        if check is not None and value is not None and not check(value):
            expect = _EXPECT.get(check) or check.__doc__ or "valid"
            raise BadPayload("wrong_type", f"{kind} field {name!r} must be {expect}, got {value!r}")
    return Status(ts, has_ts, doc)


def parse_event(raw: bytes, now: datetime) -> Event:
    doc = _object(raw)
    ts, has_ts = _take_ts(doc, now)
    etype = doc.pop("type", None)
    if type(etype) is not str or not etype:
        raise BadPayload("wrong_type", "event field 'type' must be a non-empty string")
    severity = doc.pop("severity", "info")
    if severity not in SEVERITIES:
        raise BadPayload(
            "wrong_type", f"event field 'severity' must be info/warning/critical, got {severity!r}"
        )
    message = doc.pop("message", None)
    if message is not None and type(message) is not str:
        raise BadPayload("wrong_type", "event field 'message' must be a string")
    return Event(ts, has_ts, etype, severity, message, doc)


def parse_availability(raw: bytes) -> str:
    if len(raw) > MAX_PAYLOAD:
        raise BadPayload("too_large", f"payload of {len(raw)} bytes exceeds 65536")
    value = raw.strip().decode("utf-8", errors="replace")
    if value not in ("online", "offline"):
        raise BadPayload(
            "bad_availability", f"availability must be 'online' or 'offline', got {value[:40]!r}"
        )
    return value
