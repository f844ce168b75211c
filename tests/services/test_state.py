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
