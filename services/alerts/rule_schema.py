"""The settings every alert rule takes (built-in rules and their defaults, custom threshold rules)
and the check of a `rules:` mapping, from IOC_ALERTS_FILE or the API; every error names its path."""

import re
from collections.abc import Mapping
from typing import Any

from services.alerts.hours import parse_hours
from services.models import KINDS

SEVERITIES = ("info", "warning", "critical")
OPS = (">", ">=", "<", "<=", "==", "!=")
RULE_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Built-in rules and their defaults. Every rule also takes the COMMON settings.
BUILTIN: dict[str, dict[str, Any]] = {
    "offline": {
        "severity": "critical",
        "for_s": 120,
        "flap_count": 4,
        "flap_window_s": 600,
        "flap_clear_s": 600,
    },
    # IOC-wide: no ingest hears the broker (its report is older than stale_s); an ingest stopped
    # on purpose (SIGTERM, Ctrl-C) is no incident for planned_stop_s, then its absence is one.
    "broker_lost": {"severity": "critical", "for_s": 0, "stale_s": 15, "planned_stop_s": 600},
    # IOC-wide: an ingest has messages waiting and has committed nothing for stall_s.
    "ingest_stalled": {"severity": "critical", "for_s": 0, "stall_s": 30},
    # One alert while vendor brokers (SPEC §8 `brokers:`) are lost; their devices' states freeze.
    "source_lost": {"severity": "critical", "for_s": 60},
    "camera_tamper": {
        "severity": "critical",
        "for_s": 0,
        "kinds": ["camera"],
        "hold_s": 300,
        "events": ["tamper", "global_scene_change", "scene_change"],
    },
    "camera_signal_loss": {
        "severity": "critical",
        "for_s": 0,
        "kinds": ["camera"],
        "hold_s": 300,
        "events": ["signal_loss", "video_loss"],
    },
    "camera_storage_failure": {
        "severity": "warning",
        "for_s": 0,
        "kinds": ["camera"],
        "hold_s": 3600,
        "events": ["storage_failure", "storage_error", "recording_failure"],
    },
    "camera_clock_skew": {"severity": "warning", "for_s": 300, "kinds": ["camera"], "threshold": 60},
    "camera_auth_failed": {"severity": "warning", "for_s": 300, "kinds": ["camera"]},
    # The other kinds answering but refusing our credentials (SPEC §8: an SNMP v3 key, an HTTP
    # password, whatever the kind); cameras keep their own rule.
    "auth_failed": {"severity": "warning", "for_s": 300, "kinds": ["speaker", "eboard", "wifi", "gateway"]},
    "eboard_screen_off": {
        "severity": "warning",
        "for_s": 300,
        "kinds": ["eboard"],
        "on_hours": "06:00-22:00",
    },
    "speaker_battery_low": {"severity": "warning", "for_s": 300, "kinds": ["speaker"], "threshold": 20},
    "uplink_down": {"severity": "critical", "for_s": 120, "kinds": ["wifi", "gateway"]},
    "temperature_high": {"severity": "warning", "for_s": 300, "threshold": 70},
    # A speaker playing while no broadcast of ours is on it, from a source not allowed (SPEC §9);
    # the default of allowed_sources is IOC_BROADCAST_ALLOWED_SOURCES.
    "unscheduled_broadcast": {
        "severity": "critical",
        "for_s": 30,
        "kinds": ["speaker"],
        "allowed_sources": [],
    },
}
COMMON: dict[str, Any] = {
    "enabled": True,
    "severity": "warning",
    "for_s": 300,
    "clear_s": 0,
    "repeat_s": None,
    "kinds": None,
}
CUSTOM = {"metric": None, "op": ">", "threshold": None}
_DURATIONS = {
    "for_s",
    "clear_s",
    "repeat_s",
    "flap_window_s",
    "flap_clear_s",
    "stale_s",
    "hold_s",
    "planned_stop_s",
    "stall_s",
}
# Rules about the IOC itself (one alert, no device), not about each device.
IOC_RULES = ("broker_lost", "ingest_stalled")
# Rules about the sources devices are heard through (one alert for the devices of lost brokers).
SOURCE_RULES = ("source_lost",)
_MATCH_KEYS = {"commune", "village", "kind", "device"}


class Errors(list[str]):
    """Errors found so far, each `path: message`."""

    def check(self, ok: bool, path: str, msg: str) -> bool:
        if not ok:
            self.append(f"{path}: {msg}")
        return ok


def _check_setting(err: Errors, path: str, key: str, v: Any, custom: bool) -> None:
    if key == "enabled":
        err.check(isinstance(v, bool), path, "must be true or false")
    elif key in _DURATIONS:
        ok = (key == "repeat_s" and v is None) or (is_num(v) and v >= 0)
        err.check(ok, path, "must be a number of seconds >= 0")
    elif key == "flap_count":
        err.check(isinstance(v, int) and not isinstance(v, bool) and v >= 2, path, "must be an integer >= 2")
    elif key == "severity":
        err.check(v in SEVERITIES, path, f"must be one of {', '.join(SEVERITIES)}")
    elif key == "kinds":
        err.check(
            v is None or (isinstance(v, list) and all(k in KINDS for k in v)),
            path,
            f"must be a list of {', '.join(KINDS)}",
        )
    elif key == "events":
        err.check(
            isinstance(v, list) and all(isinstance(x, str) and x for x in v),
            path,
            "must be a list of event types",
        )
    elif key == "allowed_sources":
        err.check(
            isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v),
            path,
            "must be a list of source names, e.g. [vov1, fm-xa]",
        )
    elif key == "on_hours":
        try:
            parse_hours(v)
        except (ValueError, KeyError, TypeError):
            err.append(f"{path}: must be HH:MM-HH:MM")
    elif key == "metric":
        err.check(isinstance(v, str) and bool(v), path, "must name a status field, e.g. cpu_pct")
    elif key == "op":
        err.check(v in OPS, path, f"must be one of {' '.join(OPS)}")
    elif key == "threshold":
        ok = is_num(v) or (custom and isinstance(v, bool | str))
        err.check(ok, path, "must be a number")


def is_num(v: Any) -> bool:
    """A number, not a bool."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def _allowed(name: str, custom: bool) -> set[str]:
    keys = set(COMMON) | {"overrides"}
    keys |= set(CUSTOM) if custom else set(BUILTIN[name])
    return keys


def _check_rule(err: Errors, name: str, body: Any, custom: bool) -> None:
    path = f"rules.{name}"
    if not err.check(isinstance(body, Mapping), path, "must be a mapping of settings"):
        return
    allowed = _allowed(name, custom)
    for key, v in body.items():
        if key not in allowed:
            err.append(f"{path}.{key}: unknown setting (allowed: {', '.join(sorted(allowed))})")
        elif key == "overrides":
            _check_overrides(err, f"{path}.overrides", v, allowed - {"overrides"}, custom)
        else:
            _check_setting(err, f"{path}.{key}", key, v, custom)


def _check_overrides(err: Errors, path: str, v: Any, allowed: set[str], custom: bool) -> None:
    if not err.check(isinstance(v, list), path, "must be a list of {match: {...}, setting: value}"):
        return
    for i, o in enumerate(v):
        p = f"{path}[{i}]"
        if not err.check(
            isinstance(o, Mapping) and isinstance(o.get("match"), Mapping) and o["match"],
            p,
            "needs match: {commune|village|kind|device: id}",
        ):
            continue
        for k, mv in o["match"].items():
            err.check(
                k in _MATCH_KEYS and isinstance(mv, str),
                f"{p}.match.{k}",
                f"match on one of {', '.join(sorted(_MATCH_KEYS))} with a single id",
            )
        for key, sv in o.items():
            if key == "match":
                continue
            if key not in allowed:
                err.append(f"{p}.{key}: unknown setting")
            else:
                _check_setting(err, f"{p}.{key}", key, sv, custom)


def check_rules(doc: Any, *, where: str = "rules") -> list[str]:
    """Every error in a `rules:` mapping (empty when valid)."""
    err = Errors()
    if doc is None:
        return []
    if not isinstance(doc, Mapping):
        return [f"{where}: must be a mapping of rule name -> settings"]
    for name, body in doc.items():
        if not isinstance(name, str) or not RULE_NAME_RE.fullmatch(name):
            err.append(f"{where}.{name}: rule names are lower case letters, digits and _")
            continue
        custom = name not in BUILTIN
        _check_rule(err, name, body, custom)
        if custom and isinstance(body, Mapping) and not body.get("metric"):
            err.append(
                f"{where}.{name}: not a built-in rule; a threshold rule needs metric and threshold "
                f"(built-in: {', '.join(BUILTIN)})"
            )
        elif custom and isinstance(body, Mapping) and "threshold" not in body:
            err.append(f"{where}.{name}.threshold: a threshold rule needs a threshold")
    return err
