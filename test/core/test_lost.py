"""The lost-target state machine on its own."""

import math
from dataclasses import replace

import numpy as np
import pytest

from stark_ros.tracking.lost import LostMonitor, LostSettings, TargetState, TrackEventType

SETTINGS = LostSettings(lost_threshold=0.3, lost_frames=3, reacquire_threshold=0.6, reacquire_frames=1,
                        search_growth_per_frame=1.5, max_search_growth=2.0)
BOX = np.array([10.0, 20.0, 30.0, 40.0])


def feed(monitor, scores, box=BOX):
    return [monitor.observe(s, box + i) for i, s in enumerate(scores)]


def test_lost_after_n_low_frames_and_box_held():
    m = LostMonitor(SETTINGS, BOX)
    out = feed(m, [0.9, 0.1, 0.1, 0.1, 0.1])
    assert [e for _, e in out] == [None, None, None, TrackEventType.LOST, None]
    assert m.state is TargetState.LOST
    # Held at the last confident box (frame 0's prediction), not following the unsure ones.
    np.testing.assert_array_equal(out[3][0], BOX + 0)
    np.testing.assert_array_equal(out[4][0], BOX + 0)
    assert m.frames_since_confident == 4


def test_following_while_lost_reports_and_searches_around_the_prediction():
    m = LostMonitor(replace(SETTINGS, follow_while_lost=True), BOX)
    out = feed(m, [0.9, 0.1, 0.1, 0.1, 0.1])
    assert out[3][1] is TrackEventType.LOST and m.state is TargetState.LOST
    # LOST is said all the same, but the box is the network's, and the next search goes there.
    np.testing.assert_array_equal(out[4][0], BOX + 4)
    np.testing.assert_array_equal(m.search_centre(out[4][0]), BOX + 4)
    held = LostMonitor(SETTINGS, BOX)
    feed(held, [0.9, 0.1, 0.1, 0.1, 0.1])
    np.testing.assert_array_equal(held.search_centre(BOX + 4), BOX + 0)


def test_a_single_dip_is_not_lost():
    m = LostMonitor(SETTINGS, BOX)
    out = feed(m, [0.1, 0.1, 0.9, 0.1, 0.1, 0.9])
    assert all(e is None for _, e in out) and m.state is TargetState.TRACKING
    # While unsure but not lost, the box follows the prediction (the official behaviour).
    np.testing.assert_array_equal(out[1][0], BOX + 1)


def test_reacquire_needs_the_higher_threshold_and_search_grows_capped():
    m = LostMonitor(SETTINGS, BOX)
    feed(m, [0.1, 0.1, 0.1])
    assert m.state is TargetState.LOST and m.search_scale == 1.5
    feed(m, [0.5, 0.5])  # above lost, below reacquire: still lost
    assert m.state is TargetState.LOST and m.search_scale == 2.0  # 1.5 ** 3 capped at 2
    box, event = m.observe(0.7, BOX + 100)
    assert event is TrackEventType.REACQUIRED and m.state is TargetState.TRACKING
    np.testing.assert_array_equal(box, BOX + 100)
    assert m.search_scale == 1.0 and m.frames_since_confident == 0


def test_reacquire_needs_confident_frames_and_a_dip_slows_it():
    m = LostMonitor(LostSettings(lost_threshold=0.3, lost_frames=2, reacquire_threshold=0.6, reacquire_frames=3), BOX)
    feed(m, [0.1, 0.1])
    assert m.state is TargetState.LOST
    # One confident frame, then a dip: the streak falls back, nothing is announced.
    for score in (0.9, 0.1, 0.9, 0.9):
        box, event = m.observe(score, BOX + 50)
        assert event is None and m.state is TargetState.LOST
        np.testing.assert_array_equal(box, BOX)  # still reported where it was last seen
    # The next search stays around the last confident box.
    np.testing.assert_array_equal(m.search_centre(BOX + 7), BOX)
    box, event = m.observe(0.9, BOX + 51)
    assert event is TrackEventType.REACQUIRED and m.state is TargetState.TRACKING
    np.testing.assert_array_equal(box, BOX + 51)
    np.testing.assert_array_equal(m.search_centre(BOX + 7), BOX + 7)


def test_a_flickering_score_gives_few_events():
    m = LostMonitor(LostSettings(lost_threshold=0.3, lost_frames=5, reacquire_threshold=0.6, reacquire_frames=3), BOX)
    rng = np.random.default_rng(0)
    # A score that jumps between clearly absent and clearly present every frame or two.
    events = [e for _, e in feed(m, list(np.where(rng.random(200) < 0.5, 0.1, 0.9)))]
    assert sum(e is not None for e in events) <= 4


def test_settings_round_trip_and_refuse_unknown_keys():
    assert LostSettings.from_dict(SETTINGS.to_dict()) == SETTINGS
    with pytest.raises(ValueError, match="unknown"):
        LostSettings.from_dict({"lost_treshold": 0.2})


def test_nan_scores_never_change_state():
    m = LostMonitor(SETTINGS, BOX)
    out = feed(m, [math.nan] * 10)
    assert all(e is None for _, e in out) and m.state is TargetState.TRACKING


@pytest.mark.parametrize("kwargs", [
    {"lost_threshold": 1.5}, {"reacquire_threshold": -0.1}, {"lost_threshold": 0.7, "reacquire_threshold": 0.5},
    {"lost_frames": 0}, {"reacquire_frames": 0}, {"search_growth_per_frame": 0.9}, {"lost_threshold": math.nan},
])
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        LostSettings(**kwargs)
