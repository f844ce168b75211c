"""Every MQTT topic the IOC uses, built and parsed in one place."""

from dataclasses import dataclass

ROOT = "ioc/v1"
CHANNELS = ("status", "availability", "event")
# Published by the IOC to devices (SPEC §9): ingest hears them on its filter and ignores them.
IGNORED = ("cmd",)
# Device -> IOC: the results of commands (services.broadcasts.results).
RESULTS = "cmd_result"
# Device -> IOC channels nothing consumes yet: dead letters until then.
UNHANDLED: tuple[str, ...] = ()
DEVICE_FILTER = f"{ROOT}/+/+/+/+"
# What ingest subscribes to: the whole tree, so a topic of the wrong shape (a device may publish
# deeper topics under its own prefix) is a dead letter instead of silently never received.
INGEST_FILTER = f"{ROOT}/#"
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


def channel_of(topic: str) -> str | None:
    """The last level of a topic shaped like a device's (`ioc/v1/{c}/{k}/{d}/{channel}`), else None."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != ROOT:
        return None
    return parts[5]


def shared(group: str, topic_filter: str = INGEST_FILTER) -> str:
    """A shared subscription: the broker spreads messages over the group's members."""
    return f"$share/{group}/{topic_filter}"
