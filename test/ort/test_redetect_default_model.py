"""Re-detection while LOST with the real runtime on the default model, on real frames of a long-term
sequence (shared/data/lt tld_pedestrian3: a pedestrian in a parking lot). The target's absence is the
camera covered (black frames: every confidence falls, so the runtime reports LOST whatever its score
source), and it comes back *elsewhere*, beyond the local search: the frames after the absence are moved
across the view (a camera that panned meanwhile), ground truth with them."""


import cv2
import numpy as np
import pytest

from stark_ros.core.boxes import iou_xywh
from stark_ros.datasets import load_simple_sequence
from stark_ros.runtime import RuntimeOptions, StarkRuntime, default_model_dir
from stark_ros.tracking.lost import TargetState, TrackEventType
from stark_ros.tracking.redetect import NO_REDETECTION, RedetectSettings

SEQUENCE = "tld_pedestrian3"
TRACKED = 30           # frames tracked before the camera is covered
COVERED = 6            # black frames
RETURN_FRAMES = 20
# The frames after the absence move this far (pixels, rightwards): past the local search's half side
# (5 x ~33 px / 2).
SHIFT = 150
CPU = RuntimeOptions(providers=("CPUExecutionProvider",))
# Found within this many frames of the return (the goal on shared/data/lt is 10).
WITHIN = 10
FOUND_IOU = 0.5


@pytest.fixture(scope="module")
def pedestrian(shared):
    return load_simple_sequence(shared / "data" / "lt" / SEQUENCE)


def moved(frame: np.ndarray) -> np.ndarray:
    shift = np.float64([[1, 0, SHIFT], [0, 1, 0]])
    return cv2.warpAffine(frame, shift, frame.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


# The re-detection study's budget (models/default/redetect_study.json), shipped in the default
# model's metadata.
STUDY_CROPS_PER_FRAME = 4


def model_settings() -> RedetectSettings:
    """The default model's own re-detection settings (on, with the study's budget)."""
    return StarkRuntime(default_model_dir(), CPU).redetect_settings


def lose(pedestrian, redetect: RedetectSettings) -> StarkRuntime:
    """A runtime whose walker was tracked, then LOST while the camera was covered."""
    rt = StarkRuntime(default_model_dir(), CPU, redetect=redetect)
    rt.add_target(pedestrian.frame(0), pedestrian.boxes[0], "walker")
    for i in range(1, TRACKED):
        rt.update(pedestrian.frame(i))
    black = np.zeros_like(pedestrian.frame(0))
    states = [rt.update(black)[0].state for _ in range(COVERED)]
    assert states[-1] is TargetState.LOST, "precondition: the covered camera is reported LOST"
    return rt


def test_a_walker_back_elsewhere_is_reacquired_with_its_box(pedestrian):
    settings = model_settings()
    shipped = StarkRuntime(default_model_dir(), CPU).info.redetect
    assert shipped.enabled and shipped.crops_per_frame == STUDY_CROPS_PER_FRAME and settings == shipped
    found = {}
    for name, redetect in (("on", settings), ("off", NO_REDETECTION)):
        rt = lose(pedestrian, redetect)
        for i in range(TRACKED, TRACKED + RETURN_FRAMES):
            (r,) = rt.update(moved(pedestrian.frame(i)))
            if r.event is TrackEventType.REACQUIRED:
                truth = pedestrian.boxes[i] + np.array([SHIFT, 0, 0, 0])
                found[name] = (i - TRACKED, float(iou_xywh(r.box[None], truth[None])[0]))
                break
    frames, iou = found["on"]
    assert frames < WITHIN and iou >= FOUND_IOU, found
    # Without re-detection the local search does not get there.
    assert "off" not in found, found


@pytest.mark.parametrize("pattern, reacquired", [(("back", "covered"), False), (("back", "back", "covered"), True)])
def test_a_candidate_must_hold_confirm_frames_in_a_row(pedestrian, pattern, reacquired):
    """confirm_frames 2, tiles on every frame: back elsewhere on every other frame, no candidate holds
    two frames in a row and none is taken; back on two frames of three, one is."""
    settings = RedetectSettings(crops_per_frame=8, every_frames=1, confirm_frames=2,
                                candidate_threshold=model_settings().candidate_threshold)
    rt = lose(pedestrian, settings)
    black = np.zeros_like(pedestrian.frame(0))
    events = []
    for k, i in enumerate(range(TRACKED, TRACKED + RETURN_FRAMES)):
        frame = moved(pedestrian.frame(i)) if pattern[k % len(pattern)] == "back" else black
        events.append(rt.update(frame)[0].event)
    assert (TrackEventType.REACQUIRED in events) is reacquired
    assert rt.redetector.crops_cut > 0


def test_lost_targets_share_the_budget(pedestrian):
    """Three targets LOST at once (the camera covered): every frame's re-detection is one engine call
    of at most crops_per_frame crops, on every every_frames-th frame, and every target gets tiles."""
    budget = RedetectSettings(crops_per_frame=3, every_frames=2)
    rt = StarkRuntime(default_model_dir(), CPU, redetect=budget)
    calls = []
    predict = rt.engine.predict

    def recording(templates_by_slot, images, masks):
        calls.append(len(images))
        return predict(templates_by_slot, images, masks)

    rt.engine.predict = recording
    first = pedestrian.frame(0)
    boxes = {"walker": pedestrian.boxes[0], "left": np.array([20.0, 150.0, 30, 30]),
             "right": np.array([260.0, 40.0, 30, 30])}
    for target_id, box in boxes.items():
        rt.add_target(first, box, target_id)
    tiles = dict.fromkeys(boxes, 0)
    plan = rt.redetector.plan

    def counting(frame_shape, lost, search_factor):
        requests = plan(frame_shape, lost, search_factor)
        for request in requests:
            tiles[request.target_id] += not request.follows_candidate
        return requests

    rt.redetector.plan = counting
    black = np.zeros_like(first)
    frames_all_lost = 0
    for _ in range(12):
        calls.clear()
        results = rt.update(black)
        tracking, *redetection = calls
        assert tracking == len(boxes) and len(redetection) <= 1 and sum(redetection) <= budget.crops_per_frame
        frames_all_lost += all(r.state is TargetState.LOST for r in results)
    assert frames_all_lost >= 10, "precondition: the covered camera is reported LOST"
    assert rt.redetector.crops_cut <= budget.crops_per_frame * 12 // budget.every_frames
    assert all(n > 0 for n in tiles.values()), tiles


def test_redetection_settings_ride_in_the_models_metadata(untrained_lite_model, tmp_path):
    """The exporter's metadata writer puts them where the runtime reads its defaults; a caller's
    settings override them; a model without them gets the generic ones."""
    import shutil

    from stark_ros.export.metadata import write_redetect_settings
    from stark_ros.tracking import model_metadata as md

    plain = StarkRuntime(untrained_lite_model, CPU)
    assert plain.info.redetect is None and plain.redetect_settings == RedetectSettings()
    for name in (md.TEMPLATE_FILE, md.TRACK_FILE):
        shutil.copy(untrained_lite_model / name, tmp_path / name)
    tuned = RedetectSettings(crops_per_frame=6, every_frames=3, confirm_frames=4, candidate_threshold=0.75)
    write_redetect_settings(tmp_path, tuned, "a test")
    rt = StarkRuntime(tmp_path, CPU)
    assert rt.redetect_settings == tuned and rt.info.redetect_source == "a test"
    assert StarkRuntime(tmp_path, CPU, redetect=NO_REDETECTION).redetect_settings == NO_REDETECTION
