"""Fault injection over real DDS: each hostile input of issue 15 is sent to the installed node
process; the node must answer it (an event, a service answer or a counted skip), keep tracking a
real target afterwards, and stay under a memory bound."""

import math
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from stark_ros.msg import TrackEvent
from stark_ros.srv import StartTracking

from stark_ros.client.process import rss_mb
from stark_ros.core.boxes import msg_to_box
from stark_ros.core.stamps import NS_PER_S as NS
from stark_ros.core.stamps import set_stamp, stamp_ns
from stark_ros.datasets import load_simple_sequence
from stark_ros.interface import START_TRACKING_SERVICE, box_to_msg

from .conftest import start_tracker, wait_for

PERIOD_NS = 100_000_000
START_NS = 1_000 * NS
# The node with the untrained STARK-Lite and every buffer filled stays far below this; a decoded
# 10000 x 10000 frame alone is 300 MB, and the 3000 px box took 2.4 GB before the limits.
MEMORY_BOUND_MB = 1500
FRAME_RATE_HZ = 10.0
CONCURRENT_CALLS = 4
CALL_AHEAD_S = 0.5
BURST_REQUESTS = 1000  # as in issue 15 (809 of 1000 got no answer)


def stamp(i: int, base: int = START_NS) -> int:
    return base + i * PERIOD_NS


def start_request(box, ns: int, target_id: str = "", frame_id: str = "camera") -> StartTracking.Request:
    req = StartTracking.Request()
    req.target.bbox = box_to_msg(box)
    req.target.id = target_id
    set_stamp(req.target.header, ns)
    req.target.header.frame_id = frame_id
    return req


def start_call(client, request):
    """The future of a start_tracking call."""
    return client.call_async(StartTracking, START_TRACKING_SERVICE, request)


def answer_of(client, target_id: str, what: str, timeout: float = 30.0):
    return client.wait_event(lambda e: e.id == target_id and e.type in (TrackEvent.INITIALIZED, TrackEvent.REJECTED),
                             timeout, what)


def tracked_ids(msg) -> list[str]:
    return [o.id for o in msg.objects]


@pytest.fixture(scope="module")
def sequence(shared):
    return load_simple_sequence(shared / "data" / "sot" / "otb_crossing")


def test_hostile_stamps_never_stop_tracking(tracker, sequence):
    """Negative stamps (image, topic request, service), a frame 60 s ahead, stamps going back
    (a looping bag), zero stamps (an unstamped camera) and zero-stamp requests."""
    proc, client = tracker("stamps")
    f = [sequence.frame(i) for i in range(20)]
    client.publish_and_wait(client.image_msg(f[0], stamp(0)))
    client.request(sequence.boxes[0], stamp(0), target_id="t")
    assert answer_of(client, "t", "INITIALIZED t").type == TrackEvent.INITIALIZED

    # Negative stamps: the frame is tracked (in arrival order), the requests are refused clearly.
    assert tracked_ids(client.publish_and_wait(client.image_msg(f[1], -5 * NS), resend=True)) == ["t"]
    client.request(sequence.boxes[0], -3 * NS, target_id="neg")
    assert "negative" in answer_of(client, "neg", "an answer to the negative-stamp request").reason
    answer = start_call(client, start_request(sequence.boxes[0], -3 * NS, "negsrv"))
    wait_for(answer.done, 30.0, "the negative-stamp service answer")
    assert not answer.result().success and "negative" in answer.result().reason
    assert proc.proc.poll() is None

    # One frame 60 s ahead, then the clock is back: every target keeps updating, new ones start.
    assert tracked_ids(client.publish_and_wait(client.image_msg(f[2], stamp(2) + 60 * NS), resend=True)) == ["t"]
    assert tracked_ids(client.publish_and_wait(client.image_msg(f[3], stamp(3)), resend=True)) == ["t"]
    client.request(sequence.boxes[3], stamp(3), target_id="after_ahead")
    assert answer_of(client, "after_ahead", "INITIALIZED after_ahead").type == TrackEvent.INITIALIZED
    assert sorted(tracked_ids(client.publish_and_wait(client.image_msg(f[4], stamp(4)), resend=True))) == [
        "after_ahead", "t"]

    # Backwards (the bag starts over): tracking goes on, the log says why, a re-init starts.
    loop = START_NS - 500 * NS
    assert len(client.publish_and_wait(client.image_msg(f[0], stamp(0, loop)), resend=True).objects) == 2
    wait_for(lambda: "went back" in proc.log_text(), 10.0, "the log line about stamps going back")
    client.request(sequence.boxes[0], stamp(0, loop), target_id="t")
    restarted = client.wait_event(lambda e: e.id == "t" and e.type == TrackEvent.INITIALIZED
                                  and e.header.stamp.sec == stamp(0, loop) // NS, what="re-init after the loop")
    assert restarted.type == TrackEvent.INITIALIZED
    moved = client.publish_and_wait(client.image_msg(f[1], stamp(1, loop)), resend=True)
    assert sorted(tracked_ids(moved)) == ["after_ahead", "t"]

    # An unstamped camera (stamps 0) tracks, and a zero-stamp request starts on the newest frame.
    for i in (5, 6):
        assert len(client.publish_and_wait(client.image_msg(f[i], 0), resend=True).objects) == 2
    client.request(sequence.boxes[6], 0, target_id="zero")
    init = answer_of(client, "zero", "INITIALIZED zero")
    assert init.type == TrackEvent.INITIALIZED, init.reason
    assert "zero" in tracked_ids(client.publish_and_wait(client.image_msg(f[7], 0), resend=True))
    assert proc.proc.poll() is None


def test_every_request_is_answered_and_none_blocks(tracker, sequence):
    """A burst of requests each gets one answer (busy beyond the pending queue); concurrent service
    calls for a frame still to come all succeed while frames keep arriving."""
    proc, client = tracker("answers", max_targets=4, max_pending_requests=2, request_timeout=2.0)
    frames = [sequence.frame(i) for i in range(40)]
    client.publish_and_wait(client.image_msg(frames[0], stamp(0)))

    # Requests for frames still to come wait in the pending queue (2 places): the rest are busy.
    for k in range(5):
        client.request(sequence.boxes[0], stamp(100 + k), target_id=f"wait{k}")
    answers = [answer_of(client, f"wait{k}", f"an answer to wait{k}") for k in range(5)]
    busy = [a for a in answers if "busy" in a.reason]
    assert len(busy) >= 3 and all(a.type == TrackEvent.REJECTED for a in answers)
    assert sum("within 2 s" in a.reason for a in answers) >= 1  # the waiting ones time out, answered too

    # A burst: every request answered exactly once (good, bad, and beyond max_targets).
    ids = [f"b{k}" for k in range(BURST_REQUESTS)]
    for k, tid in enumerate(ids):
        box = sequence.boxes[0] if k % 3 else (math.nan, 0.0, 1.0, 1.0)
        client.request(box, stamp(0), target_id=tid)
    wait_for(lambda: {e.id for e in list(client.events)} >= set(ids), 60.0, "an answer to every request of the burst")
    per_id = {}
    for e in list(client.events):
        if e.id in per_id or not e.id.startswith("b"):
            continue
        per_id[e.id] = e
    assert set(per_id) == set(ids)
    assert all(per_id[f"b{k}"].type == TrackEvent.REJECTED for k in range(0, BURST_REQUESTS, 3))
    assert proc.proc.poll() is None


def test_concurrent_service_calls_do_not_starve_the_images(tracker, sequence):
    """Service calls for a frame 0.5 s ahead, more of them than the node has executor threads, while
    frames arrive at 10 Hz: the frames get in, and every call succeeds (they all failed)."""
    proc, client = tracker("concurrent")
    frames = [sequence.frame(i) for i in range(40)]
    client.publish_and_wait(client.image_msg(frames[0], stamp(0)))
    stop = threading.Event()

    def camera():
        i = 1
        while not stop.is_set():
            client.image_pub.publish(client.image_msg(frames[i % len(frames)], stamp(200 + i)))
            i += 1
            time.sleep(1.0 / FRAME_RATE_HZ)
    cam = threading.Thread(target=camera, daemon=True)
    ahead = stamp(200 + round(CALL_AHEAD_S * FRAME_RATE_HZ))
    futures = [start_call(client, start_request(sequence.boxes[0], ahead, f"c{k}"))
               for k in range(CONCURRENT_CALLS)]
    cam.start()
    try:
        wait_for(lambda: all(fu.done() for fu in futures), 30.0, "the concurrent service answers")
    finally:
        stop.set()
        cam.join()
    results = [fu.result() for fu in futures]
    assert all(r.success for r in results), [r.reason for r in results]
    assert proc.proc.poll() is None


def test_catch_up_emits_events(tracker, shared):
    """A request for an older frame is tracked through the newer ones with their events: the
    target vanishes in those frames, so LOST comes during catch-up (it was lost silently)."""
    from stark_ros.runtime import default_model_dir

    seq = load_simple_sequence(shared / "data" / "sot" / "vot2014_car")
    proc, client = tracker("catchup", model=default_model_dir())
    blank_from, frames = 3, 20
    for i in range(frames):
        img = seq.frame(i) if i < blank_from else np.zeros_like(seq.frame(i))
        client.publish_and_wait(client.image_msg(img, stamp(i)), resend=True)
    client.request(seq.boxes[0], stamp(0), target_id="car")
    lost = client.wait_event(lambda e: e.id == "car" and e.type == TrackEvent.LOST, what="LOST during catch-up")
    lost_frame = round((stamp_ns(lost.header.stamp) - START_NS) / PERIOD_NS)
    assert blank_from <= lost_frame < frames
    assert "LOST" in proc.log_text() or "lost" in proc.log_text()


def _png(width: int, height: int) -> bytes:
    """A valid small PNG whose header claims width x height (the decoder would allocate it all)."""
    _, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def test_unbounded_inputs_are_refused_before_work(tracker, sequence):
    """Huge boxes, a 10000 x 10000 PNG, a 1x1 frame mid-track: refused or skipped with a reason
    (counted on /diagnostics), the target tracks on, and the node's memory stays bounded."""
    proc, client = tracker("bounds", compressed=True, diagnostics=True)
    client.publish_and_wait(client.image_msg(sequence.frame(0), stamp(0)))
    client.request(sequence.boxes[0], stamp(0), target_id="t")
    client.request((0.0, 0.0, 3000.0, 3000.0), stamp(0), target_id="big")
    client.request((-5e4, -5e4, 1e5, 1e5), stamp(0), target_id="huge")
    assert answer_of(client, "t", "INITIALIZED t").type == TrackEvent.INITIALIZED
    for tid in ("big", "huge"):
        answer = answer_of(client, tid, f"an answer to {tid}")
        assert answer.type == TrackEvent.REJECTED and "larger than the image" in answer.reason

    bomb = CompressedImage(format="png", data=_png(10000, 10000))
    set_stamp(bomb.header, stamp(1))
    tiny = CompressedImage(format="png", data=cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes())
    set_stamp(tiny.header, stamp(2))
    for m in (bomb, tiny):
        client.image_pub.publish(m)
    after = client.publish_and_wait(client.image_msg(sequence.frame(3), stamp(3)), resend=True)
    (obj,) = after.objects
    x, y, w, h = msg_to_box(obj.bbox)
    assert obj.id == "t" and x >= 0 and y >= 0 and w > 1 and h > 1
    def skipped() -> str:
        return client.latest_diagnostics().get("frames_skipped_by_reason", "")
    wait_for(lambda: "degenerate=" in skipped() and "unreadable=" in skipped(), 10.0,
             "the skip reasons on /diagnostics")
    assert "box_too_large=2" in client.latest_diagnostics()["requests_rejected_by_reason"]
    log = proc.log_text()
    assert "exceeds max_image_pixels" in log and "too small to track" in log
    assert rss_mb(proc.proc.pid) < MEMORY_BOUND_MB


def test_raw_frames_that_claim_huge_sizes_are_skipped(tracker, sequence):
    proc, client = tracker("rawbounds")
    client.publish_and_wait(client.image_msg(sequence.frame(0), stamp(0)))
    client.request(sequence.boxes[0], stamp(0), target_id="t")
    answer_of(client, "t", "INITIALIZED t")
    liar = Image(encoding="rgb8", height=10000, width=10000, step=30000, data=b"\x00" * 64)
    set_stamp(liar.header, stamp(1))
    client.image_pub.publish(liar)
    assert tracked_ids(client.publish_and_wait(client.image_msg(sequence.frame(2), stamp(2)), resend=True)) == ["t"]
    wait_for(lambda: "exceeds max_image_pixels" in proc.log_text(), 10.0, "the skip line")


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)], ids=["640x480", "1280x720"])
def test_large_raw_frames_arrive_and_track(tracker, sequence, size):
    """Raw rgb8 VGA (921 KB) and HD (2.7 MB) frames reach the node with the transport profile
    (with Fast DDS's defaults most never arrived) and are tracked in lock step."""
    _, client = tracker(f"large{size[0]}")
    sx, sy = size[0] / sequence.frame(0).shape[1], size[1] / sequence.frame(0).shape[0]
    frames = [cv2.resize(sequence.frame(i), size) for i in range(4)]
    box = np.asarray(sequence.boxes[0]) * np.array([sx, sy, sx, sy])
    client.publish_and_wait(client.image_msg(frames[0], stamp(0), encoding="rgb8"))
    client.request(box, stamp(0), target_id="t")
    assert answer_of(client, "t", "INITIALIZED t").type == TrackEvent.INITIALIZED
    for i in range(1, len(frames)):
        msg = client.publish_and_wait(client.image_msg(frames[i], stamp(i), encoding="rgb8"))
        assert tracked_ids(msg) == ["t"]


def test_model_with_nan_weights_fails_configure(ros_context, tmp_path, untrained_lite_model):
    import onnx
    from onnx import numpy_helper

    nan_model = tmp_path / "nan_model"
    nan_model.mkdir()
    for name in ("template.onnx", "track.onnx"):
        model = onnx.load(str(Path(untrained_lite_model) / name))
        for init in model.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype.kind == "f" and arr.size > 1:
                init.CopyFrom(numpy_helper.from_array(np.full_like(arr, np.nan), init.name))
        onnx.save(model, str(nan_model / name))
    proc = start_tracker(tmp_path, "nanmodel", model=str(nan_model), intra_op_threads=1)
    code = proc.proc.wait(60)
    log = proc.log_text()
    proc.stop()
    assert code == 1, log
    assert "configure failed" in log and "non-finite" in log
