"""Pure parts of alerting: conditions, the `for`/hysteresis/suppression clock, flap detection,
configuration checks and messages. No I/O."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.main import main as ioc
from services.alerts import config, messages
from services.alerts.rules import DeviceView, evaluate, flapping
from services.alerts.timing import Action, Track, step
from services.errors import InvalidInput

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_for_duration_opens_only_after_the_condition_held_long_enough() -> None:
    t = Track()
    kw = {"for_s": 120, "clear_s": 0, "suppressed": False, "alert_open": False}
    assert step(t, True, s(0), s(10), **kw) is Action.NONE
    assert step(t, False, None, s(60), **kw) is Action.NONE  # a blip shorter than `for`
    assert step(t, True, s(70), s(80), **kw) is Action.NONE
    assert step(t, True, s(70), s(189), **kw) is Action.NONE
    assert step(t, True, s(70), s(190), **kw) is Action.OPEN


def test_hysteresis_resolves_only_after_clear_s() -> None:
    t = Track(since=s(0))
    kw = {"for_s": 0, "clear_s": 30, "suppressed": False, "alert_open": True}
    assert step(t, False, None, s(100), **kw) is Action.NONE
    assert step(t, True, s(110), s(110), **kw) is Action.NONE  # back before clear_s: still one alert
    assert step(t, False, None, s(120), **kw) is Action.NONE
    assert step(t, False, None, s(150), **kw) is Action.RESOLVE


def test_unknown_condition_keeps_the_alert_as_it_is() -> None:
    t = Track(since=s(0))
    assert step(t, None, None, s(999), for_s=0, clear_s=0, suppressed=False, alert_open=True) is Action.NONE


def test_suppression_restarts_the_for_clock_when_it_lifts() -> None:
    t = Track()
    kw = {"for_s": 60, "clear_s": 0, "alert_open": False}
    assert step(t, True, s(0), s(50), suppressed=True, **kw) is Action.NONE
    assert step(t, True, s(0), s(500), suppressed=True, **kw) is Action.NONE
    assert step(t, True, s(0), s(510), suppressed=False, **kw) is Action.NONE  # offline since 0, but held
    assert step(t, True, s(0), s(569), suppressed=False, **kw) is Action.NONE
    assert step(t, True, s(0), s(570), suppressed=False, **kw) is Action.OPEN


def test_flapping_needs_count_in_window_and_ends_after_quiet() -> None:
    times = [s(0), s(20), s(40)]
    assert flapping(times, s(41), count=3, window_s=60, clear_s=120) == s(40)
    assert flapping(times[:2], s(41), count=3, window_s=60, clear_s=120) is None
    assert flapping([s(0), s(50), s(100)], s(101), count=3, window_s=60, clear_s=120) is None  # too slow
    assert flapping(times, s(160), count=3, window_s=60, clear_s=120) is None  # quiet for clear_s
    # A slow flapper keeps its one episode (and its one alert) while it goes on.
    slow = [*times, s(130), s(240)]
    assert flapping(slow, s(250), count=3, window_s=60, clear_s=120) == s(40)


def view(state: str = "online", **metrics: object) -> DeviceView:
    return DeviceView("d", "speaker", state, s(0), metrics)


def test_conditions_of_builtin_rules() -> None:
    cfg = config.build({})
    r = {name: rule.settings for name, rule in cfg.rules.items()}
    now = s(100)
    assert evaluate(
        "speaker_battery_low", r["speaker_battery_low"], view(power="battery", battery_pct=19), now, now
    ).active
    assert not evaluate(
        "speaker_battery_low", r["speaker_battery_low"], view(power="mains", battery_pct=5), now, now
    ).active
    assert (
        evaluate(
            "speaker_battery_low",
            r["speaker_battery_low"],
            view("offline", power="battery", battery_pct=1),
            now,
            now,
        ).active
        is None
    )
    assert evaluate("camera_clock_skew", r["camera_clock_skew"], view(clock_offset_s=-61), now, now).active
    assert not evaluate("camera_clock_skew", r["camera_clock_skew"], view(clock_offset_s=60), now, now).active
    assert evaluate("uplink_down", r["uplink_down"], view(uplink_up=False), now, now).active
    assert not evaluate("uplink_down", r["uplink_down"], view(), now, now).active
    assert evaluate("temperature_high", r["temperature_high"], view(temperature_c=70.5), now, now).active
    offline = evaluate("offline", r["offline"], view("offline"), now, now)
    assert offline.active and offline.since == s(0)
    assert evaluate("camera_auth_failed", r["camera_auth_failed"], view("auth_failed"), now, now).active
    morning = datetime(2026, 11, 25, 9, 0)
    night = datetime(2026, 11, 25, 23, 0)
    assert evaluate("eboard_screen_off", r["eboard_screen_off"], view(screen_on=False), now, morning).active
    assert not evaluate("eboard_screen_off", r["eboard_screen_off"], view(screen_on=False), now, night).active
    custom = {**config.CUSTOM, "metric": "cpu_pct", "op": ">=", "threshold": 90}
    assert evaluate("cpu", custom, view(cpu_pct=90), now, now).active
    assert not evaluate("cpu", custom, view(cpu_pct="high"), now, now).active


def test_event_rules_hold_until_cleared_or_expired() -> None:
    rule = config.build({}).rules["camera_signal_loss"].settings
    raised = DeviceView("c", "camera", "offline", s(0), {}, ((s(10), "videoloss", {}),))
    assert evaluate("camera_signal_loss", rule, raised, s(20), s(20)).active
    assert not evaluate("camera_signal_loss", rule, raised, s(10 + 300), s(310)).active
    cleared = DeviceView(
        "c", "camera", "online", s(0), {}, ((s(10), "videoloss", {}), (s(15), "videoloss", {"state": False}))
    )
    assert not evaluate("camera_signal_loss", rule, cleared, s(20), s(20)).active


def test_overrides_by_kind_village_and_device_most_specific_wins() -> None:
    cfg = config.build(
        {
            "rules": {
                "temperature_high": {
                    "threshold": 60,
                    "overrides": [
                        {"match": {"device": "eb-1"}, "threshold": 80},
                        {"match": {"kind": "eboard"}, "threshold": 70, "for_s": 10},
                        {"match": {"village": "tay-binh"}, "enabled": False},
                    ],
                }
            }
        }
    )
    rule = cfg.rules["temperature_high"]
    assert rule.for_device("tg", "trung-binh", "speaker", "spk-1")["threshold"] == 60
    assert rule.for_device("tg", "trung-binh", "eboard", "eb-2")["threshold"] == 70
    assert rule.for_device("tg", "trung-binh", "eboard", "eb-1")["threshold"] == 80
    assert rule.for_device("tg", "trung-binh", "eboard", "eb-1")["for_s"] == 10
    assert rule.for_device("tg", "tay-binh", "eboard", "eb-2")["enabled"] is False


def test_configuration_errors_name_their_path() -> None:
    with pytest.raises(InvalidInput) as exc:
        config.build(
            {
                "rules": {"offline": {"for_s": "soon", "colour": "red"}, "cpu": {"threshold": 1}},
                "channels": {"ops": "json://x"},
                "routes": [{"channels": ["nope"]}],
                "quiet_hours": "late",
            }
        )
    msg = exc.value.message
    for part in (
        "rules.offline.for_s",
        "rules.offline.colour: unknown setting",
        "rules.cpu: not a built-in rule",
        "routes[0].channels: no channel named 'nope'",
        "quiet_hours",
    ):
        assert part in msg


def test_spec_minimal_file_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "alerts.yaml"
    f.write_text(
        "rules:    {offline: {for_s: 120}, speaker_battery_low: {threshold: 20, for_s: 300}}\n"
        'channels: {ops: "json://127.0.0.1:9000/hook", truc-ban: "zalo://TOKEN@oa/123456"}\n'
        "routes:   [{match: {commune: thoai-giang, village: trung-binh}, channels: [ops]},\n"
        "           {channels: [ops]}]\n"
    )
    monkeypatch.setenv("IOC_ALERTS_FILE", str(f))
    monkeypatch.setenv("IOC_DATA_DIR", str(tmp_path))
    assert ioc(["alerts", "--check"]) == 0
    assert "2 channel(s), 2 route(s)" in capsys.readouterr().out
    f.write_text("rules: {offline: {for_s: -1}}\n")
    assert ioc(["alerts", "--check"]) == 2
    assert "rules.offline.for_s" in capsys.readouterr().err


def test_message_names_device_place_since_and_link() -> None:
    alert = {
        "id": 3,
        "rule": "offline",
        "device_id": "gw-1",
        "severity": "critical",
        "since": s(0),
        "affected": ["cam-1", "spk-1"],
        "details": {},
    }
    place = messages.Place("Router ấp Trung Bình", "gateway", "Ấp Trung Bình", "Xã Thoại Giang")
    title, body = messages.render("open", alert, place, public_url="http://ioc.local:8000/")
    assert title == "[CẢNH BÁO] Router ấp Trung Bình mất kết nối"
    assert "Địa điểm: Ấp Trung Bình, Xã Thoại Giang" in body
    assert "Từ lúc: 10:00:00 25/11/2026" in body  # Asia/Ho_Chi_Minh
    assert "Ảnh hưởng: 2 thiết bị (cam-1, spk-1)" in body
    assert body.endswith("http://ioc.local:8000/#/device/gw-1")
    title_en, _ = messages.render("resolve", {**alert, "resolved_at": s(600)}, place, lang="en")
    assert title_en == "[RESOLVED] Router ấp Trung Bình is offline"


def test_a_blip_between_two_looks_restarts_the_for_clock() -> None:
    t = Track()
    kw = {"for_s": 60, "clear_s": 0, "suppressed": False, "alert_open": False}
    assert step(t, True, s(0), s(1), **kw) is Action.NONE
    # Seen offline again, but since a later time: it was back online in between.
    assert step(t, True, s(50), s(61), **kw) is Action.NONE
    assert step(t, True, s(50), s(110), **kw) is Action.OPEN


def test_repeated_events_keep_one_condition_from_the_first() -> None:
    rule = {**config.build({}).rules["camera_tamper"].settings, "hold_s": 60}
    events = ((s(0), "tamper", {}), (s(40), "tamper", {}), (s(80), "tamper", {}))
    d = DeviceView("c", "camera", "online", s(0), {}, events)
    cond = evaluate("camera_tamper", rule, d, s(90), s(90))
    assert cond.active and cond.since == s(0)
    assert not evaluate("camera_tamper", rule, d, s(140), s(140)).active


def test_an_alerts_file_with_a_key_given_twice_is_refused_at_its_line(tmp_path: Path) -> None:
    from services.alerts import config

    path = tmp_path / "alerts.yaml"
    path.write_text("rules:\n  device_offline: {for_s: 60}\n  device_offline: {for_s: 600}\n")
    with pytest.raises(InvalidInput) as exc:
        config.load_file(path)
    assert exc.value.message == f"{path}:3: device_offline is given twice (first on line 2); keep one"
