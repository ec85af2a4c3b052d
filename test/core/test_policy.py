"""The tracking policy's own rules (numpy only), on a small numpy engine whose outputs the test
chooses: the query rule, the non-finite fallback, the template-update rule and the search growth
while LOST. Whether real engines agree under the policy is test/torch/test_engine_equivalence.py."""

import math

import numpy as np
import pytest

from stark_ros.core.geometry import map_box_back
from stark_ros.tracking.lost import LostSettings, TargetState, TrackEventType
from stark_ros.tracking.policy import QUERY, SingleTargetTracker, TrackingPolicy, sigmoid
from stark_ros.tracking.redetect import NO_REDETECTION
from stark_ros.tracking.settings import TrackerSettings

SETTINGS = TrackerSettings(template_size=32, search_size=64, update_interval=2)
LOST = LostSettings(lost_threshold=0.3, lost_frames=1, reacquire_threshold=0.6, reacquire_frames=1,
                    search_growth_per_frame=1.5, max_search_growth=2.0)
BOX = np.array([100.0, 80.0, 40.0, 30.0])
# The two queries of the engine below: query 0 a box slightly right of the crop's centre and
# confident, query 1 another box and doubtful, so that averaging or picking query 1 shows.
QUERY_BOXES = np.array([[0.55, 0.5, 0.1, 0.1], [0.2, 0.3, 0.05, 0.05]])
QUERY_LOGITS = np.array([2.0, -3.0])


class ScriptedEngine:
    """An engine (the policy's protocol) whose network is a table: each predict() call returns the
    next (boxes, logits) of ``script`` for every target; it records what it was given."""

    def __init__(self, script):
        self.script = list(script)
        self.encoded = 0
        self.search_masks = []
        self.templates_seen = []

    def encode_templates(self, images, masks):
        tokens = list(range(self.encoded, self.encoded + len(images)))
        self.encoded += len(images)
        return tokens

    def predict(self, templates_by_slot, images, masks):
        self.templates_seen.append([list(slot) for slot in templates_by_slot])
        self.search_masks.append(masks)
        boxes, logits = self.script.pop(0)
        n = len(images)
        return np.repeat(boxes[None], n, axis=0), np.repeat(logits[None], n, axis=0)


@pytest.fixture()
def frame():
    return np.random.default_rng(0).integers(0, 255, size=(240, 320, 3), dtype=np.uint8)


def test_box_and_score_come_from_the_first_query(frame):
    policy = TrackingPolicy(ScriptedEngine([(QUERY_BOXES, QUERY_LOGITS)]), SETTINGS, LOST)
    policy.add_target(frame, BOX, target_id="t")
    (result,) = policy.update(frame)
    factor = SETTINGS.search_size / math.ceil(math.sqrt(BOX[2] * BOX[3]) * SETTINGS.search_factor)
    np.testing.assert_allclose(result.box, map_box_back(QUERY_BOXES[QUERY], BOX, factor, SETTINGS.search_size))
    assert result.score == pytest.approx(sigmoid(QUERY_LOGITS[QUERY]))


@pytest.mark.parametrize("bad", ["box", "logit"])
def test_a_non_finite_output_keeps_the_last_box_at_the_lowest_score(frame, bad):
    boxes, logits = QUERY_BOXES.copy(), QUERY_LOGITS.copy()
    if bad == "box":
        boxes[QUERY, 0] = np.nan
    else:
        logits[QUERY] = np.inf
    policy = TrackingPolicy(ScriptedEngine([(boxes, logits)]), SETTINGS, LOST, redetect=NO_REDETECTION)
    policy.add_target(frame, BOX, target_id="t")
    (result,) = policy.update(frame)
    np.testing.assert_array_equal(result.box, BOX)
    assert result.score == 0.0 and policy.nonfinite_outputs == 1
    assert result.event is TrackEventType.LOST   # lost_frames=1: the lowest score loses it at once


def test_templates_refresh_on_the_interval_only_while_tracking_and_confident(frame):
    confident, doubtful = (QUERY_BOXES, QUERY_LOGITS), (QUERY_BOXES, -QUERY_LOGITS)
    # Frames 1..6: 2 confident -> refresh; 3, 4 doubtful -> LOST, no refresh on 4; 5 back; 6 refresh.
    engine = ScriptedEngine([confident, confident, doubtful, doubtful, confident, confident, confident])
    policy = TrackingPolicy(engine, SETTINGS, LOST, redetect=NO_REDETECTION)
    policy.add_target(frame, BOX, target_id="t")
    states = [policy.update(frame)[0].state for _ in range(7)]
    assert states[2] is TargetState.LOST and states[4] is TargetState.TRACKING
    initial, *_ = engine.templates_seen[0][0]
    # The dynamic slot (1) as each frame saw it: the initial token until frame 2's refresh (token 1),
    # kept through the LOST frames, refreshed again on frame 6 (token 2).
    dynamic = [seen[1][0] for seen in engine.templates_seen]
    assert dynamic == [initial, initial, 1, 1, 1, 1, 2]
    assert all(seen[0][0] == initial for seen in engine.templates_seen)   # the initial template stays


def test_search_region_grows_while_lost(frame):
    doubtful = (QUERY_BOXES, -QUERY_LOGITS)
    engine = ScriptedEngine([doubtful] * 4)
    policy = TrackingPolicy(engine, SETTINGS, LOST, redetect=NO_REDETECTION)
    policy.add_target(frame, BOX, target_id="t")
    held = [policy.update(frame)[0] for _ in range(4)]
    assert [r.state for r in held] == [TargetState.LOST] * 4
    np.testing.assert_array_equal(held[-1].box, BOX)   # held at the last confident box
    # Padding share of each search crop (the box sits inside the frame): more context, more padding,
    # until the growth cap.
    padding = [float(m.mean()) for m in engine.search_masks]
    assert padding[0] < padding[1] < padding[2] <= padding[3]


def test_overrides_are_applied_once_by_the_policy_and_only_to_the_tracking_rules(frame):
    engine = ScriptedEngine([])
    assert TrackingPolicy(engine, SETTINGS, LOST).settings == SETTINGS
    assert TrackingPolicy(engine, SETTINGS, LOST, update_interval=None).settings == SETTINGS   # None: the model's
    chosen = TrackingPolicy(engine, SETTINGS, LOST, update_interval=7.0, size_update_rate=1).settings
    assert (chosen.update_interval, chosen.size_update_rate) == (7, 1.0) and type(chosen.update_interval) is int
    # What the network was trained and exported with is not the caller's to change.
    with pytest.raises(TypeError, match="search_size"):
        TrackingPolicy(engine, SETTINGS, LOST, search_size=128)


def test_the_single_target_adapter_tracks_one_target_and_moves_its_search(frame):
    engine = ScriptedEngine([(QUERY_BOXES, QUERY_LOGITS)] * 2)
    tracker = SingleTargetTracker(TrackingPolicy(engine, SETTINGS, LOST))
    with pytest.raises(RuntimeError, match="initialize"):
        tracker.track(frame)
    tracker.initialize(frame, BOX)
    box, score = tracker.track(frame)
    assert score == tracker.last_result.score and tracker.last_result.state is TargetState.TRACKING
    np.testing.assert_array_equal(box, tracker.last_result.box)
    # Teacher forcing: the next search crop is centred on the given box, not on the tracked one.
    tracker.set_box(BOX)
    second, _ = tracker.track(frame)
    np.testing.assert_array_equal(second, box)
    tracker.initialize(frame, BOX + 1)   # a new sequence replaces the target
    assert tracker.policy.target_ids == [SingleTargetTracker.TARGET_ID] and tracker.last_result is None
