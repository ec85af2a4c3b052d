"""Re-detection while LOST (stark_ros.tracking.redetect) under the tracking policy, numpy only, on an
engine that really looks at the crops it is given: its "network" finds the bright square of a dark
test scene in each search crop (box and a confident logit) or reports a doubtful logit where the crop
holds none. Whether the real model re-detects a real target is test/ort/test_redetect_default_model.py."""

from dataclasses import replace

import numpy as np
import pytest

from stark_ros.core.boxes import iou_xywh
from stark_ros.tracking.lost import LostSettings, TargetState, TrackEventType
from stark_ros.tracking.policy import TrackingPolicy
from stark_ros.tracking.redetect import NO_REDETECTION, RedetectSettings, tile_boxes, tile_centres
from stark_ros.tracking.settings import TrackerSettings

SETTINGS = TrackerSettings(template_size=32, search_size=64)
# Absolute thresholds (no reference frames), quick to lose, one confident frame to reacquire locally.
LOST = LostSettings(lost_threshold=0.5, lost_frames=1, reacquire_threshold=0.5, reacquire_frames=1,
                    max_search_growth=1.0, follow_while_lost=True)
REDETECT = RedetectSettings(crops_per_frame=3, every_frames=1, confirm_frames=3, candidate_threshold=0.5)
FRAME_SHAPE = (240, 320, 3)
SIDE = 20.0
HERE = np.array([60.0, 60.0, SIDE, SIDE])
# Far beyond the local search (5 x 20 px crop around HERE): only re-detection can find it there.
ELSEWHERE = np.array([250.0, 190.0, SIDE, SIDE])
# Other targets' places: beside HERE, apart from each other.
RIGHT, DOWN = np.array([100.0, 0.0, 0.0, 0.0]), np.array([0.0, 100.0, 0.0, 0.0])
# Normalised red channel above this is the bright square (black is about -2.1, white about +2.2).
BRIGHT = 0.0
FOUND_LOGIT, NOTHING_LOGIT = 4.0, -4.0


class SquareFinder:
    """An engine whose network finds the bright pixels of each search crop: their bounding box
    (normalised cx, cy, w, h) with a confident logit, or the crop's centre with a doubtful one. It
    records the number of crops of every predict() call."""

    def __init__(self):
        self.batches = []

    def encode_templates(self, images, masks):
        return [object() for _ in images]

    def predict(self, templates_by_slot, images, masks):
        assert all(len(slot) == len(images) for slot in templates_by_slot)
        self.batches.append(len(images))
        size = images.shape[-1]
        boxes = np.tile([0.5, 0.5, 0.1, 0.1], (len(images), 1))
        logits = np.full(len(images), NOTHING_LOGIT)
        for i, image in enumerate(images):
            ys, xs = np.nonzero(image[0] > BRIGHT)
            if len(xs):
                x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
                boxes[i] = [(x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size]
                logits[i] = FOUND_LOGIT
        return boxes[:, None, :], logits[:, None]


def scene(*boxes) -> np.ndarray:
    frame = np.zeros(FRAME_SHAPE, dtype=np.uint8)
    for x, y, w, h in boxes:
        frame[int(y):int(y + h), int(x):int(x + w)] = 255
    return frame


def run(policy, frames):
    return [policy.update(frame) for frame in frames]


def test_a_target_that_comes_back_elsewhere_is_reacquired_there_with_its_box():
    engine = SquareFinder()
    policy = TrackingPolicy(engine, SETTINGS, LOST, redetect=REDETECT)
    policy.add_target(scene(HERE), HERE, target_id="t")
    frames = [scene(HERE)] * 2 + [scene()] * 4 + [scene(ELSEWHERE)] * 20
    results = [r for (r,) in run(policy, frames)]
    assert results[2].event is TrackEventType.LOST
    reacquired = [k for k, r in enumerate(results) if r.event is TrackEventType.REACQUIRED]
    assert len(reacquired) == 1 and reacquired[0] >= 6 + REDETECT.confirm_frames - 1
    event = results[reacquired[0]]
    assert iou_xywh(event.box[None], ELSEWHERE[None])[0] > 0.8
    assert all(r.state is TargetState.TRACKING for r in results[reacquired[0]:])
    # Without re-detection the target stays LOST: the local search never reaches ELSEWHERE.
    alone = TrackingPolicy(SquareFinder(), SETTINGS, LOST, redetect=NO_REDETECTION)
    alone.add_target(scene(HERE), HERE, target_id="t")
    assert all(r.state is TargetState.LOST for (r,) in run(alone, frames)[2:])


def test_while_lost_the_box_told_is_where_the_target_was_last_seen():
    policy = TrackingPolicy(SquareFinder(), SETTINGS, LOST, redetect=REDETECT)
    policy.add_target(scene(HERE), HERE, target_id="t")
    confident = policy.update(scene(HERE))[0].box
    for frame in [scene()] * 5 + [scene(ELSEWHERE)] * (REDETECT.confirm_frames - 1):
        (result,) = policy.update(frame)
        # The search follows the network (and the candidate) meanwhile; the box told does not move.
        assert result.state is TargetState.LOST
        np.testing.assert_array_equal(result.box, confident)


@pytest.mark.parametrize("confirm_frames", [2, 3])
def test_a_candidate_that_does_not_hold_for_confirm_frames_is_not_taken(confirm_frames):
    """The target shows up elsewhere for 2 frames at a time, then vanishes for one: a candidate holds
    2 frames at most, enough for confirm_frames 2 and never for 3."""
    policy = TrackingPolicy(SquareFinder(), SETTINGS, LOST, redetect=replace(REDETECT, confirm_frames=confirm_frames))
    policy.add_target(scene(HERE), HERE, target_id="t")
    flicker = ([scene(ELSEWHERE)] * 2 + [scene()]) * 8
    results = [r for (r,) in run(policy, [scene(HERE), scene(), *flicker])]
    reacquired = any(r.event is TrackEventType.REACQUIRED for r in results)
    assert reacquired is (confirm_frames == 2)


def test_the_budget_is_shared_by_all_lost_targets():
    """Three LOST targets, 4 crops per frame, tiles every 2nd frame: no frame cuts more than 4, frames
    between cut none (nothing is found, so there is no candidate to follow), and each target gets its
    turn."""
    budget = replace(REDETECT, crops_per_frame=4, every_frames=2)
    engine = SquareFinder()
    policy = TrackingPolicy(engine, SETTINGS, LOST, redetect=budget)
    boxes = {"a": HERE, "b": HERE + RIGHT, "c": HERE + DOWN}
    for target_id, box in boxes.items():
        policy.add_target(scene(*boxes.values()), box, target_id=target_id)
    seen = {target_id: 0 for target_id in boxes}
    count = policy.redetector.plan

    def counting(frame_shape, lost, search_factor):
        requests = count(frame_shape, lost, search_factor)
        for request in requests:
            seen[request.target_id] += 1
        return requests

    policy.redetector.plan = counting
    frames = 12
    for _ in range(frames):
        engine.batches.clear()
        results = policy.update(scene())
        assert all(r.state is TargetState.LOST for r in results)
        tracking, *tiles = engine.batches
        assert tracking == len(boxes) and len(tiles) <= 1
        assert sum(tiles) <= budget.crops_per_frame
    assert policy.redetector.crops_cut == budget.crops_per_frame * frames // budget.every_frames
    assert min(seen.values()) >= policy.redetector.crops_cut // len(boxes) - 1


def test_a_candidate_takes_one_crop_and_no_tiles_and_the_others_get_the_rest():
    policy = TrackingPolicy(SquareFinder(), SETTINGS, LOST, redetect=REDETECT)
    policy.add_target(scene(HERE, HERE + RIGHT), HERE, target_id="back")
    policy.add_target(scene(HERE, HERE + RIGHT), HERE + RIGHT, target_id="gone")
    policy.update(scene())   # both LOST
    for _ in range(10):
        if policy.redetector.candidate("back") is not None:
            break
        policy.update(scene(ELSEWHERE))
    assert policy.redetector.candidate("back") is not None and policy.redetector.candidate("gone") is None
    before = policy.redetector.crops_cut
    requests = policy.redetector.plan(FRAME_SHAPE, [("back", HERE), ("gone", HERE)], SETTINGS.search_factor)
    assert [(r.target_id, r.follows_candidate) for r in requests] == \
        [("back", True)] + [("gone", False)] * (REDETECT.crops_per_frame - 1)
    np.testing.assert_array_equal(requests[0].box, policy.redetector.candidate("back").box)
    assert policy.redetector.crops_cut == before + REDETECT.crops_per_frame


def test_tiles_cover_the_frame_nearest_first():
    side, stride = 100, 0.6
    centres = np.array(tile_centres(FRAME_SHAPE, side, stride))
    ys, xs = np.mgrid[0:FRAME_SHAPE[0] + 1:4, 0:FRAME_SHAPE[1] + 1:4]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)
    # Every pixel, the frame's edges included, lies within half a stride of some tile centre along
    # both axes.
    reach = np.abs(points[:, None, :] - centres[None]).max(axis=2).min(axis=1)
    assert reach.max() <= stride * side / 2 + 1e-9
    assert len(centres) == 6 * 4    # 320 / 60 and 240 / 60 strides, rounded up
    # One centred tile along an axis no longer than the stride.
    assert tile_centres((50, 400, 3), 100, 0.6)[0][1] == 25
    tiles = tile_boxes(FRAME_SHAPE, ELSEWHERE, SETTINGS.search_factor, 0.6)
    first = tiles[0][:2] + tiles[0][2:] / 2
    target = ELSEWHERE[:2] + ELSEWHERE[2:] / 2
    assert all(np.linalg.norm(first - target) <= np.linalg.norm(t[:2] + t[2:] / 2 - target) for t in tiles)
    assert all(np.array_equal(t[2:], ELSEWHERE[2:]) for t in tiles)


def test_settings_are_checked_and_round_trip():
    settings = RedetectSettings(crops_per_frame=6, every_frames=2, confirm_frames=4, candidate_threshold=0.4)
    assert RedetectSettings.from_dict(settings.to_dict()) == settings
    assert not NO_REDETECTION.enabled and settings.enabled
    with pytest.raises(ValueError, match="unknown"):
        RedetectSettings.from_dict({"budget": 3})
    for bad in ({"every_frames": 0}, {"confirm_frames": 0}, {"crops_per_frame": -1},
                {"candidate_threshold": 1.5}, {"tile_stride": 0.0}):
        with pytest.raises(ValueError):
            RedetectSettings(**bad)
