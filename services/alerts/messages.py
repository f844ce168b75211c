"""What technicians read: alert messages in Vietnamese (or English), with the device, the place,
since when, and a link to the device page."""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services import words


@dataclass(frozen=True)
class Place:
    """Names to show for an alert's device."""

    device_name: str | None = None
    kind: str | None = None
    village_name: str | None = None
    commune_name: str | None = None
    village_term: str | None = None  # what the commune calls its villages (ấp, xóm, thôn…)


# Decimals of an alert's `value`, as the page shows it (dashboard/js/i18n.js ALERT_DECIMALS).
_DECIMALS = {"camera_clock_skew": 0, "speaker_battery_low": 0, "temperature_high": 1}
_FIELD = re.compile(r"\{(\w+)\}")


def _lang(lang: str) -> str:
    return lang if lang in words.LANGS else "vi"


def kind_word(kind: str | None, lang: str = "vi") -> str:
    """The kind of a device in the catalogue's words ("Bộ định tuyến"), as the page says it."""
    return words.text(f"kind.{kind}", lang) if kind and words.has(f"kind.{kind}") else kind or ""


def _show(v: Any, lang: str, decimals: int | None) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return words.number(v, lang, decimals) if math.isfinite(v) else str(v)


def _usable(v: Any) -> bool:
    """A detail a word can show: a finite number or some text (as the page takes them)."""
    if isinstance(v, bool):
        return False
    return (isinstance(v, int | float) and math.isfinite(v)) or (isinstance(v, str) and v != "")


def describe(rule: str, details: Mapping[str, Any], lang: str = "vi", vt: str | None = None) -> str:
    """What is wrong, e.g. 'mất kết nối', in the catalogue's words ("am.<rule>"); without the
    details its words need, its plain words ("am.<rule>.plain"). `vt`: the commune's village word."""
    lg = _lang(lang)
    key = rule
    if rule == "offline" and details.get("flapping"):
        key = "flapping"
    elif rule == "source_lost" and details.get("refused"):
        key = "source_refused"  # the source answers but refuses our credentials: say so
    if words.has(f"am.{key}"):
        needed = set(_FIELD.findall(words.catalogue()["vi"][f"am.{key}"])) - {"vt", "Vt"}
        if all(_usable(details.get(f)) for f in needed):
            fields = {f: _show(details[f], lg, _DECIMALS.get(key) if f == "value" else None) for f in needed}
            return words.text(f"am.{key}", lg, vt=vt, **fields)
        if words.has(f"am.{key}.plain"):
            return words.text(f"am.{key}.plain", lg, vt=vt)
    metric, op = details.get("metric"), details.get("op")
    if isinstance(metric, str) and isinstance(op, str) and details.get("value") is not None:
        # A threshold rule of the alerts file: metric, comparison and limit.
        name = words.text(f"metric.{metric}", lg) if words.has(f"metric.{metric}") else metric
        return words.text(
            "am.threshold",
            lg,
            metric=name,
            op=op,
            value=_show(details["value"], lg, None),
            threshold=_show(details.get("threshold", ""), lg, None),
        )
    return rule


def headline(
    rule: str,
    device_id: str | None,
    place: Place,
    details: Mapping[str, Any],
    lang: str = "vi",
) -> str:
    """One line: who and what, e.g. 'Router ấp Trung Bình mất kết nối'."""
    what = describe(rule, details, lang, place.village_term)
    if device_id is None:
        return what[:1].upper() + what[1:]
    name = place.device_name or f"{kind_word(place.kind, _lang(lang))} {device_id}".strip()
    return f"{name} {what}"


def _when(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%H:%M:%S %d/%m/%Y")


def _device_link(public_url: str | None, alert: Mapping[str, Any]) -> str | None:
    """The dashboard page of the alert's device (of its broadcast for broadcast_not_reached),
    when the IOC's public URL is known."""
    if not public_url:
        return None
    if alert.get("device_id"):
        return f"{public_url.rstrip('/')}/#/device/{alert['device_id']}"
    broadcast = (alert.get("details") or {}).get("broadcast")
    if alert.get("rule") == "broadcast_not_reached" and isinstance(broadcast, int):
        return f"{public_url.rstrip('/')}/#/broadcasts/{broadcast}"
    return None


def render(
    event: str,
    alert: Mapping[str, Any],
    place: Place,
    *,
    lang: str = "vi",
    tz: str = "Asia/Ho_Chi_Minh",
    public_url: str | None = None,
    actor: str | None = None,
) -> tuple[str, str]:
    """(title, body) of a notification about an alert."""
    lg, zone = _lang(lang), ZoneInfo(tz)

    def w(key: str, **fields: Any) -> str:
        return words.text(key, lg, **fields)

    head = headline(alert["rule"], alert.get("device_id"), place, alert.get("details") or {}, lg)
    severity = alert.get("severity", "")
    sev = w(f"sev.{severity}").lower() if words.has(f"sev.{severity}") else severity
    # How an alert that resolves by itself ended, when that is not "fixed" (broadcast_not_reached:
    # the broadcast expired or was cancelled with villages never reached).
    outcome = (alert.get("details") or {}).get("outcome") if event == "resolve" else None
    ended = f"nt.event.{event}.{outcome}"
    event_key = ended if outcome and words.has(ended) else f"nt.event.{event}"
    event_word = w(event_key) if words.has(event_key) else event.upper()
    title = w("nt.title", event=event_word, what=head)
    lines = []
    if event not in ("resolve", "ack", "assign"):
        lines.append(w("nt.summary", what=head, severity=sev))
    if alert.get("device_id"):
        name = place.device_name or alert["device_id"]
        lines.append(w("nt.device", name=name, id=alert["device_id"], kind=kind_word(place.kind, lg)))
        where = ", ".join(x for x in (place.village_name, place.commune_name) if x)
        if where:
            lines.append(w("nt.place", place=where))
    lines.append(w("nt.since", at=_when(alert["since"], zone)))
    affected = list(alert.get("affected") or [])
    if affected:
        shown = ", ".join(affected[:10]) + (" …" if len(affected) > 10 else "")
        lines.append(w("nt.affected", n=words.number(len(affected), lg), devices=shown))
    if event == "resolve" and alert.get("resolved_at"):
        minutes = max(0, round((alert["resolved_at"] - alert["since"]).total_seconds() / 60))
        at = _when(alert["resolved_at"], zone)
        n = words.number(minutes, lg)
        if outcome and words.has(f"nt.outcome.{outcome}"):
            never = (alert.get("details") or {}).get("not_reached") or "—"
            lines.append(w(f"nt.outcome.{outcome}", not_reached=never))
        if event_key == ended:
            lines.append(w("nt.ended", at=at, minutes=n))
        else:
            lines.append(
                w("nt.resolved_by", at=at, who=actor, minutes=n)
                if actor
                else w("nt.resolved", at=at, minutes=n)
            )
    if event == "ack":
        lines.append(w("nt.acked", who=alert.get("acked_by")))
        if alert.get("ack_comment"):
            lines.append(w("nt.comment", text=alert["ack_comment"]))
    if event == "assign":
        lines.append(w("nt.assigned", who=alert.get("assignee")))
    if event in ("repeat", "escalate"):
        lines.append(w("nt.unacked"))
    link = _device_link(public_url, alert)
    if link:
        lines.append(w("nt.link", url=link))
    return title, "\n".join(lines)


def notification(
    event: str,
    alert: Mapping[str, Any],
    place: Place,
    *,
    lang: str = "vi",
    tz: str = "Asia/Ho_Chi_Minh",
    public_url: str | None = None,
    actor: str | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """(title, body, data) of a notification; `data` fills the fields of template channels (Zalo ZNS)."""
    title, body = render(event, alert, place, lang=lang, tz=tz, public_url=public_url, actor=actor)
    link = _device_link(public_url, alert)
    data = {
        "device": place.device_name or alert.get("device_id"),
        "device_id": alert.get("device_id"),
        "place": ", ".join(x for x in (place.village_name, place.commune_name) if x) or None,
        "since": alert["since"].astimezone(ZoneInfo(tz)).strftime("%H:%M %d/%m/%Y"),
        "status": describe(alert["rule"], alert.get("details") or {}, lang, place.village_term),
        "severity": alert["severity"],
        "link": link,
        "tracking_id": f"{alert['id']}-{event}",
    }
    return title, body, data
