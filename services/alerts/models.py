"""The alert configuration as the engine uses it: rules with their overrides, channels, routes with
escalations and quiet hours. Frozen; built and validated by `services.alerts.config`."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

DEFAULT_REPEAT_S = 1800.0


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
