"""Re-detection while LOST with the real runtime on the default model, on a real long-term sequence
(shared/data/lt tld_pedestrian3: a pedestrian leaves the view at frame 53 and comes back at frame 81,
1-based). To make it come back *elsewhere*, beyond the local search, the frames after its return are
moved across the frame (a camera that panned while it was out of view), ground truth with them."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from stark_ros.core.boxes import iou_xywh
from stark_ros.datasets import load_simple_sequence
from stark_ros.runtime import RuntimeOptions, StarkRuntime, default_model_dir
from stark_ros.tracking.lost import TargetState, TrackEventType
from stark_ros.tracking.redetect import NO_REDETECTION, RedetectSettings

SEQUENCE = "tld_pedestrian3"
# 0-based: tracked 0..52, absent 52..79, back from 80.
GONE, BACK = 52, 80
RETURN_FRAMES = 30
# The return frames move this far (pixels, rightwards): past the 5 x ~33 px local search's half side.
SHIFT = 150
CPU = RuntimeOptions(providers=("CPUExecutionProvider",))
# Found within this many frames of the return (the goal on shared/data/lt is 10).
WITHIN = 15
FOUND_IOU = 0.5


@pytest.fixture(scope="module")
def pedestrian(shared):
    return load_simple_sequence(shared / "data" / "lt" / SEQUENCE)


def moved(frame: np.ndarray) -> np.ndarray:
    shift = np.float64([[1, 0, SHIFT], [0, 1, 0]])
    return cv2.warpAffine(frame, shift, frame.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def runtime(redetect: RedetectSettings) -> StarkRuntime:
    return StarkRuntime(default_model_dir(), CPU, redetect=redetect)


def lose(rt: StarkRuntime, seq, target_id="walker") -> None:
    """Track the walker until it has gone, and check the runtime reports it LOST."""
    rt.add_target(seq.frame(0), seq.boxes[0], target_id)
    states = [rt.update(seq.frame(i))[0].state for i in range(1, BACK)]
    assert TargetState.LOST in states[GONE - 1:], "precondition: the walker's absence is reported LOST"
    assert states[-1] is TargetState.LOST


def test_a_walker_back_elsewhere_is_reacquired_with_its_box(pedestrian):
    settings = StarkRuntime(default_model_dir(), CPU).redetect_settings   # the model's own, from its metadata
    assert settings.enabled
    found = {}
    for name, redetect in (("on", settings), ("off", NO_REDETECTION)):
        rt = runtime(redetect)
        lose(rt, pedestrian)
        for i in range(BACK, BACK + RETURN_FRAMES):
            (r,) = rt.update(moved(pedestrian.frame(i)))
            if r.event is TrackEventType.REACQUIRED:
                truth = pedestrian.boxes[i] + [SHIFT, 0, 0, 0]
                found[name] = (i - BACK, iou_xywh(r.box[None], truth[None])[0])
                break
    frames, iou = found["on"]
    assert frames <= WITHIN and iou >= FOUND_IOU, found
    # Without re-detection the local search does not get there as soon, if at all.
    assert "off" not in found or found["off"][0] > frames, found


def test_a_candidate_that_does_not_hold_is_not_taken(pedestrian):
    """Back elsewhere on every other frame only: no candidate holds 2 frames in a row, and the
    local search's own reacquisition (2 frames, one doubtful frame undoes one) never gets there."""
    rt = runtime(replace(StarkRuntime(default_model_dir(), CPU).redetect_settings, confirm_frames=2,
                         crops_per_frame=8, every_frames=1))
    lose(rt, pedestrian)
    gone = pedestrian.frame(GONE + 10)
    events = []
    for i in range(BACK, BACK + RETURN_FRAMES):
        frame = moved(pedestrian.frame(i)) if i % 2 == 0 else gone
        events.append(rt.update(frame)[0].event)
    assert TrackEventType.REACQUIRED not in events
    assert rt.redetector.crops_cut > 0


def test_lost_targets_share_the_budget(pedestrian, shared):
    """Three targets lost at once (frames of another video follow): every frame's re-detection is one
    engine call of at most crops_per_frame crops, and every target gets tiles."""
    budget = RedetectSettings(crops_per_frame=3, every_frames=1)
    rt = runtime(budget)
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
    tiles = {target_id: 0 for target_id in boxes}
    plan = rt.redetector.plan

    def counting(frame_shape, lost, search_factor):
        requests = plan(frame_shape, lost, search_factor)
        for request in requests:
            tiles[request.target_id] += not request.follows_candidate
        return requests

    rt.redetector.plan = counting
    other = load_simple_sequence(shared / "data" / "lt" / "tld_panda_first1500")
    lost_frames = 0
    for i in range(40):
        calls.clear()
        results = rt.update(cv2.resize(other.frame(1100 + i), first.shape[1::-1]))
        tracking, *redetection = calls
        assert tracking == len(boxes) and len(redetection) <= 1 and sum(redetection) <= budget.crops_per_frame
        lost_frames += all(r.state is TargetState.LOST for r in results)
    assert lost_frames > 10, "precondition: the targets are LOST on another video's frames"
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
