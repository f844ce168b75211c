"""The lean paho client: decodes like paho does, and loses nothing across its read buffer."""

import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.paho_fast import FastClient, decode_qos1_publish
from tests.support import wait_for


def _publish_body(topic: bytes, mid: int, payload: bytes, props: Properties | None) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big")
    if props is not None:
        body += props.pack()
    return body + payload


def _props(**values: object) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    for k, v in values.items():
        setattr(p, k, v)
    return p


@pytest.mark.parametrize(
    "props",
    [
        _props(),
        _props(UserProperty=[("a", "b"), ("xã", "Thoại Giang")], ContentType="application/json"),
        _props(MessageExpiryInterval=60, PayloadFormatIndicator=1, CorrelationData=b"x" * 300),
    ],
)
def test_decodes_mqtt5_publish_as_paho_does(props: Properties) -> None:
    topic, payload = b"ioc/v1/thoai-giang/speaker/spk-1/status", b'{"volume": 70}'
    body = _publish_body(topic, 4242, payload, props)
    ours = decode_qos1_publish(body, mqtt5=True)
    theirs = _packet.decode_publish(0x32, body, paho.MQTTv5)
    assert ours == (theirs.topic.decode(), theirs.mid, theirs.payload)
    assert ours == (topic.decode(), 4242, payload)


def test_decodes_mqtt311_publish_and_empty_payload() -> None:
    body = _publish_body(b"a/b", 1, b"", None)
    assert decode_qos1_publish(body, mqtt5=False) == ("a/b", 1, b"")
    assert decode_qos1_publish(_publish_body(b"a/b", 65535, b"x", None), mqtt5=False) == ("a/b", 65535, b"x")


def test_invalid_utf8_topic_is_kept_readable_not_raised() -> None:
    topic, _, _ = decode_qos1_publish(_publish_body(b"ioc/\xff/x", 7, b"{}", _props()), mqtt5=True)
    assert topic == "ioc/\ufffd/x"


@pytest.mark.parametrize(
    "body",
    [
        b"\x00",  # no room for the topic length
        b"\x00\x05ab",  # topic longer than the packet
        b"\x00\x01a\x00",  # no room for the packet id
        b"\x00\x01a\x00\x01\x09",  # properties claim 9 bytes, none follow
        b"\x00\x01a\x00\x01\xff\xff\xff\xff\x01",  # property length over 4 bytes
    ],
)
def test_malformed_publish_raises(body: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        decode_qos1_publish(body, mqtt5=True)


def _collector(
    mqtt_url: str, client_id: str, handed: list[int]
) -> tuple[FastClient, list[tuple[str, bytes, int]], list[bytes]]:
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    qos1: list[tuple[str, bytes, int]] = []
    qos0: list[bytes] = []
    subscribed = threading.Event()

    def on_qos1(msgs: list[tuple[str, bytes, int]]) -> None:
        qos1.extend(msgs)
        handed.append(len(msgs))
        for _, _, mid in msgs:
            c.ack(mid, 1)  # the broker sends at most its inflight window unacknowledged

    c = FastClient(
        paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=True,
        on_qos1=on_qos1,
    )
    c.on_message = lambda _c, _u, msg: qos0.append(bytes(msg.payload))
    c.on_subscribe = lambda *_: subscribed.set()
    c.on_connect = lambda cl, *_: cl.subscribe("t/#", qos=1)
    c.connect(host, int(port))
    c.loop_start()
    assert subscribed.wait(10)
    return c, qos1, qos0


def test_receives_every_message_across_buffer_boundaries(mqtt_url: str) -> None:
    """Thousands of small messages (many per read) and payloads larger than the read buffer."""
    handed: list[int] = []
    c, qos1, qos0 = _collector(mqtt_url, "fast-test", handed)
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fast-pub", protocol=paho.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect(host, int(port))
    pub.loop_start()
    try:
        big = bytes(range(256)) * 1500  # 384 KB: spans two reads of 256 KiB
        sent = [(f"t/{i % 50}", f'{{"i": {i}}}'.encode()) for i in range(5000)]
        sent.insert(2500, ("t/big", big))
        infos = [pub.publish(t, p, qos=1, properties=_props(UserProperty=[("k", "v")])) for t, p in sent]
        infos.append(pub.publish("t/zero", b"qos0", qos=0))
        for info in infos:
            info.wait_for_publish(30)
        wait_for(lambda: len(qos1) == len(sent) and qos0 == [b"qos0"], timeout=30)
        assert [(t, p) for t, p, _ in qos1] == sent
        assert all(1 <= mid <= 65535 for _, _, mid in qos1)
        # Messages that arrived in one read were handed over together, not one by one.
        assert max(handed) > 1
    finally:
        pub.disconnect()
        pub.loop_stop()
        c.disconnect()
        c.loop_stop()
