"""The live feed's per-device throttle: state changes at once, readings at most every window,
and the reading held back is owed until its window has passed."""

import time

from services.storage import FeedThrottle


def test_a_held_back_reading_is_owed_until_its_window_passes_then_once() -> None:
    t = FeedThrottle(every_s=0.2)
    assert t.allow("a", state_changed=False)
    assert not t.allow("a", state_changed=False)
    assert not t.allow("a", state_changed=False)
    assert t.due() == []
    time.sleep(0.25)
    assert t.due() == ["a"]
    assert t.due() == []
    # Published by due(): the next reading is inside a new window again.
    assert not t.allow("a", state_changed=False)


def test_a_state_change_goes_out_at_once_and_settles_what_was_owed() -> None:
    t = FeedThrottle(every_s=0.2)
    assert t.allow("a", state_changed=False)
    assert not t.allow("a", state_changed=False)
    assert t.allow("a", state_changed=True)
    time.sleep(0.25)
    assert t.due() == []


def test_what_could_not_be_published_is_owed_again() -> None:
    t = FeedThrottle(every_s=0.2)
    t.owe(["b", "c"])
    assert sorted(t.due()) == ["b", "c"]
    assert t.due() == []
