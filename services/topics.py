"""Every MQTT topic the IOC uses, built and parsed in one place."""

from dataclasses import dataclass

ROOT = "ioc/v1"
CHANNELS = ("status", "availability", "event")
DEVICE_FILTER = f"{ROOT}/+/+/+/+"
INTERNAL = "ioc/internal"
# Published by ingest and received back to prove the broker path works end to end.
PROBE = f"{INTERNAL}/probe"


@dataclass(frozen=True)
class DeviceTopic:
    commune_id: str
    kind: str
    device_id: str
    channel: str


def device_topic(commune_id: str, kind: str, device_id: str, channel: str) -> str:
    return f"{ROOT}/{commune_id}/{kind}/{device_id}/{channel}"


def parse(topic: str) -> DeviceTopic | None:
    """The parts of a device topic, or None when it is not one."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != ROOT or parts[5] not in CHANNELS:
        return None
    return DeviceTopic(parts[2], parts[3], parts[4], parts[5])


def shared(group: str, topic_filter: str = DEVICE_FILTER) -> str:
    """A shared subscription: the broker spreads messages over the group's members."""
    return f"$share/{group}/{topic_filter}"
