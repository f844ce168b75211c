"""ONVIF event topics -> IOC event types, severities and status fields (pure functions)."""

from types import SimpleNamespace as NS

import pytest

from ingest.onvif import events


def message(topic: str, value: str, op: str = "Changed", item: str = "State") -> NS:
    items = NS(SimpleItem=[NS(Name=item, Value=value)])
    body = NS(
        Data=items, Source=NS(SimpleItem=[NS(Name="Source", Value="vs0")]), UtcTime=None, PropertyOperation=op
    )
    return NS(Topic=NS(_value_1=topic), Message=NS(_value_1=body))


@pytest.mark.parametrize(
    ("topic", "kind"),
    [
        ("tns1:VideoSource/GlobalSceneChange/ImagingService", "tamper"),
        ("tns1:VideoSource/GlobalSceneChange/AnalyticsService", "tamper"),
        ("tns1:VideoSource/ImageTooDark/ImagingService", "tamper"),
        ("tns1:VideoSource/ImageTooBright/AnalyticsService", "tamper"),
        ("tns1:VideoSource/ImageTooBlurry/RecordingService", "tamper"),
        ("tns1:RuleEngine/TamperDetector/Tamper", "tamper"),
        ("tns1:VideoSource/SignalLoss", "signal_loss"),
        ("tns1:Device/HardwareFailure/StorageFailure", "storage_failure"),
        ("tns1:VideoSource/MotionAlarm", "motion"),
        ("tns1:RuleEngine/CellMotionDetector/Motion", "motion"),
        ("tns1:RecordingConfig/JobState", "recording"),
        ("tnsvendor:VideoSource/tnsvendor:MotionAlarm", "motion"),
    ],
)
def test_topics_map_to_event_types_whatever_the_prefix(topic: str, kind: str) -> None:
    assert events.event_type(topic) == kind


def test_unrelated_topics_are_ignored() -> None:
    assert events.event_type("tns1:Device/Trigger/DigitalInput") is None
    assert events.parse(message("tns1:VideoSource/MotionAlarmX", "true")) is None


def test_tamper_change_is_a_warning_and_clears_as_info() -> None:
    on = events.parse(message("tns1:RuleEngine/TamperDetector/Tamper", "true", item="IsTamper"))
    off = events.parse(message("tns1:RuleEngine/TamperDetector/Tamper", "false", item="IsTamper"))
    assert on and off
    assert (on.type, on.active, on.severity, on.worth_publishing) == ("tamper", True, "warning", True)
    assert (off.active, off.severity, off.worth_publishing) == (False, "info", True)


def test_storage_failure_and_signal_loss_are_critical() -> None:
    for topic, item in (
        ("tns1:Device/HardwareFailure/StorageFailure", "Failed"),
        ("tns1:VideoSource/SignalLoss", "State"),
    ):
        ev = events.parse(message(topic, "true", item=item))
        assert ev and ev.severity == "critical"


def test_initialized_states_publish_only_when_abnormal() -> None:
    normal = events.parse(
        message("tns1:VideoSource/GlobalSceneChange/ImagingService", "false", "Initialized")
    )
    tampered = events.parse(
        message("tns1:VideoSource/GlobalSceneChange/ImagingService", "true", "Initialized")
    )
    recording = events.parse(message("tns1:RecordingConfig/JobState", "Active", "Initialized"))
    idle = events.parse(message("tns1:RecordingConfig/JobState", "Idle", "Initialized"))
    assert normal and tampered and recording and idle
    assert not normal.worth_publishing and tampered.worth_publishing
    assert not recording.worth_publishing and idle.worth_publishing and idle.severity == "warning"


def test_event_state_is_any_active_source_per_kind() -> None:
    st = events.EventState()
    for topic, value in (
        ("tns1:VideoSource/GlobalSceneChange/ImagingService", "true"),
        ("tns1:VideoSource/ImageTooDark/ImagingService", "false"),
        ("tns1:VideoSource/MotionAlarm", "false"),
    ):
        ev = events.parse(message(topic, value))
        assert ev
        st.apply(ev)
    assert st.fields() == {"tamper": True, "motion": False}
    ev = events.parse(message("tns1:VideoSource/GlobalSceneChange/ImagingService", "false"))
    assert ev
    st.apply(ev)
    assert st.fields() == {"tamper": False, "motion": False}
