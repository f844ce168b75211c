"""ONVIF event topics mapped to IOC camera events and status fields (pure; no I/O)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Normalized topic prefix (namespace prefixes stripped) -> IOC event type.
TOPIC_TYPES: tuple[tuple[str, str], ...] = (
    ("VideoSource/GlobalSceneChange", "tamper"),
    ("VideoSource/ImageTooDark", "tamper"),
    ("VideoSource/ImageTooBright", "tamper"),
    ("VideoSource/ImageTooBlurry", "tamper"),
    ("RuleEngine/TamperDetector/Tamper", "tamper"),
    ("VideoSource/SignalLoss", "signal_loss"),
    ("Device/HardwareFailure/StorageFailure", "storage_failure"),
    ("VideoSource/MotionAlarm", "motion"),
    ("RuleEngine/CellMotionDetector/Motion", "motion"),
    ("RecordingConfig/JobState", "recording"),
)
# Data items that carry the state, by preference; the first SimpleItem otherwise.
STATE_ITEMS = ("State", "IsTamper", "IsMotion", "Failed", "Value")
# Status fields the poller reports from event state (SPEC §4 camera fields and two extras).
STATUS_FIELDS = ("tamper", "motion", "recording", "signal_loss", "storage_failure")
_MESSAGES = {
    ("tamper", True): "camera view tampered with (covered, moved or blinded)",
    ("tamper", False): "camera view back to normal",
    ("signal_loss", True): "video signal lost",
    ("signal_loss", False): "video signal back",
    ("storage_failure", True): "camera storage failed",
    ("storage_failure", False): "camera storage back",
    ("motion", True): "motion detected",
    ("motion", False): "motion ended",
    ("recording", True): "recording",
    ("recording", False): "recording stopped",
}


@dataclass(frozen=True)
class CameraEvent:
    type: str
    active: bool
    topic: str
    source: str | None
    camera_at: datetime | None
    operation: str | None  # Initialized / Changed / Deleted
    data: dict[str, str]

    @property
    def abnormal(self) -> bool:
        """The state an operator must hear of (for recording: not recording)."""
        return not self.active if self.type == "recording" else self.active

    @property
    def severity(self) -> str:
        if not self.abnormal or self.type == "motion":
            return "info"
        return "critical" if self.type in ("signal_loss", "storage_failure") else "warning"

    @property
    def message(self) -> str:
        return _MESSAGES[(self.type, self.active)]

    @property
    def worth_publishing(self) -> bool:
        """Every change; of the states a new subscription reports, only the abnormal ones."""
        if self.operation == "Initialized":
            return self.abnormal and self.type != "motion"
        return self.operation != "Deleted"


def normalize_topic(topic: str) -> str:
    """`tns1:VideoSource/tnsaxis:Foo` -> `VideoSource/Foo`: vendors use their own prefixes."""
    return "/".join(part.rpartition(":")[2] for part in topic.strip().split("/"))


def event_type(topic: str) -> str | None:
    t = normalize_topic(topic)
    for prefix, kind in TOPIC_TYPES:
        if t == prefix or t.startswith(prefix + "/"):
            return kind
    return None


def _items(group: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (getattr(group, "SimpleItem", None) or []) if group is not None else []:
        name, value = getattr(item, "Name", None), getattr(item, "Value", None)
        if name is not None and value is not None:
            out[str(name)] = str(value)
    return out


def _truthy(kind: str, value: str | None) -> bool:
    if value is None:
        return False
    if kind == "recording":
        return value.strip().lower() == "active"
    return value.strip().lower() in ("true", "1", "active", "on")


def parse(msg: Any) -> CameraEvent | None:
    """A PullMessages NotificationMessage (zeep object) as an IOC camera event; None if not ours."""
    topic_obj = getattr(msg, "Topic", None)
    topic = getattr(topic_obj, "_value_1", None) if topic_obj is not None else None
    if not isinstance(topic, str):
        return None
    kind = event_type(topic)
    if kind is None:
        return None
    body = getattr(getattr(msg, "Message", None), "_value_1", None)
    if body is None:
        return None
    data = _items(getattr(body, "Data", None))
    source = _items(getattr(body, "Source", None))
    value = next((data[k] for k in STATE_ITEMS if k in data), next(iter(data.values()), None))
    at = getattr(body, "UtcTime", None)
    return CameraEvent(
        type=kind,
        active=_truthy(kind, value),
        topic=normalize_topic(topic),
        source=next(iter(source.values()), None),
        camera_at=at if isinstance(at, datetime) else None,
        operation=getattr(body, "PropertyOperation", None),
        data=data,
    )


class EventState:
    """What the events say now, per topic and source, folded into status fields."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str, str | None], bool] = {}
        self._types: dict[tuple[str, str, str | None], str] = {}

    def apply(self, ev: CameraEvent) -> None:
        key = (ev.type, ev.topic, ev.source)
        if ev.operation == "Deleted":
            self._active.pop(key, None)
            return
        self._active[key] = ev.active
        self._types[key] = ev.type

    def clear(self) -> None:
        self._active.clear()

    def fields(self) -> dict[str, bool]:
        """tamper/motion/...: true when any source of that kind is active (recording: any active)."""
        out: dict[str, bool] = {}
        for (kind, _, _), active in self._active.items():
            out[kind] = out.get(kind, False) or active
        return out
