"""The tracker node over real DDS: what it publishes equals the runtime, every refusal is an
event with a reason, bad input never stops it, services and lifecycle work."""

import math
import time

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CompressedImage, Image
from stark_ros.msg import TrackEvent
from stark_ros.srv import CancelTracking, ListTargets, StartTracking

from stark_ros.core.boxes import msg_to_box
from stark_ros.core.geometry import BoxProblem
from stark_ros.core.images import ImageConverter
from stark_ros.core.stamps import NS_PER_S, set_stamp, stamp_ns
from stark_ros.datasets import load_simple_sequence
from stark_ros.interface import (
    CANCEL_TRACKING_SERVICE,
    DEBUG_IMAGE_TOPIC,
    IMAGE_QOS,
    LIST_TARGETS_SERVICE,
    START_TRACKING_SERVICE,
    box_to_msg,
)
from stark_ros.node.frame_buffer import Lookup
from stark_ros.runtime import RuntimeOptions, StarkRuntime

from .conftest import TrackerClient, start_tracker, wait_for

SEQUENCE = "otb_crossing"
FRAME_PERIOD_NS = 100_000_000
START_NS = 1_000 * NS_PER_S
INIT_FRAME = 1          # the request is stamped on this frame...
BUFFERED_FRAMES = 5     # ...after this many frames were already published (so it is not the newest)
TRACKED_FRAMES = 12
BOX_TOLERANCE_PX = 1e-3


def stamp(i: int) -> int:
    return START_NS + i * FRAME_PERIOD_NS


@pytest.fixture(scope="module")
def sequence(shared):
    return load_simple_sequence(shared / "data" / "sot" / SEQUENCE)


@pytest.mark.parametrize("compressed", [False, True], ids=["Image", "CompressedImage"])
def test_published_boxes_equal_the_runtime(tracker, sequence, untrained_lite_model, compressed):
    name = "cmp" if compressed else "raw"
    _, client = tracker(name, compressed=compressed)
    frames = [sequence.frame(i) for i in range(TRACKED_FRAMES)]
    msgs = [client.image_msg(f, stamp(i)) for i, f in enumerate(frames)]
    for m in msgs[:BUFFERED_FRAMES]:
        client.publish_and_wait(m)
    client.request(sequence.boxes[INIT_FRAME], stamp(INIT_FRAME), target_id="walker", label="person")
    init = client.wait_event(lambda e: e.type == TrackEvent.INITIALIZED, what="INITIALIZED")
    assert init.id == "walker" and init.header.stamp.sec == stamp(INIT_FRAME) // NS_PER_S
    published = [client.publish_and_wait(m) for m in msgs[BUFFERED_FRAMES:]]

    # The same frames through the runtime directly (decoded the way the node decodes them).
    conv = ImageConverter()
    seen = [conv.compressed_to_rgb(m) if compressed else conv.image_to_rgb(m) for m in msgs]
    rt = StarkRuntime(untrained_lite_model, RuntimeOptions(providers=("CPUExecutionProvider",), intra_op_threads=1))
    rt.add_target(seen[INIT_FRAME], sequence.boxes[INIT_FRAME], "walker")
    for f in seen[INIT_FRAME + 1:BUFFERED_FRAMES]:
        rt.update(f)
    for msg, f in zip(published, seen[BUFFERED_FRAMES:], strict=False):
        (expected,) = rt.update(f)
        (obj,) = msg.objects
        assert obj.id == "walker" and obj.label == "person"
        np.testing.assert_allclose(msg_to_box(obj.bbox), expected.box, atol=BOX_TOLERANCE_PX)
        assert obj.score == pytest.approx(expected.score, abs=1e-5)


def test_every_rejection_has_its_reason(tracker, sequence):
    _, client = tracker("rej", request_timeout=0.5)
    for i in range(4):
        client.publish_and_wait(client.image_msg(sequence.frame(i), stamp(i)))
    good = sequence.boxes[0]
    cases = {
        "nan": ((math.nan, 1.0, 10.0, 10.0), stamp(1), "camera", BoxProblem.NOT_FINITE.value),
        "zero": ((10.0, 10.0, 0.0, 10.0), stamp(1), "camera", BoxProblem.NON_POSITIVE_SIZE.value),
        "outside": ((5000.0, 10.0, 20.0, 20.0), stamp(1), "camera", BoxProblem.OUTSIDE_IMAGE.value),
        "frame": (good, stamp(1), "other_camera", "does not match the image's frame_id"),
        "between": (good, stamp(1) + FRAME_PERIOD_NS // 2, "camera", Lookup.NO_MATCH.value),
        "old": (good, stamp(-50), "camera", Lookup.OLDER_THAN_BUFFER.value),
        "future": (good, stamp(500), "camera", "no frame with the request's stamp arrived within 0.5 s"),
    }
    for tid, (box, st, frame_id, _) in cases.items():
        client.request(box, st, target_id=tid, frame_id=frame_id)
    for tid, (*_, reason) in cases.items():
        event = client.wait_event(lambda e, tid=tid: e.id == tid, what=f"the answer to request {tid!r}")
        assert event.type == TrackEvent.REJECTED, tid
        assert reason in event.reason, (tid, event.reason)


def test_bad_frames_are_skipped_and_tracking_goes_on(tracker, sequence):
    proc, client = tracker("bad")
    client.publish_and_wait(client.image_msg(sequence.frame(0), stamp(0)))
    client.request(sequence.boxes[0], stamp(0), target_id="t")
    client.wait_event(lambda e: e.type == TrackEvent.INITIALIZED, what="INITIALIZED")
    good = client.image_msg(sequence.frame(1), stamp(1))
    bad = [
        Image(encoding="yuv422", height=good.height, width=good.width, step=good.step, data=good.data),
        Image(encoding="bgr8", height=good.height, width=good.width, step=good.width, data=good.data),
        Image(encoding="bgr8", height=good.height, width=good.width, step=good.step, data=bytes(good.data[:1000])),
        Image(encoding="bgr8", height=1 << 15, width=1 << 15, step=3 << 15, data=b"\x00" * 16),
        Image(encoding="bgr8", height=0, width=0, step=0, data=b""),
    ]
    for i, b in enumerate(bad):
        b.header.stamp.sec = 2000 + i
        client.image_pub.publish(b)
    msg = client.publish_and_wait(client.image_msg(sequence.frame(2), stamp(2)))
    assert [o.id for o in msg.objects] == ["t"]
    assert proc.proc.poll() is None
    assert "frame skipped" in proc.log_text()


def test_undecodable_compressed_frames_are_skipped(tracker, sequence):
    proc, client = tracker("badjpeg", compressed=True)
    client.publish_and_wait(client.image_msg(sequence.frame(0), stamp(0)))
    client.request(sequence.boxes[0], stamp(0), target_id="t")
    client.wait_event(lambda e: e.type == TrackEvent.INITIALIZED, what="INITIALIZED")
    garbage = CompressedImage(format="jpeg", data=b"\xff\xd8\xff garbage")
    garbage.header.stamp.sec = 3000
    client.image_pub.publish(garbage)
    msg = client.publish_and_wait(client.image_msg(sequence.frame(1), stamp(1)))
    assert [o.id for o in msg.objects] == ["t"]
    assert "the compressed image" in proc.log_text()


def test_services_start_list_cancel(tracker, sequence):
    _, client = tracker("srv")
    debug_images = client.listen(Image, DEBUG_IMAGE_TOPIC, IMAGE_QOS)
    client.publish_and_wait(client.image_msg(sequence.frame(0), stamp(0)))
    req = StartTracking.Request()
    req.target.bbox = box_to_msg(sequence.boxes[0])
    set_stamp(req.target.header, stamp(0))
    req.target.header.frame_id = "camera"
    answer = client.call(StartTracking, START_TRACKING_SERVICE, req)
    assert answer.success and answer.id, answer.reason
    bad = StartTracking.Request()
    bad.target.bbox = box_to_msg((1.0, 1.0, 0.0, 0.0))
    bad.target.header = req.target.header
    refused = client.call(StartTracking, START_TRACKING_SERVICE, bad)
    assert not refused.success and refused.reason == BoxProblem.NON_POSITIVE_SIZE.value
    listed = client.call(ListTargets, LIST_TARGETS_SERVICE, ListTargets.Request())
    assert [t.id for t in listed.targets] == [answer.id]
    # With a subscriber, debug_image is the frame with the target's box drawn on it (green: tracking).
    tracked = client.image_msg(sequence.frame(1), stamp(1))
    client.publish_and_wait(tracked, resend=True)
    drawn = wait_for(lambda: [m for m in list(debug_images) if stamp_ns(m.header.stamp) == stamp(1)], 10.0,
                     "the debug image of a tracked frame")[0]
    changed = ImageConverter().image_to_rgb(drawn) != sequence.frame(1)
    assert changed.any() and not changed.all()
    unknown = client.call(CancelTracking, CANCEL_TRACKING_SERVICE, CancelTracking.Request(id="nope"))
    assert not unknown.success and "no active target" in unknown.reason
    cancelled = client.call(CancelTracking, CANCEL_TRACKING_SERVICE, CancelTracking.Request(id=answer.id))
    assert cancelled.success and list(cancelled.cancelled_ids) == [answer.id]
    client.wait_event(lambda e: e.type == TrackEvent.CANCELLED and e.id == answer.id, what="CANCELLED")
    assert not client.call(ListTargets, LIST_TARGETS_SERVICE, ListTargets.Request()).targets


def test_overload_drops_frames_and_keeps_up(tracker, sequence):
    proc, client = tracker("load", queue_size=2)
    client.publish_and_wait(client.image_msg(sequence.frame(0), stamp(0)))
    client.request(sequence.boxes[0], stamp(0), target_id="t")
    client.wait_event(lambda e: e.type == TrackEvent.INITIALIZED, what="INITIALIZED")
    frames = [client.image_msg(sequence.frame(i % 10), stamp(i)) for i in range(1, 61)]
    for m in frames:  # as fast as DDS takes them: far faster than the worker runs
        client.image_pub.publish(m)
    # The last best-effort frame of a burst may be lost in DDS: publish_and_wait sends it again.
    client.publish_and_wait(frames[-1], timeout=60.0, resend=True)
    processed = set(client.tracks_by_stamp())
    assert len(processed) < len(frames)  # frames were dropped, not queued without bound
    assert proc.proc.poll() is None


def test_runtime_parameters_are_validated(tracker):
    _, client = tracker("params")

    def set_params(**values):
        req = SetParameters.Request()
        for key, value in values.items():
            v = (ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value) if isinstance(value, float)
                 else ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value))
            req.parameters.append(Parameter(name=key, value=v))
        return client.call(SetParameters, "params/set_parameters", req).results

    (ok,) = set_params(lost_threshold=0.2)
    assert ok.successful
    (bad,) = set_params(reacquire_threshold=0.1)
    assert not bad.successful and "reacquire_threshold" in bad.reason
    (read_only,) = set_params(queue_size=5)
    assert not read_only.successful


def test_missing_model_fails_configure_clearly(ros_context, tmp_path):
    proc = start_tracker(tmp_path, "nomodel", model=str(tmp_path / "does_not_exist"))
    code = proc.proc.wait(60)
    log = proc.log_text()
    proc.stop()
    assert code == 1
    assert "configure failed" in log and "model folder not found" in log


def test_manual_lifecycle(ros_context, tmp_path, untrained_lite_model, sequence):
    proc = start_tracker(tmp_path, "managed", model=str(untrained_lite_model), auto_activate=False,
                         intra_op_threads=1)
    client = TrackerClient("managed", context=ros_context, name="client_managed")
    try:
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            req = ChangeState.Request()
            req.transition.id = transition
            assert client.call(ChangeState, "managed/change_state", req).success
        client.wait_connected(proc)
        client.publish_and_wait(client.image_msg(sequence.frame(0), stamp(0)))
        req = ChangeState.Request()
        req.transition.id = Transition.TRANSITION_DEACTIVATE
        assert client.call(ChangeState, "managed/change_state", req).success
        time.sleep(0.5)
        assert proc.proc.poll() is None
    finally:
        client.close()
        proc.stop()


BLANK_FROM, BLANK_TO = 15, 30  # frames replaced by black images: the target disappears


def test_lost_and_reacquired_on_blanked_frames(tracker, shared):
    """With the default (trained) model: black frames make the target LOST, the real frames after
    them make it REACQUIRED; both events arrive on the events topic."""
    from stark_ros.runtime import default_model_dir

    seq = load_simple_sequence(shared / "data" / "sot" / "vot2014_car")
    _, client = tracker("lost", model=default_model_dir())
    client.publish_and_wait(client.image_msg(seq.frame(0), stamp(0)))
    client.request(seq.boxes[0], stamp(0), target_id="car")
    client.wait_event(lambda e: e.type == TrackEvent.INITIALIZED, what="INITIALIZED")
    for i in range(1, BLANK_TO + 25):
        frame = seq.frame(i)
        if BLANK_FROM <= i < BLANK_TO:
            frame = np.zeros_like(frame)
        client.publish_and_wait(client.image_msg(frame, stamp(i)))
    lost = client.wait_event(lambda e: e.type == TrackEvent.LOST, what="LOST")
    back = client.wait_event(lambda e: e.type == TrackEvent.REACQUIRED, what="REACQUIRED")
    lost_frame = round((stamp_ns(lost.header.stamp) - START_NS) / FRAME_PERIOD_NS)
    back_frame = round((stamp_ns(back.header.stamp) - START_NS) / FRAME_PERIOD_NS)
    assert BLANK_FROM <= lost_frame < BLANK_TO, lost_frame
    assert back_frame >= BLANK_TO, back_frame
