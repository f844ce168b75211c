"""The device state machine, without I/O."""

from datetime import UTC, datetime, timedelta

from services.models import Liveness, State
from services.state import derive

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1)


def live(
    last_seen_s_ago: float | None,
    *,
    kind: str = "speaker",
    window_s: int = 180,
    availability: str | None = None,
    metrics: dict | None = None,
    maintenance: bool = False,
) -> Liveness:
    seen = None if last_seen_s_ago is None else NOW - timedelta(seconds=last_seen_s_ago)
    return Liveness(kind, window_s, seen, availability, metrics or {}, in_maintenance=maintenance)


def test_never_heard_is_unknown() -> None:
    assert derive(live(None), NOW, LONG_AGO)[0] == State.UNKNOWN


def test_recent_status_is_online_and_silence_past_three_heartbeats_is_offline() -> None:
    assert derive(live(179), NOW, LONG_AGO)[0] == State.ONLINE
    state, reason = derive(live(181), NOW, LONG_AGO)
    assert state == State.OFFLINE and reason == "no status for 181 s"


def test_availability_offline_wins_over_a_recent_status() -> None:
    assert derive(live(1, availability="offline"), NOW, LONG_AGO)[0] == State.OFFLINE
    assert derive(live(1, availability="online"), NOW, LONG_AGO)[0] == State.ONLINE


def test_maintenance_wins_over_everything() -> None:
    assert derive(live(999, availability="offline", maintenance=True), NOW, LONG_AGO)[0] == State.MAINTENANCE


def test_camera_auth_refusal_and_unreachable() -> None:
    assert (
        derive(live(1, kind="camera", metrics={"reachable": True, "auth_failed": True}), NOW, LONG_AGO)[0]
        == State.AUTH_FAILED
    )
    assert derive(live(1, kind="camera", metrics={"reachable": False}), NOW, LONG_AGO)[0] == State.OFFLINE
    # the same fields on another kind mean nothing to the state
    assert derive(live(1, metrics={"reachable": False}), NOW, LONG_AGO)[0] == State.ONLINE


def test_silence_while_the_ioc_could_not_hear_its_broker_does_not_count() -> None:
    # heard 10 minutes ago, but the broker came back only 60 s ago: the device gets a full window
    assert derive(live(600), NOW, NOW - timedelta(seconds=60))[0] == State.ONLINE
    assert derive(live(600), NOW, NOW - timedelta(seconds=181))[0] == State.OFFLINE


def test_liveness_is_measured_on_receive_time_not_device_ts() -> None:
    # last_seen is the receive time; a device whose ts is hours old but that was just heard is online
    assert derive(live(2), NOW, LONG_AGO)[0] == State.ONLINE


def polled(last_seen_s_ago: float | None, metrics: dict, kind: str = "gateway") -> Liveness:
    seen = None if last_seen_s_ago is None else NOW - timedelta(seconds=last_seen_s_ago)
    return Liveness(kind, 90, seen, None, metrics, polled=True)


def test_a_polled_device_of_any_kind_that_refuses_our_credentials_is_auth_failed() -> None:
    for kind in ("gateway", "wifi", "speaker", "eboard", "camera"):
        state, reason = derive(polled(1, {"reachable": True, "auth_failed": True}, kind), NOW, LONG_AGO)
        assert state == State.AUTH_FAILED and reason == "device refuses our credentials"
    # the same flags published by a device that speaks SPEC §4 itself change nothing
    assert derive(live(1, kind="wifi", metrics={"auth_failed": True}), NOW, LONG_AGO)[0] == State.ONLINE


def test_a_polled_device_its_poller_cannot_reach_is_offline_and_online_again_when_it_answers() -> None:
    state, reason = derive(polled(1, {"reachable": False, "auth_failed": False}), NOW, LONG_AGO)
    assert state == State.OFFLINE and reason == "device does not answer its polls"
    assert derive(polled(1, {"reachable": True, "auth_failed": False}), NOW, LONG_AGO)[0] == State.ONLINE
    # silence (no poller) still counts only past the window
    assert derive(polled(91, {"reachable": True}), NOW, LONG_AGO)[0] == State.OFFLINE
    assert derive(polled(None, {}), NOW, LONG_AGO)[0] == State.UNKNOWN


def test_a_polled_device_in_maintenance_stays_in_maintenance_whatever_its_poll_says() -> None:
    d = Liveness("gateway", 90, NOW, None, {"auth_failed": True}, in_maintenance=True, polled=True)
    assert derive(d, NOW, LONG_AGO)[0] == State.MAINTENANCE


def test_a_polled_device_window_covers_a_poll_and_a_takeover() -> None:
    from services.models import Device
    from services.sources.model import HttpSource, MqttSource, PingSource

    assert Device("gw", "c", "gateway", source=PingSource("192.0.2.1", poll_s=10)).liveness_window_s >= 70
    assert Device("gw", "c", "gateway", source=PingSource("192.0.2.1", poll_s=60)).liveness_window_s == 180
    assert Device("eb", "c", "eboard", source=HttpSource("http://192.0.2.3/")).liveness_window_s >= 100
    # a vendor MQTT device is judged by its heartbeat, as before
    assert (
        Device("s", "c", "speaker", heartbeat_s=300, source=MqttSource("tasmota", "s")).liveness_window_s
        == 900
    )
    assert Device("gw", "c", "gateway", source=PingSource("192.0.2.1")).polled
    assert not Device("s", "c", "speaker", source=MqttSource("tasmota", "s")).polled
