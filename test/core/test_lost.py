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


def test_following_while_lost_searches_around_the_prediction_and_reports_the_last_confident_box():
    m = LostMonitor(replace(SETTINGS, follow_while_lost=True), BOX)
    out = feed(m, [0.9, 0.1, 0.1, 0.1, 0.1])
    assert out[3][1] is TrackEventType.LOST and m.state is TargetState.LOST
    # LOST is said all the same, but the next search goes around the network's box; the box a
    # caller is told stays where the target was last seen.
    np.testing.assert_array_equal(out[4][0], BOX + 4)
    np.testing.assert_array_equal(m.search_centre(out[4][0]), BOX + 4)
    np.testing.assert_array_equal(m.reported_box(out[4][0]), BOX + 0)
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


def test_relative_scores_judge_each_target_against_its_own_first_scores():
    relative = replace(SETTINGS, reference_frames=3)
    # A target whose scores are low by nature (median of its first three: 0.2) is not LOST at 0.15
    # (75% of its own), though an absolute threshold of 0.3 would report it LOST...
    low = LostMonitor(relative, BOX)
    out = feed(low, [0.2, 0.1, 0.3] + [0.15] * 5)
    assert all(e is None for _, e in out) and low.reference_score == pytest.approx(0.2)
    assert low.judged(0.15) == pytest.approx(0.75) and low.judged(0.9) == 1.0
    absolute = LostMonitor(SETTINGS, BOX)
    assert TrackEventType.LOST in [e for _, e in feed(absolute, [0.2, 0.1, 0.3] + [0.15] * 5)]
    # ...and is LOST at 0.04 (20% of its own), REACQUIRED back at its usual 0.2.
    out = feed(low, [0.04] * 3 + [0.2])
    assert [e for _, e in out] == [None, None, TrackEventType.LOST, TrackEventType.REACQUIRED]
    assert low.reference_score == pytest.approx(0.2)     # gathered: later scores change it no more


def test_a_target_gone_right_after_initialisation_does_not_teach_the_reference():
    # Two frames with the target (0.75), then it is gone (0.015): the absent frames are judged against
    # 0.75 (2%), so they are LOST from the third frame on and never enter the reference.
    m = LostMonitor(replace(SETTINGS, reference_frames=10, lost_frames=1), BOX)
    out = feed(m, [0.75, 0.75] + [0.015] * 10)
    assert [e for _, e in out][2] is TrackEventType.LOST and m.state is TargetState.LOST
    assert m.first_scores == [0.75, 0.75]
    # The first frame has no reference yet: it counts as present; a reference near 0 is floored.
    early = LostMonitor(replace(SETTINGS, reference_frames=5), BOX)
    assert early.judged(0.0) == 1.0 and early.reference_score == pytest.approx(0.01)
    assert early.judged(0.005) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs", [
    {"lost_threshold": 1.5}, {"reacquire_threshold": -0.1}, {"lost_threshold": 0.7, "reacquire_threshold": 0.5},
    {"lost_frames": 0}, {"reacquire_frames": 0}, {"search_growth_per_frame": 0.9}, {"lost_threshold": math.nan},
    {"reference_frames": -1},
])
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        LostSettings(**kwargs)
