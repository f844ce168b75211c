"""Payload checks of SPEC §4, without I/O."""

from datetime import UTC, datetime, timedelta

import pytest

from services.payloads import BadPayload, parse_availability, parse_event, parse_status

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "kind,body",
    [
        (
            "speaker",
            b'{"volume": 0, "playing": false, "power": "solar", "battery_pct": 100, "rssi_dbm": -80.5}',
        ),
        ("eboard", b'{"screen_on": true, "errors": ["panel 3"], "content_id": 17}'),
        ("wifi", b'{"clients": 3, "rx_bytes": 12345678901, "uplink_up": false, "channel": 11}'),
        ("gateway", b'{"uplink_up": true, "rtt_ms": 0, "cpu_pct": 99.9}'),
        ("camera", b'{"reachable": true, "clock_offset_s": -3600.5, "manufacturer": "Hikvision"}'),
    ],
)
def test_valid_payloads_of_each_kind(kind: str, body: bytes) -> None:
    st = parse_status(kind, body, NOW)
    assert st.has_ts is False and st.ts == NOW and st.metrics


@pytest.mark.parametrize(
    "kind,body,field",
    [
        ("speaker", b'{"volume": 101}', "volume"),
        ("speaker", b'{"volume": true}', "volume"),
        ("speaker", b'{"power": "diesel"}', "power"),
        ("eboard", b'{"errors": "broken"}', "errors"),
        ("eboard", b'{"errors": [1]}', "errors"),
        ("wifi", b'{"clients": -1}', "clients"),
        ("gateway", b'{"uplink_up": 1}', "uplink_up"),
        ("camera", b'{"tamper": "no"}', "tamper"),
    ],
)
def test_wrong_types_name_the_field(kind: str, body: bytes, field: str) -> None:
    with pytest.raises(BadPayload) as exc:
        parse_status(kind, body, NOW)
    assert exc.value.reason == "wrong_type" and repr(field) in exc.value.detail


def test_ts_forms_and_limits() -> None:
    assert parse_status("speaker", b'{"ts": "2026-11-25T08:00:00+07:00"}', NOW).ts == NOW
    assert parse_status("speaker", b'{"ts": 1795568400000}', NOW).ts == NOW
    assert parse_status("speaker", b'{"ts": "2026-11-25T01:04:59Z"}', NOW).has_ts
    ahead = (NOW + timedelta(minutes=5, seconds=1)).isoformat()
    with pytest.raises(BadPayload, match="ts_future"):
        parse_status("speaker", f'{{"ts": "{ahead}"}}'.encode(), NOW)
    with pytest.raises(BadPayload, match="no UTC offset"):
        parse_status("speaker", b'{"ts": "2026-11-25T08:00:00"}', NOW)
    with pytest.raises(BadPayload, match="bad_ts"):
        parse_status("speaker", b'{"ts": true}', NOW)
    # years-old device clocks are history, not errors
    assert parse_status("speaker", b'{"ts": "2019-01-01T00:00:00Z"}', NOW).ts.year == 2019


def test_size_and_shape() -> None:
    with pytest.raises(BadPayload, match="too_large"):
        parse_status("speaker", b'{"x": "' + b"a" * 65536 + b'"}', NOW)
    with pytest.raises(BadPayload, match="not_object"):
        parse_status("speaker", b'"online"', NOW)
    with pytest.raises(BadPayload, match="not_json"):
        parse_status("speaker", b"\xff\xfe", NOW)


def test_events_and_availability() -> None:
    ev = parse_event(b'{"type": "tamper", "severity": "critical", "message": "che camera", "zone": 2}', NOW)
    assert (ev.type, ev.severity, ev.message, ev.fields) == ("tamper", "critical", "che camera", {"zone": 2})
    with pytest.raises(BadPayload):
        parse_event(b'{"type": "x", "severity": "fatal"}', NOW)
    assert parse_availability(b" online\n") == "online"
    with pytest.raises(BadPayload, match="bad_availability"):
        parse_availability(b"ONLINE!")


def test_nesting_and_key_counts_are_bounded() -> None:
    deep = b'{"x": ' + b"[" * 31 + b"]" * 31 + b"}"  # 32 levels with the object itself
    assert parse_status("speaker", deep, NOW).metrics["x"] is not None
    with pytest.raises(BadPayload, match="too_deep"):
        parse_status("speaker", b'{"x": ' + b"[" * 32 + b"]" * 32 + b"}", NOW)
    with pytest.raises(BadPayload, match="too_deep"):
        parse_event(b'{"type": "t", "x": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", NOW)
    many = "{" + ",".join(f'"k{i}": {{"a": 1}}' for i in range(600)) + "}"
    with pytest.raises(BadPayload, match="too_many_keys"):
        parse_status("speaker", many.encode(), NOW)


def test_nul_passes_the_checks_and_is_left_to_the_write_path() -> None:
    """PostgreSQL refuses NUL; services.storage dead-letters it (a pre-check here cost every message)."""
    assert parse_status("speaker", b'{"note": "a\\u0000b"}', NOW).metrics["note"] == "a\x00b"
    assert parse_event(b'{"type": "a\\u0000"}', NOW).type == "a\x00"


def test_lone_surrogates_and_infinite_numbers_are_not_json() -> None:
    for body in (b'{"x": "\\ud800"}', b'{"x": "\xed\xa0\x80"}', b'{"x": 1e400}', b'{"x": NaN}'):
        with pytest.raises(BadPayload, match="not_json"):
            parse_status("speaker", body, NOW)
    # past 64 bits an integer is read as a float: kept, with its magnitude
    assert parse_status("wifi", b'{"rx_bytes": 1180591620717411303424}', NOW).metrics["rx_bytes"] == 2.0**70
