"""Every shipped profile, against the payloads its file copies from the firmware's own docs or source."""

from datetime import UTC, datetime

import orjson
import pytest

from services.mapping import MappingError
from services.models import Device
from services.sources import MqttSource
from services.sources.profiles import SHIPPED_DIR, shipped, shipped_examples
from services.sources.vendor import Router, routes, translate

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SHIPPED = sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))
# MQTT payload examples (SNMP profiles cite walks instead: tests/sources/test_snmp.py)
CASES = [(name, i, ex) for name in SHIPPED for i, ex in enumerate(shipped_examples(name)) if "topic" in ex]


def test_the_project_ships_the_profiles_spec_8_names() -> None:
    assert {"tasmota", "esphome", "shelly-gen2", "zigbee2mqtt"} <= set(SHIPPED)
    # and Vietnamese devices: a smart-radio system's receivers as its vendor's server lists them
    # (HTTP: tests/sources/test_vendor_list.py) and a 4G warning device on MQTT
    assert {"truyenthanh", "tdlogy-canh-bao"} <= set(SHIPPED)
    for name in SHIPPED:
        assert shipped_examples(name), f"{name} cites no payload"


def _route_for(name: str, example: dict, topic_id: str):  # type: ignore[no-untyped-def]
    profile = shipped()[name]
    device = Device("dev-1", "xa", example["kind"], source=MqttSource(name, topic_id))
    router = Router(routes([device], {name: profile}, "ioc"))
    found = router.match(example["topic"])
    assert len(found) == 1, f"{example['topic']} matches {len(found)} rules of {name}"
    return found[0]


def _topic_id(name: str, topic: str) -> str:
    """The {id} part of an example's topic, found by trying the profile's templates."""
    profile = shipped()[name]
    assert profile.mqtt is not None
    templates = [r.topic for r in (*profile.mqtt.status, *profile.mqtt.availability, *profile.mqtt.events)]
    for t in templates:
        head, _, tail = t.partition("{id}")
        if topic.startswith(head) and topic.endswith(tail) and len(topic) > len(head) + len(tail):
            candidate = topic[len(head) : len(topic) - len(tail)]
            if "/" not in candidate:
                return candidate
    raise AssertionError(f"no template of {name} matches {topic}")


@pytest.mark.parametrize(("name", "i", "example"), CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_shipped_profile_maps_its_cited_payload(name: str, i: int, example: dict) -> None:
    route = _route_for(name, example, str(example.get("id") or _topic_id(name, example["topic"])))
    payload = example["payload"].encode()
    if "error" in example:
        with pytest.raises(MappingError) as err:
            translate(route, payload, NOW)
        assert err.value.field == example["error"]
        return
    pub = translate(route, payload, NOW)
    channel = pub.topic.rsplit("/", 1)[1]
    if "availability" in example:
        assert channel == "availability"
        assert pub.payload.decode() == example["availability"]
        return
    doc = orjson.loads(pub.payload)
    expect = example["status"] if "status" in example else example["event"]
    assert channel == ("status" if "status" in example else "event")
    for key, value in expect.items():
        assert doc.get(key) == value, f"{key}: {doc.get(key)!r} != {value!r} in {doc}"
    for key in example.get("absent", []):
        assert key not in doc
    assert doc["ts"] == example.get("ts", NOW.isoformat(timespec="microseconds"))
