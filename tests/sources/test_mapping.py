"""The field-mapping engine: what a profile's expressions make of payloads, and a property: on any
JSON (or any bytes) a mapping returns values or a MappingError, never anything else."""

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.mapping import MappingError, apply_fields, compile_field, compile_ts, decode, read, read_ts
from services.models import Device
from services.sources import MqttSource
from services.sources.profiles import parse
from services.sources.vendor import Router, routes, translate

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_scale_and_offset_turn_a_modem_csq_into_dbm() -> None:
    f = compile_field("rssi_dbm", {"path": "modem.csq", "scale": 2, "offset": -113})
    assert apply_fields("speaker", (f,), {"modem": {"csq": 20}}) == {"rssi_dbm": -73}


def test_split_makes_positional_text_a_list() -> None:
    f = compile_field("volume", "[3]")
    assert apply_fields("speaker", (f,), decode(b"OK,1,FM,65,23.5", ",")) == {"volume": 65}


def test_numeric_text_becomes_a_number_of_the_kind_and_bad_text_is_a_mapping_error() -> None:
    f = compile_field("temperature_c", "@")
    assert apply_fields("eboard", (f,), decode(b"41.5")) == {"temperature_c": 41.5}
    with pytest.raises(MappingError) as err:
        apply_fields("eboard", (f,), decode(b"hot"))
    assert err.value.field == "temperature_c"


def test_a_value_outside_its_map_is_a_mapping_error_naming_the_field() -> None:
    f = compile_field("playing", {"path": "POWER", "map": {"ON": True, "OFF": False}})
    with pytest.raises(MappingError, match="TOGGLE"):
        read(f, {"POWER": "TOGGLE"})


def test_local_time_sent_as_utc_is_corrected_by_utc_offset_s() -> None:
    ts = compile_ts({"path": "Time", "unit": "rfc3339", "utc_offset_s": 25200})
    assert read_ts(ts, {"Time": "2026-12-02T19:00:00"}) == datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert read_ts(compile_ts({"path": "t", "unit": "ms"}), {"t": 1796212800000}) == datetime(
        2026, 12, 2, 12, 0, tzinfo=UTC
    )


def test_a_field_scoped_to_kinds_applies_to_those_only() -> None:
    f = compile_field("uptime_s", {"path": "UptimeSec", "kinds": ["gateway", "wifi"]})
    assert apply_fields("speaker", (f,), {"UptimeSec": 5}) == {}
    assert apply_fields("gateway", (f,), {"UptimeSec": 5}) == {"uptime_s": 5}
    with pytest.raises(ValueError, match="speaker has no field"):
        compile_field("uptime_s", {"path": "UptimeSec", "kinds": ["speaker"]})


def test_duration_s_reads_tasmota_uptime_text_and_leaves_other_text_to_the_type_check() -> None:
    # GetUptime in arendst/Tasmota support_tasmota.ino: "<days>T<hh>:<mm>:<ss>"
    f = compile_field("uptime_s", "UptimeSec || duration_s(Uptime)")
    assert apply_fields("gateway", (f,), {"Uptime": "1T02:03:04"}) == {"uptime_s": 93784}
    assert apply_fields("gateway", (f,), {"Uptime": "0T00:15:09", "UptimeSec": 909}) == {"uptime_s": 909}
    assert apply_fields("gateway", (f,), {"Uptime": "02:03:04"}) == {"uptime_s": 7384}
    assert apply_fields("gateway", (f,), {"Heap": 29}) == {}
    with pytest.raises(MappingError) as err:
        apply_fields("gateway", (f,), {"Uptime": "soon"})
    assert err.value.field == "uptime_s"


def test_celsius_converts_a_temperature_the_payload_says_is_in_fahrenheit_or_kelvin() -> None:
    # Tasmota with SetOption8 1: every Temperature is c * 1.8 + 32 and the SENSOR says "TempUnit":"F"
    # (arendst/Tasmota tasmota/tasmota_support/support.ino, TempUnit and ConvertTempToFahrenheit)
    f = compile_field("temperature_c", "celsius(DS18B20.Temperature, TempUnit)")
    doc = {"DS18B20": {"Temperature": 81.5}, "TempUnit": "F"}
    assert apply_fields("speaker", (f,), doc) == {"temperature_c": 27.5}
    doc = {"DS18B20": {"Temperature": 27.5}, "TempUnit": "C"}
    assert apply_fields("speaker", (f,), doc) == {"temperature_c": 27.5}
    assert apply_fields("speaker", (f,), {"DS18B20": {"Temperature": 27.5}}) == {"temperature_c": 27.5}
    doc = {"DS18B20": {"Temperature": "14.0"}, "TempUnit": "°f"}
    assert apply_fields("speaker", (f,), doc) == {"temperature_c": -10}
    doc = {"DS18B20": {"Temperature": 300.65}, "TempUnit": "K"}
    assert apply_fields("speaker", (f,), doc) == {"temperature_c": 27.5}
    assert apply_fields("speaker", (f,), {"TempUnit": "F"}) == {}
    with pytest.raises(MappingError) as err:
        apply_fields("speaker", (f,), {"DS18B20": {"Temperature": "hot"}, "TempUnit": "F"})
    assert err.value.field == "temperature_c"


@pytest.mark.parametrize("text", [b"nan", b"-nan", b"None", b"null"])
def test_a_no_reading_text_leaves_a_numeric_field_absent(text: bytes) -> None:
    # ESPHome: "nan" from value_accuracy_to_string, "None" with publish_nan_as_none (mqtt_sensor.cpp)
    f = compile_field("temperature_c", "@")
    assert apply_fields("speaker", (f,), decode(text)) == {}
    # a text field takes the word as it is (JSON null excepted: no value at all)
    firmware = apply_fields("speaker", (compile_field("firmware", "@"),), decode(text))
    assert firmware == ({} if text == b"null" else {"firmware": text.decode()})


def test_a_payload_that_is_not_a_json_object_is_a_mapping_error_when_no_field_reads_it() -> None:
    fields = (compile_field("temperature_c", "DS18B20.Temperature"),)
    for payload in (b"ON", b"41.5", b'"text"'):
        with pytest.raises(MappingError) as err:
            apply_fields("speaker", fields, decode(payload))
        assert err.value.field == "payload"
    # an empty payload or JSON null is nothing to read, not an error
    assert apply_fields("speaker", fields, decode(b"")) == {}
    assert apply_fields("speaker", fields, decode(b"null")) == {}


def test_availability_payloads_compare_without_case() -> None:
    profile = parse("lwt", {"mqtt": {"availability": {"topic": "t/{id}/LWT"}}})
    router = Router(
        routes([Device("d-1", "xa", "speaker", source=MqttSource("lwt", "x"))], {"lwt": profile}, "ioc")
    )
    (route,) = router.match("t/x/LWT")
    assert translate(route, b"Online", NOW).payload == b"online"
    assert translate(route, b"OFFLINE", NOW).payload == b"offline"


# A profile that reaches into payloads every way the engine can: paths, maps, scale, functions,
# text, split, device time.
PROFILE = parse(
    "fuzz",
    {
        "mqtt": {
            "availability": {
                "topic": "f/{id}/lwt",
                "path": "state",
                "online": ["online", 1],
                "offline": "offline",
            },
            "status": [
                {
                    "topic": "f/{id}/s",
                    "fields": {
                        "volume": {"path": "a.b", "scale": 2.5, "offset": -3},
                        "playing": {"path": "p", "map": {"ON": True, "OFF": False, "1": True}},
                        "rssi_dbm": "abs(r)",
                        "source": "join(',', s)",
                        "errors": "e",
                        "temperature_c": "max(t)",
                    },
                    "ts": {"path": "ts", "unit": "ms"},
                },
                {"topic": "f/{id}/t", "split": ";", "fields": {"battery_pct": "[1]", "firmware": "[0]"}},
            ],
            "events": [{"topic": "f/{id}/e", "type": "x", "message": "m", "fields": {"code": "c"}}],
        }
    },
)
DEVICE = Device("fz-1", "xa", "speaker", source=MqttSource("fuzz", "1"))
ROUTER = Router(routes([DEVICE], {"fuzz": PROFILE}, "ioc"))
TOPICS = ["f/1/lwt", "f/1/s", "f/1/t", "f/1/e"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=20,
)
keyed = st.fixed_dictionaries(
    {},
    optional={
        k: json_values for k in ("a", "p", "r", "s", "e", "t", "ts", "state", "m", "c", "type", "severity")
    },
).map(lambda d: {**d, "a": {"b": d["a"]}} if "a" in d else d)


def _encode(doc: object) -> bytes:
    try:
        return orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        return repr(doc).encode()  # NaN, huge ints: not JSON, so text, as a device might send


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), doc=st.one_of(keyed, json_values))
def test_mapping_arbitrary_json_returns_a_message_or_a_mapping_error(topic: str, doc: object) -> None:
    (route,) = ROUTER.match(topic)
    try:
        pub = translate(route, _encode(doc), NOW)
    except MappingError as err:
        assert err.field and err.detail
        return
    assert pub.topic.startswith("ioc/v1/xa/speaker/fz-1/")
    if not pub.topic.endswith("/availability"):
        assert isinstance(orjson.loads(pub.payload), dict)


@settings(max_examples=200, deadline=None)
@given(topic=st.sampled_from(TOPICS), payload=st.binary(max_size=64))
def test_mapping_arbitrary_bytes_returns_a_message_or_a_mapping_error(topic: str, payload: bytes) -> None:
    (route,) = ROUTER.match(topic)
    try:
        translate(route, payload, NOW)
    except MappingError:
        pass
