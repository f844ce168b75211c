"""The field-mapping engine of vendor profiles (SPEC §8): a field is a JMESPath expression over the
decoded payload, or `{path, map, scale, offset}`; a payload that is not JSON is the string `@`, or
with `split` the list of its parts. Pure, no I/O; bad input is a `MappingError` naming the field,
never another exception."""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath
import orjson
from jmespath import functions
from jmespath.exceptions import JMESPathError

from services import payloads

TS_UNITS = ("s", "ms", "rfc3339")
_FIELD_KEYS = {"path", "map", "scale", "offset", "kinds"}
# Payload fields that the IOC's own status/event checks read: an unmapped vendor field of that
# name is kept under `vendor_<name>` (Shelly's switch status has "source": "init", which is not
# what a speaker's `source` means).
_EVENT_KEYS = ("ts", "type", "severity", "message")
# Text a firmware sends for "no reading" where a number belongs: ESPHome publishes a failed sensor's
# NaN as "nan" (value_accuracy_to_string), or as "None" with mqtt: publish_nan_as_none
# (esphome/components/mqtt/mqtt_sensor.cpp). The field is then absent; the message still counts.
NO_READING = frozenset({"nan", "-nan", "none", "null"})


# Tasmota's uptime text, "<days>T<hh>:<mm>:<ss>" (GetUptime in support_tasmota.ino); firmware
# before 7.0 sends it without "UptimeSec" (arendst/Tasmota devices_online.be parses it the same way)
_DURATION_RE = re.compile(r"\s*(?:(\d+)\s*[Td]\s*)?(\d+):([0-5]\d):([0-5]\d)\s*")


class _Functions(functions.Functions):
    """JMESPath's functions and two more: durations written as text, temperatures in °F or K."""

    @functions.signature({"types": ["string", "number", "null"]})
    def _func_duration_s(self, value: Any) -> Any:
        """Seconds of "1T02:03:04" or "02:03:04"; a number as it is; other text unchanged (so the
        kind's type check names the field)."""
        if not isinstance(value, str):
            return value
        m = _DURATION_RE.fullmatch(value)
        if m is None:
            return value
        days, h, mi, sec = (int(x) if x else 0 for x in m.groups())
        return ((days * 24 + h) * 60 + mi) * 60 + sec

    @functions.signature({"types": ["string", "number", "null"]}, {"types": ["string", "null"]})
    def _func_celsius(self, value: Any, unit: Any) -> Any:
        """A temperature in °C from one the payload says is in `unit`: "F" (Tasmota's TempUnit with
        SetOption8 1, written as c * 1.8 + 32 in support.ino) or "K" is converted, rounded to
        0.01; "C", none or other text leaves it unchanged (so the kind's type check names it)."""
        if value is None or not isinstance(unit, str):
            return value
        u = unit.strip().upper().lstrip("°")
        if u not in ("F", "K") or isinstance(value, bool):
            return value
        try:
            x = float(value)
        except ValueError:
            return value
        if not math.isfinite(x):
            return value
        c = (x - 32) / 1.8 if u == "F" else x - 273.15
        return round(c, 2)


SEARCH = jmespath.Options(custom_functions=_Functions())


class MappingError(Exception):
    """A payload that does not fit its profile; `field` names what did not fit."""

    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(f"field {field_name}: {detail}")
        self.field = field_name
        self.detail = detail


def compile_path(path: Any) -> Any:
    """A compiled JMESPath expression; ValueError with the parser's words when it is not one."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{path!r} is not a JMESPath expression (a non-empty string)")
    try:
        return jmespath.compile(path)
    except JMESPathError as err:
        raise ValueError(f"{path!r} is not a valid JMESPath expression: {str(err).splitlines()[0]}") from err


def map_key(value: Any) -> str:
    """The key a value is looked up by in a `map` (YAML keys and JSON values compare as text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class FieldMap:
    """How one field of the device's kind is read from a payload."""

    name: str
    path: str
    expr: Any = field(compare=False, repr=False)
    map: tuple[tuple[str, Any], ...] | None = None
    scale: float | None = None
    offset: float | None = None
    # the device kinds it applies to (None: every kind using the profile; each must have the field)
    kinds: tuple[str, ...] | None = None

    def applies(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    def spec(self) -> Any:
        """The registry form (a path, or {path, map, scale, offset, kinds})."""
        if self.map is None and self.scale is None and self.offset is None and self.kinds is None:
            return self.path
        out: dict[str, Any] = {"path": self.path}
        if self.map is not None:
            out["map"] = dict(self.map)
        if self.scale is not None:
            out["scale"] = self.scale
        if self.offset is not None:
            out["offset"] = self.offset
        if self.kinds is not None:
            out["kinds"] = list(self.kinds)
        return out


def compile_field(name: str, spec: Any) -> FieldMap:
    """A field from its registry form; ValueError naming what is wrong."""
    if isinstance(spec, str):
        return FieldMap(name, spec, compile_path(spec))
    if not isinstance(spec, Mapping):
        raise ValueError("must be a JMESPath string or {path, map, scale, offset}")
    extra = sorted(set(spec) - _FIELD_KEYS)
    if extra:
        raise ValueError(
            f"unknown key(s) {', '.join(map(str, extra))} (allowed: path, map, scale, offset, kinds)"
        )
    path = spec.get("path")
    expr = compile_path(path)
    table = spec.get("map")
    if table is not None and (not isinstance(table, Mapping) or not table):
        raise ValueError("map must be a non-empty mapping of payload value -> value")
    nums = {}
    for k in ("scale", "offset"):
        v = spec.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
            raise ValueError(f"{k} must be a number")
        nums[k] = None if v is None else float(v)
    kinds = spec.get("kinds")
    if kinds is not None:
        if not isinstance(kinds, list) or not kinds or any(k not in payloads.FIELDS for k in kinds):
            raise ValueError(f"kinds must be a list of {', '.join(payloads.FIELDS)}")
        lacking = [k for k in kinds if name not in payloads.FIELDS[k]]
        if lacking:
            raise ValueError(f"a {', '.join(lacking)} has no field {name!r}")
    return FieldMap(
        name,
        str(path),
        expr,
        None if table is None else tuple((map_key(k), v) for k, v in table.items()),
        nums["scale"],
        nums["offset"],
        None if kinds is None else tuple(kinds),
    )


def decode(payload: bytes, split: str | None = None) -> Any:
    """The payload as the expressions see it: JSON, else its text; with `split`, the text's parts."""
    text = payload.decode("utf-8", errors="replace")
    if split is not None:
        return [part.strip() for part in text.split(split)]
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return text.strip()


def _number(name: str, v: Any) -> float | int:
    if isinstance(v, bool):
        raise MappingError(name, f"{v!r} is not a number")
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            pass
        try:
            x = float(v)
        except ValueError:
            raise MappingError(name, f"{v[:40]!r} is not a number") from None
        return x
    raise MappingError(name, f"{type(v).__name__} {str(v)[:40]} is not a number")


def read(fm: FieldMap, doc: Any) -> Any:
    """The field's value in a decoded payload (None when the payload does not carry it)."""
    try:
        v = fm.expr.search(doc, options=SEARCH)
    except (JMESPathError, TypeError, ValueError, OverflowError) as err:
        raise MappingError(fm.name, f"{fm.path!r} failed: {str(err).splitlines()[0][:120]}") from None
    if v is None:
        return None
    if fm.map is not None:
        key = map_key(v)
        for k, out in fm.map:
            if k == key:
                v = out
                break
        else:
            keys = ", ".join(k for k, _ in fm.map)
            raise MappingError(fm.name, f"value {key[:40]!r} is not one of its map's ({keys})")
        if v is None:
            return None
    if fm.scale is not None or fm.offset is not None:
        x = _number(fm.name, v)
        try:
            y = x * (fm.scale if fm.scale is not None else 1.0) + (fm.offset or 0.0)
        except OverflowError:
            raise MappingError(fm.name, f"{x!r} scaled is out of range") from None
        if not math.isfinite(y):
            raise MappingError(fm.name, f"{x!r} scaled is not a finite number")
        v = int(y) if float(y).is_integer() and abs(y) < 2**53 else y
    return v


def _expect(check: Callable[[Any], bool]) -> str:
    return payloads._EXPECT.get(check) or check.__doc__ or "valid"  # the words of SPEC §4 checks


def typed(kind: str, name: str, v: Any) -> Any:
    """The value with the kind's type (numeric text becomes a number), or a MappingError."""
    check = payloads.FIELDS[kind].get(name)
    if check is None or check(v):
        return v
    if isinstance(v, str):
        try:
            n = _number(name, v)
        except MappingError:
            n = None
        if n is not None and check(n):
            return n
    if isinstance(v, float) and v.is_integer() and check(int(v)):
        return int(v)
    raise MappingError(name, f"{kind} field {name} must be {_expect(check)}, got {str(v)[:60]!r}")


def _no_reading(kind: str, name: str, v: Any) -> bool:
    check = payloads.FIELDS[kind].get(name)
    return isinstance(v, str) and v.strip().lower() in NO_READING and not (check is None or check(v))


def apply_fields(kind: str, fields: tuple[FieldMap, ...], doc: Any) -> dict[str, Any]:
    """Every field the payload carries, typed for the kind. A payload that is text or a bare number
    and that no field could read at all is a MappingError: JSON paths over it find nothing, and the
    message would otherwise be stored as an empty status."""
    out: dict[str, Any] = {}
    found = False
    for fm in fields:
        if not fm.applies(kind):
            continue
        v = read(fm, doc)
        if v is None:
            continue
        found = True
        if not _no_reading(kind, fm.name, v):
            out[fm.name] = typed(kind, fm.name, v)
    applicable = [fm for fm in fields if fm.applies(kind)]
    if not found and applicable and not isinstance(doc, dict | list) and doc not in (None, ""):
        raise MappingError("payload", f"is not a JSON object or list: {str(doc)[:40]!r}")
    return out


def kept(
    kind: str,
    doc: Any,
    mapped: Mapping[str, Any],
    reserved: tuple[str, ...] = ("ts",),
    drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Payload fields kept as sent; a name the IOC reads itself goes under `vendor_<name>`."""
    if not isinstance(doc, dict):
        return {}
    names = payloads.FIELDS[kind]
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = str(k)
        if key in drop:
            continue
        if key in names or key in reserved or key.startswith("vendor_"):
            key = f"vendor_{key}"
        if key not in mapped:
            out[key] = v
    return out


@dataclass(frozen=True)
class TsSpec:
    """Where a payload carries the device's own time."""

    path: str
    expr: Any = field(compare=False, repr=False)
    unit: str = "rfc3339"
    # some firmwares send local time as if it were UTC: subtract this to get UTC
    utc_offset_s: int = 0

    def spec(self) -> dict[str, Any]:
        return {"path": self.path, "unit": self.unit, "utc_offset_s": self.utc_offset_s}


def compile_ts(spec: Any) -> TsSpec:
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, Mapping):
        raise ValueError("ts must be {path, unit: s|ms|rfc3339, utc_offset_s}")
    extra = sorted(set(spec) - {"path", "unit", "utc_offset_s"})
    if extra:
        raise ValueError(f"unknown ts key(s) {', '.join(map(str, extra))}")
    unit = spec.get("unit", "rfc3339")
    if unit not in TS_UNITS:
        raise ValueError(f"ts.unit {unit!r} must be one of s, ms, rfc3339")
    off = spec.get("utc_offset_s", 0)
    if isinstance(off, bool) or not isinstance(off, int) or abs(off) > 14 * 3600:
        raise ValueError("ts.utc_offset_s must be a whole number of seconds within ±50400")
    return TsSpec(str(spec.get("path")), compile_path(spec.get("path")), unit, off)


def read_ts(ts: TsSpec, doc: Any) -> datetime | None:
    """The device's time of a payload, in UTC (None when the payload has none)."""
    try:
        v = ts.expr.search(doc, options=SEARCH)
    except (JMESPathError, TypeError, ValueError, OverflowError) as err:
        raise MappingError("ts", f"{ts.path!r} failed: {str(err).splitlines()[0][:120]}") from None
    if v is None or v == "":
        return None
    try:
        if ts.unit == "rfc3339":
            if not isinstance(v, str):
                raise ValueError
            t = datetime.fromisoformat(v)
            if t.tzinfo is None:
                t = t.replace(tzinfo=UTC)
        else:
            x = float(_number("ts", v))
            t = datetime.fromtimestamp(x / 1000 if ts.unit == "ms" else x, UTC)
    except (ValueError, OverflowError, OSError, MappingError):
        raise MappingError("ts", f"{str(v)[:40]!r} is not a time in {ts.unit}") from None
    try:
        return (t - timedelta(seconds=ts.utc_offset_s)).astimezone(UTC)
    except OverflowError:
        raise MappingError("ts", f"{str(v)[:40]!r} is out of range") from None
