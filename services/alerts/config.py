"""Alert configuration: rule settings (built-in defaults, IOC_ALERTS_FILE, then the API's edits),
channels, routes, quiet hours. Parsed once into frozen objects; every error names its path."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from services.errors import InvalidInput
from services.models import KINDS

SEVERITIES = ("info", "warning", "critical")
OPS = (">", ">=", "<", "<=", "==", "!=")
RULE_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
DEFAULT_REPEAT_S = 1800.0

# Built-in rules and their defaults. Every rule also takes the COMMON settings.
BUILTIN: dict[str, dict[str, Any]] = {
    "offline": {
        "severity": "critical",
        "for_s": 120,
        "flap_count": 4,
        "flap_window_s": 600,
        "flap_clear_s": 600,
    },
    "broker_lost": {"severity": "critical", "for_s": 0, "stale_s": 15},
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
    "eboard_screen_off": {
        "severity": "warning",
        "for_s": 300,
        "kinds": ["eboard"],
        "on_hours": "06:00-22:00",
    },
    "speaker_battery_low": {"severity": "warning", "for_s": 300, "kinds": ["speaker"], "threshold": 20},
    "uplink_down": {"severity": "critical", "for_s": 120, "kinds": ["wifi", "gateway"]},
    "temperature_high": {"severity": "warning", "for_s": 300, "threshold": 70},
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
_DURATIONS = {"for_s", "clear_s", "repeat_s", "flap_window_s", "flap_clear_s", "stale_s", "hold_s"}
_MATCH_KEYS = {"commune", "village", "kind", "device"}
_ROUTE_MATCH_KEYS = {"commune", "village", "kind", "severity", "rule", "device"}
# Later (more specific) overrides win: device > village > kind > commune.
_SPECIFICITY = {"commune": 1, "kind": 2, "village": 4, "device": 8}


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


@dataclass(frozen=True)
class Rule:
    name: str
    builtin: bool
    settings: Mapping[str, Any]
    # (match, settings) pairs, least specific first
    overrides: tuple[tuple[Mapping[str, str], Mapping[str, Any]], ...] = ()

    def for_device(
        self, commune: str | None, village: str | None, kind: str | None, device_id: str | None
    ) -> dict[str, Any]:
        out = dict(self.settings)
        attrs = {"commune": commune, "village": village, "kind": kind, "device": device_id}
        for match, settings in self.overrides:
            if all(attrs[k] == v for k, v in match.items()):
                out.update(settings)
        return out


@dataclass(frozen=True)
class Escalation:
    after_s: float
    channels: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    match: Mapping[str, frozenset[str]]
    channels: tuple[str, ...]
    escalate: tuple[Escalation, ...] = ()
    quiet_hours: tuple[time, time] | None = None
    has_quiet_hours: bool = False
    stop: bool = False

    def matches(self, attrs: Mapping[str, str | None]) -> bool:
        return all(attrs.get(k) in values for k, values in self.match.items())


@dataclass(frozen=True)
class Config:
    rules: Mapping[str, Rule]
    channels: Mapping[str, str] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    repeat_s: float = DEFAULT_REPEAT_S
    quiet_hours: tuple[time, time] | None = None
    public_url: str | None = None
    max_attempts: int = 8
    backoff_s: float = 5.0
    max_backoff_s: float = 600.0
    file_rules: Mapping[str, Any] = field(default_factory=dict)
    api_rules: Mapping[str, Any] = field(default_factory=dict)

    def route(self, attrs: Mapping[str, str | None]) -> list[Route]:
        """The routes an alert with these attributes takes (every match, until a `stop`)."""
        if not self.routes:
            return [Route({}, tuple(self.channels))]
        out = []
        for r in self.routes:
            if r.matches(attrs):
                out.append(r)
                if r.stop:
                    break
        return out


class _Errors(list[str]):
    def check(self, ok: bool, path: str, msg: str) -> bool:
        if not ok:
            self.append(f"{path}: {msg}")
        return ok


def _check_setting(err: _Errors, path: str, key: str, v: Any, custom: bool) -> None:
    if key == "enabled":
        err.check(isinstance(v, bool), path, "must be true or false")
    elif key in _DURATIONS:
        ok = (key == "repeat_s" and v is None) or (_is_num(v) and v >= 0)
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
        ok = _is_num(v) or (custom and isinstance(v, bool | str))
        err.check(ok, path, "must be a number")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _allowed(name: str, custom: bool) -> set[str]:
    keys = set(COMMON) | {"overrides"}
    keys |= set(CUSTOM) if custom else set(BUILTIN[name])
    return keys


def _check_rule(err: _Errors, name: str, body: Any, custom: bool) -> None:
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


def _check_overrides(err: _Errors, path: str, v: Any, allowed: set[str], custom: bool) -> None:
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
    err = _Errors()
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


def _merge_rule(name: str, layers: list[Mapping[str, Any]]) -> Rule:
    custom = name not in BUILTIN
    settings: dict[str, Any] = dict(COMMON)
    settings.update(CUSTOM if custom else BUILTIN[name])
    overrides: list[tuple[Mapping[str, str], Mapping[str, Any]]] = []
    for layer in layers:
        for k, v in layer.items():
            if k == "overrides":
                overrides.extend(
                    (dict(o["match"]), {sk: sv for sk, sv in o.items() if sk != "match"}) for o in v
                )
            else:
                settings[k] = v
    overrides.sort(key=lambda o: sum(_SPECIFICITY[k] for k in o[0]))
    return Rule(name, not custom, settings, tuple(overrides))


def load_file(path: Path | None) -> dict[str, Any]:
    """The parsed IOC_ALERTS_FILE (empty when unset)."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidInput(f"{path}: {err.strerror}") from err
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise InvalidInput(f"{path}: not valid YAML: {err}") from err
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: must be a mapping with rules, channels, routes")
    return doc


_TOP = {"rules", "channels", "routes", "repeat_s", "quiet_hours", "public_url", "retry"}


def build(doc: Mapping[str, Any], api_rules: Mapping[str, Any] | None = None) -> Config:
    """Validate the file's document and the API's rule edits into one Config."""
    api_rules = api_rules or {}
    err = _Errors()
    for k in doc:
        err.check(k in _TOP, str(k), f"unknown key (allowed: {', '.join(sorted(_TOP))})")
    err.extend(check_rules(doc.get("rules")))
    err.extend(check_rules(api_rules, where="api rules"))
    channels = doc.get("channels") or {}
    if err.check(isinstance(channels, Mapping), "channels", "must map a name to an Apprise or zalo:// URL"):
        for name, url in channels.items():
            err.check(isinstance(url, str) and "://" in url, f"channels.{name}", "must be a URL")
    else:
        channels = {}
    repeat_s = doc.get("repeat_s", DEFAULT_REPEAT_S)
    err.check(_is_num(repeat_s) and repeat_s >= 0, "repeat_s", "must be a number of seconds >= 0 (0: never)")
    quiet = _quiet(err, "quiet_hours", doc.get("quiet_hours"))
    retry = doc.get("retry") or {}
    err.check(
        isinstance(retry, Mapping) and set(retry) <= {"max_attempts", "backoff_s", "max_backoff_s"},
        "retry",
        "takes max_attempts, backoff_s, max_backoff_s",
    )
    routes = _routes(err, doc.get("routes"), channels)
    if err:
        raise InvalidInput(f"{len(err)} alert configuration error(s):\n" + "\n".join(err), detail=list(err))
    file_rules = dict(doc.get("rules") or {})
    names = list(BUILTIN) + [n for n in [*file_rules, *api_rules] if n not in BUILTIN]
    rules = {}
    for name in dict.fromkeys(names):
        layers = [x[name] for x in (file_rules, api_rules) if name in x]
        rules[name] = _merge_rule(name, layers)
    return Config(
        rules=rules,
        channels=dict(channels),
        routes=tuple(routes),
        repeat_s=float(repeat_s),
        quiet_hours=quiet,
        public_url=doc.get("public_url"),
        max_attempts=int(retry.get("max_attempts", 8)),
        backoff_s=float(retry.get("backoff_s", 5)),
        max_backoff_s=float(retry.get("max_backoff_s", 600)),
        file_rules=file_rules,
        api_rules=dict(api_rules),
    )


def _quiet(err: _Errors, path: str, v: Any) -> tuple[time, time] | None:
    if v is None:
        return None
    try:
        return parse_hours(v)
    except (ValueError, KeyError, TypeError):
        err.append(f"{path}: must be HH:MM-HH:MM (e.g. 22:00-06:00)")
        return None


def _names(v: Any) -> frozenset[str]:
    return frozenset([v] if isinstance(v, str) else [str(x) for x in v])


def _routes(err: _Errors, v: Any, channels: Mapping[str, str]) -> list[Route]:
    if v is None:
        return []
    if not err.check(isinstance(v, list), "routes", "must be a list"):
        return []
    out = []
    for i, r in enumerate(v):
        p = f"routes[{i}]"
        if not err.check(isinstance(r, Mapping), p, "must be {match: {...}, channels: [...]}"):
            continue
        unknown = set(r) - {"match", "channels", "escalate", "quiet_hours", "stop"}
        err.check(not unknown, p, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        match = r.get("match") or {}
        if err.check(isinstance(match, Mapping), f"{p}.match", "must be a mapping"):
            for k in match:
                err.check(
                    k in _ROUTE_MATCH_KEYS,
                    f"{p}.match.{k}",
                    f"match on {', '.join(sorted(_ROUTE_MATCH_KEYS))}",
                )
        else:
            match = {}
        names = r.get("channels") or []
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            err.check(n in channels, f"{p}.channels", f"no channel named {n!r}")
        escalate = r.get("escalate") or []
        escalate = [escalate] if isinstance(escalate, Mapping) else escalate
        levels = []
        for j, e in enumerate(escalate):
            ep = f"{p}.escalate[{j}]"
            if not err.check(
                isinstance(e, Mapping) and bool(e.get("channels")), ep, "needs channels (and after_s)"
            ):
                continue
            ech = [e["channels"]] if isinstance(e["channels"], str) else list(e["channels"])
            for n in ech:
                err.check(n in channels, ep, f"no channel named {n!r}")
            after = e.get("after_s", 900)
            err.check(_is_num(after) and after >= 0, f"{ep}.after_s", "must be a number of seconds >= 0")
            levels.append(Escalation(float(after) if _is_num(after) else 0.0, tuple(ech)))
        levels.sort(key=lambda e: e.after_s)
        out.append(
            Route(
                {k: _names(mv) for k, mv in match.items()},
                tuple(names),
                tuple(levels),
                _quiet(err, f"{p}.quiet_hours", r.get("quiet_hours")),
                "quiet_hours" in r,
                bool(r.get("stop", False)),
            )
        )
    return out


def effective_rules(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every rule with its settings in force (for GET /alert-rules)."""
    out = {}
    for name, rule in cfg.rules.items():
        s = {k: v for k, v in rule.settings.items() if not (k == "repeat_s" and v is None)}
        s.setdefault("repeat_s", cfg.repeat_s)
        if rule.overrides:
            s["overrides"] = [{"match": dict(m), **o} for m, o in rule.overrides]
        out[name] = s
    return out
