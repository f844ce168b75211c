"""Alert configuration: rule settings (built-in defaults, IOC_ALERTS_FILE, then the API's edits),
channels, routes, quiet hours. Parsed once into the frozen objects of `models`; every error names
its path. What each rule takes is checked by `rule_schema`."""

from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any

import yaml

from services import yaml_limits
from services.alerts.hours import parse_hours
from services.alerts.models import DEFAULT_REPEAT_S, Config, Escalation, Route, Rule
from services.alerts.rule_schema import BUILTIN, COMMON, CUSTOM, Errors, check_rules, is_num
from services.errors import InvalidInput

_ROUTE_MATCH_KEYS = {"commune", "village", "kind", "severity", "rule", "device"}
# Later (more specific) overrides win: device > village > kind > commune.
_SPECIFICITY = {"commune": 1, "kind": 2, "village": 4, "device": 8}


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
        doc = yaml_limits.load(text).data or {}
    except yaml_limits.YamlRefused as err:
        raise InvalidInput(
            f"{path}:{err.line}: {err.message}" if err.line else f"{path}: {err.message}"
        ) from err
    except yaml.YAMLError as err:
        raise InvalidInput(f"{path}: not valid YAML: {err}") from err
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: must be a mapping with rules, channels, routes")
    return doc


_TOP = {"rules", "channels", "routes", "repeat_s", "quiet_hours", "public_url", "retry"}


def build(
    doc: Mapping[str, Any],
    api_rules: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Validate the file's document and the API's rule edits into one Config. `defaults`: rule
    settings from the environment (IOC_BROADCAST_ALLOWED_SOURCES), under the file's and the API's."""
    api_rules = api_rules or {}
    defaults = defaults or {}
    err = Errors()
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
    err.check(is_num(repeat_s) and repeat_s >= 0, "repeat_s", "must be a number of seconds >= 0 (0: never)")
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
        layers = [x[name] for x in (defaults, file_rules, api_rules) if name in x]
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


def _quiet(err: Errors, path: str, v: Any) -> tuple[time, time] | None:
    if v is None:
        return None
    try:
        return parse_hours(v)
    except (ValueError, KeyError, TypeError):
        err.append(f"{path}: must be HH:MM-HH:MM (e.g. 22:00-06:00)")
        return None


def _names(v: Any) -> frozenset[str]:
    return frozenset([v] if isinstance(v, str) else [str(x) for x in v])


def _routes(err: Errors, v: Any, channels: Mapping[str, str]) -> list[Route]:
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
            err.check(is_num(after) and after >= 0, f"{ep}.after_s", "must be a number of seconds >= 0")
            levels.append(Escalation(float(after) if is_num(after) else 0.0, tuple(ech)))
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
