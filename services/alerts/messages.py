"""What technicians read: alert messages in Vietnamese (or English), with the device, the place,
since when, and a link to the device page."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Place:
    """Names to show for an alert's device."""

    device_name: str | None = None
    kind: str | None = None
    village_name: str | None = None
    commune_name: str | None = None


_KIND = {
    "vi": {
        "camera": "Camera",
        "speaker": "Loa",
        "eboard": "Bảng điện tử",
        "wifi": "Wi-Fi",
        "gateway": "Router",
    },
    "en": {
        "camera": "Camera",
        "speaker": "Speaker",
        "eboard": "E-board",
        "wifi": "Wi-Fi",
        "gateway": "Gateway",
    },
}

# What is wrong, after the device's name.
_WHAT = {
    "vi": {
        "offline": "mất kết nối",
        "flapping": "chập chờn: mất kết nối {flaps} lần liên tiếp",
        "broker_lost": "IOC mất kết nối với broker MQTT: trạng thái thiết bị tạm dừng cập nhật",
        "source_lost": "IOC mất kết nối với nguồn dữ liệu {sources} của {devices} thiết bị: trạng thái các thiết bị này tạm dừng cập nhật",
        "broadcast_not_reached": "bản tin khẩn cấp «{title}» chưa đến {missed}/{targeted} ấp/xóm sau 2 phút: {villages}",
        "ingest_stalled": "IOC ngừng ghi dữ liệu thiết bị: tin nhắn của thiết bị vẫn đến nhưng không lưu "
        "được vào cơ sở dữ liệu trong {stalled_s} giây; trạng thái thiết bị tạm dừng cập nhật, "
        "không thiết bị nào bị tính là mất kết nối",
        "camera_tamper": "bị che, xoay hoặc phá (tamper)",
        "camera_signal_loss": "mất tín hiệu hình ảnh",
        "camera_storage_failure": "lỗi bộ nhớ lưu trữ",
        "camera_clock_skew": "lệch giờ {value:.0f} giây (ngưỡng {threshold} giây)",
        "camera_auth_failed": "từ chối tài khoản (sai mật khẩu)",
        "eboard_screen_off": "tắt màn hình trong giờ hoạt động ({on_hours})",
        "speaker_battery_low": "đang chạy pin, còn {value:.0f}% (ngưỡng {threshold}%)",
        "uplink_down": "mất đường truyền Internet (uplink)",
        "temperature_high": "nhiệt độ cao {value:.1f} °C (ngưỡng {threshold} °C)",
        "threshold": "{metric} = {value} (ngưỡng {op} {threshold})",
    },
    "en": {
        "offline": "is offline",
        "flapping": "is flapping: offline {flaps} times in a row",
        "broker_lost": "the IOC lost its MQTT broker: device states are frozen",
        "source_lost": "the IOC lost the source {sources} of {devices} devices: their states are frozen",
        "broadcast_not_reached": "the emergency broadcast «{title}» has not reached {missed} of {targeted} villages after 2 minutes: {villages}",
        "ingest_stalled": "the IOC stopped storing device data: messages keep arriving but nothing "
        "was written to the database for {stalled_s} s; device states are frozen, no device is "
        "counted offline",
        "camera_tamper": "is tampered with (covered, moved or damaged)",
        "camera_signal_loss": "lost its video signal",
        "camera_storage_failure": "has a storage failure",
        "camera_clock_skew": "clock is off by {value:.0f} s (threshold {threshold} s)",
        "camera_auth_failed": "refuses our credentials",
        "eboard_screen_off": "screen is off during on-hours ({on_hours})",
        "speaker_battery_low": "is on battery at {value:.0f}% (threshold {threshold}%)",
        "uplink_down": "lost its Internet uplink",
        "temperature_high": "temperature is {value:.1f} °C (threshold {threshold} °C)",
        "threshold": "{metric} = {value} (threshold {op} {threshold})",
    },
}
_LABEL = {
    "vi": {
        "device": "Thiết bị",
        "place": "Địa điểm",
        "since": "Từ lúc",
        "affected": "Ảnh hưởng",
        "link": "Xem",
        "resolved": "Đã khắc phục lúc",
        "lasted": "kéo dài",
        "minutes": "phút",
        "devices": "thiết bị",
        "acked": "Đã tiếp nhận bởi",
        "assigned": "Giao cho",
        "open": "CẢNH BÁO",
        "repeat": "NHẮC LẠI",
        "escalate": "CHUYỂN CẤP",
        "resolve": "ĐÃ KHẮC PHỤC",
        "ack": "ĐÃ TIẾP NHẬN",
        "assign": "ĐÃ GIAO VIỆC",
        "test": "THỬ",
        "critical": "nghiêm trọng",
        "warning": "cảnh báo",
        "info": "thông tin",
        "unacked": "Chưa ai tiếp nhận",
        "comment": "Ghi chú",
    },
    "en": {
        "device": "Device",
        "place": "Place",
        "since": "Since",
        "affected": "Affected",
        "link": "Open",
        "resolved": "Resolved at",
        "lasted": "lasted",
        "minutes": "min",
        "devices": "devices",
        "acked": "Acknowledged by",
        "assigned": "Assigned to",
        "open": "ALERT",
        "repeat": "REMINDER",
        "escalate": "ESCALATED",
        "resolve": "RESOLVED",
        "ack": "ACKNOWLEDGED",
        "assign": "ASSIGNED",
        "test": "TEST",
        "critical": "critical",
        "warning": "warning",
        "info": "info",
        "unacked": "Nobody has acknowledged it",
        "comment": "Comment",
    },
}


def _lang(lang: str) -> str:
    return lang if lang in _WHAT else "vi"


def describe(rule: str, details: Mapping[str, Any], lang: str = "vi") -> str:
    """What is wrong, e.g. 'mất kết nối'."""
    what = _WHAT[_lang(lang)]
    key = "flapping" if rule == "offline" and details.get("flapping") else rule
    template = what.get(key) or what["threshold"]
    try:
        return template.format(
            **{
                "flaps": "",
                "metric": rule,
                "op": "",
                "threshold": "",
                "value": "",
                "on_hours": "",
                "stalled_s": "30",
                **details,
            }
        )
    except (ValueError, TypeError, KeyError):
        return template.split("{")[0].strip() or rule


def headline(
    rule: str, device_id: str | None, place: Place, details: Mapping[str, Any], lang: str = "vi"
) -> str:
    """One line: who and what, e.g. 'Router ấp Trung Bình mất kết nối'."""
    if device_id is None:
        return describe(rule, details, lang)
    name = place.device_name or f"{_KIND[_lang(lang)].get(place.kind or '', '')} {device_id}".strip()
    return f"{name} {describe(rule, details, lang)}"


def _when(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%H:%M:%S %d/%m/%Y")


def _device_link(public_url: str | None, alert: Mapping[str, Any]) -> str | None:
    """The dashboard page of the alert's device, when the IOC's public URL is known."""
    if not public_url or not alert.get("device_id"):
        return None
    return f"{public_url.rstrip('/')}/#/device/{alert['device_id']}"


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
    lg = _lang(lang)
    label, zone = _LABEL[lg], ZoneInfo(tz)
    head = headline(alert["rule"], alert.get("device_id"), place, alert.get("details") or {}, lg)
    sev = label.get(alert.get("severity", ""), alert.get("severity", ""))
    title = f"[{label.get(event, event.upper())}] {head}"
    lines = []
    if event not in ("resolve", "ack", "assign"):
        lines.append(f"{head} ({sev}).")
    if alert.get("device_id"):
        kind = _KIND[lg].get(place.kind or "", place.kind or "")
        lines.append(
            f"{label['device']}: {place.device_name or alert['device_id']} ({alert['device_id']}, {kind})"
        )
        where = ", ".join(x for x in (place.village_name, place.commune_name) if x)
        if where:
            lines.append(f"{label['place']}: {where}")
    lines.append(f"{label['since']}: {_when(alert['since'], zone)}")
    affected = list(alert.get("affected") or [])
    if affected:
        shown = ", ".join(affected[:10]) + (" …" if len(affected) > 10 else "")
        lines.append(f"{label['affected']}: {len(affected)} {label['devices']} ({shown})")
    if event == "resolve" and alert.get("resolved_at"):
        minutes = max(0, round((alert["resolved_at"] - alert["since"]).total_seconds() / 60))
        by = f" ({actor})" if actor else ""
        lines.append(
            f"{label['resolved']}: {_when(alert['resolved_at'], zone)}{by}, "
            f"{label['lasted']} {minutes} {label['minutes']}"
        )
    if event == "ack":
        lines.append(f"{label['acked']}: {alert.get('acked_by')}")
        if alert.get("ack_comment"):
            lines.append(f"{label['comment']}: {alert['ack_comment']}")
    if event == "assign":
        lines.append(f"{label['assigned']}: {alert.get('assignee')}")
    if event in ("repeat", "escalate"):
        lines.append(label["unacked"])
    link = _device_link(public_url, alert)
    if link:
        lines.append(f"{label['link']}: {link}")
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
        "status": describe(alert["rule"], alert.get("details") or {}, lang),
        "severity": alert["severity"],
        "link": link,
        "tracking_id": f"{alert['id']}-{event}",
    }
    return title, body, data
