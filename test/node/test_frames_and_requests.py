"""The node's ROS-free parts: the rule for time, the frame buffer and latest-frame queue, the
request matcher (every REJECTED reason, in order), the pending queue, target records and the
per-reason log throttle. numpy only, no rclpy."""

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from stark_ros.core.geometry import BoxProblem
from stark_ros.core.images import ImageConversionError, ImageConverter, compressed_size
from stark_ros.core.stamps import NS_PER_S, split_ns, stamp_ns
from stark_ros.node.frame_buffer import Frame, FrameBuffer, LatestFrameQueue, Lookup
from stark_ros.node.log_throttle import ReasonLog
from stark_ros.node.requests import MAX_BOX_TO_FRAME, MatchSettings, PendingRequests, Reason, Request, Verdict, match
from stark_ros.node.targets import TargetTable

H, W = 240, 360
T0 = 1_000 * NS_PER_S
PERIOD = NS_PER_S // 10
SETTINGS = MatchSettings(tolerance_s=0.001, request_timeout_s=1.0, max_targets=2)
GOOD_BOX = (100.0, 80.0, 40.0, 60.0)


def frame(stamp: int, frame_id: str = "camera") -> Frame:
    return Frame(stamp, frame_id, np.zeros((H, W, 3), np.uint8), received_ns=0)


def buffer_of(*stamps, capacity: int = 10) -> FrameBuffer:
    buf = FrameBuffer(capacity)
    for s in stamps:
        buf.append(frame(s))
    return buf


def request(box=GOOD_BOX, stamp: int = T0, frame_id: str = "camera", target_id: str = "t", deadline: float = 10.0):
    return Request(stamp_ns=stamp, frame_id=frame_id, box=np.asarray(box, dtype=np.float64), target_id=target_id,
                   label="", deadline=deadline)


# ---------------------------------------------------------------------------------- time rule
def test_stamps_of_any_sign_convert():
    assert stamp_ns(SimpleNamespace(sec=-5, nanosec=0)) == -5 * NS_PER_S
    assert stamp_ns(SimpleNamespace(sec=0, nanosec=0)) == 0
    assert stamp_ns(SimpleNamespace(sec=1, nanosec=500)) == NS_PER_S + 500
    # Back to a message's (sec, nanosec): nanosec stays in [0, 1e9) for negative stamps too.
    for ns in (-3 * NS_PER_S - 1, -1, 0, NS_PER_S + 500):
        sec, nanosec = split_ns(ns)
        assert 0 <= nanosec < NS_PER_S and stamp_ns(SimpleNamespace(sec=sec, nanosec=nanosec)) == ns


def test_frames_are_numbered_in_arrival_order_whatever_their_stamps():
    buf = FrameBuffer(10)
    seqs = [buf.append(frame(s))[0].seq for s in (T0, T0 + 60 * NS_PER_S, T0 + PERIOD, 0, -NS_PER_S, T0 + PERIOD)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_backwards_stamps_start_a_new_run_and_say_so():
    buf = buffer_of(T0, T0 + PERIOD, T0 + 2 * PERIOD)
    f, jump = buf.append(frame(T0 - 50 * NS_PER_S))       # a bag starting over
    assert jump is not None and jump.forgotten_frames == 3
    assert jump.seconds == pytest.approx(50.2) and "went back" in jump.describe()
    assert len(buf) == 1 and buf.newest is f
    # The new run is looked up normally: a re-init on it starts (it used to be "older than the buffer").
    assert buf.find(T0 - 50 * NS_PER_S, 0) == (Lookup.FOUND, f)
    assert buf.append(frame(T0 - 50 * NS_PER_S + PERIOD))[1] is None


def test_jump_ahead_then_back_recovers():
    buf = buffer_of(T0, T0 + 60 * NS_PER_S)
    f, jump = buf.append(frame(T0 + PERIOD))               # the clock comes back after one bad stamp
    assert jump is not None
    assert buf.find(T0 + PERIOD, 0) == (Lookup.FOUND, f)


def test_repeated_stamps_are_not_a_jump_and_match_the_later_frame():
    buf = FrameBuffer(10)
    buf.append(frame(T0))
    second, jump = buf.append(frame(T0))
    assert jump is None and len(buf) == 2
    assert buf.find(T0, 0) == (Lookup.FOUND, second)


def test_unstamped_frames_never_match_by_stamp_nor_break_the_run():
    buf = buffer_of(T0, 0, -NS_PER_S, T0 + PERIOD)
    assert len(buf) == 4
    assert buf.find(0, 0)[0] is Lookup.OLDER_THAN_BUFFER
    only_unstamped = buffer_of(0, 0)
    assert only_unstamped.find(T0, 0)[0] is Lookup.EMPTY
    assert only_unstamped.newest is not None


def test_frames_after_follow_arrival_order():
    buf = buffer_of(T0 + 5 * PERIOD, T0, T0 + PERIOD, T0 + 2 * PERIOD)   # second one begins a new run
    (start,) = [f for f in buf.frames_after(0) if f.stamp_ns == T0]
    assert [f.stamp_ns for f in buf.frames_after(start.seq)] == [T0 + PERIOD, T0 + 2 * PERIOD]
    last = buf.newest
    assert [f.stamp_ns for f in buf.frames_after(start.seq, last.seq)] == [T0 + PERIOD]


def test_buffer_bytes_are_bounded_but_the_newest_frame_stays():
    one = frame(T0).rgb.nbytes
    buf = FrameBuffer(10, max_bytes=2 * one)
    for i in range(5):
        buf.append(frame(T0 + i * PERIOD))
    assert len(buf) == 2 and buf.newest.stamp_ns == T0 + 4 * PERIOD
    tiny = FrameBuffer(10, max_bytes=1)
    tiny.append(frame(T0))
    assert len(tiny) == 1


def test_latest_frame_queue_is_bounded_and_counts_drops():
    q = LatestFrameQueue(2)
    assert q.push(frame(1)) == 0 and q.push(frame(2)) == 0
    assert q.push(frame(3)) == 1 and len(q) == 2
    newest, skipped = q.take_newest()
    assert newest.stamp_ns == 3 and skipped == 1 and q.dropped == 2
    assert q.take_newest() == (None, 0)
    with pytest.raises(ValueError):
        LatestFrameQueue(0)


# ---------------------------------------------------------------------------------- matcher
def decide(req, buf=None, now=0.0, active=()):
    return match(req, buf if buf is not None else buffer_of(T0, T0 + PERIOD), now, active, SETTINGS)


@pytest.mark.parametrize("box, reason, text", [
    ((math.nan, 1.0, 10.0, 10.0), Reason.BAD_BOX, BoxProblem.NOT_FINITE.value),
    ((1.0, 1.0, math.inf, 10.0), Reason.BAD_BOX, BoxProblem.NOT_FINITE.value),
    ((1.0, 1.0, 0.0, 10.0), Reason.BAD_BOX, BoxProblem.NON_POSITIVE_SIZE.value),
    ((1.0, 1.0, 10.0, -3.0), Reason.BAD_BOX, BoxProblem.NON_POSITIVE_SIZE.value),
    ((5000.0, 10.0, 20.0, 20.0), Reason.OUTSIDE_IMAGE, BoxProblem.OUTSIDE_IMAGE.value),
    ((0.0, 0.0, 3000.0, 3000.0), Reason.BOX_TOO_LARGE, "larger than the image"),
    ((-5e4, -5e4, 1e5, 1e5), Reason.BOX_TOO_LARGE, "larger than the image"),
    ((0.0, 0.0, W * MAX_BOX_TO_FRAME + 1, 10.0), Reason.BOX_TOO_LARGE, "larger than the image"),
    ((10.0, 10.0, 0.5, 20.0), Reason.BOX_TOO_SMALL, "smaller than"),
])
def test_bad_boxes_have_their_own_reasons(box, reason, text):
    d = decide(request(box))
    assert d.verdict is Verdict.REJECT and d.reason is reason and text in d.message


def test_a_nan_box_is_a_bad_box_whatever_its_stamp():
    for stamp in (T0 - 100 * NS_PER_S, T0 + PERIOD // 2, T0 + 100 * NS_PER_S, -NS_PER_S):
        assert decide(request((math.nan, 0.0, 1.0, 1.0), stamp)).reason is Reason.BAD_BOX


def test_full_frame_box_is_accepted():
    assert decide(request((0.0, 0.0, float(W), float(H)))).verdict is Verdict.START


def test_stamp_reasons():
    assert decide(request(stamp=-NS_PER_S)).reason is Reason.NEGATIVE_STAMP
    assert decide(request(stamp=T0 - 100 * NS_PER_S)).reason is Reason.OLDER_THAN_BUFFER
    assert decide(request(stamp=T0 + PERIOD // 2)).reason is Reason.NO_MATCH
    assert decide(request(frame_id="other")).reason is Reason.FRAME_ID
    assert decide(request(frame_id="")).verdict is Verdict.START  # no frame_id: no check


def test_older_than_the_buffer_is_told_from_never_received():
    """A frame that arrived and left the buffer vs one that never arrived (frames before and after
    it did): the second is what a lossy transport gives, and its reason says so."""
    sent = [T0 + i * PERIOD for i in range(10)]
    lost = sent[3]
    buf = buffer_of(*[s for s in sent if s != lost], capacity=4)   # keeps sent[6:]
    evicted = decide(request(stamp=sent[2]), buf)
    assert evicted.reason is Reason.OLDER_THAN_BUFFER and "older than the oldest buffered" in evicted.message
    never = decide(request(stamp=lost), buf)
    assert never.reason is Reason.NEVER_RECEIVED and "no frame with that stamp was received" in never.message
    # Before the first frame received nothing is known: older than the buffer.
    assert decide(request(stamp=sent[0] - PERIOD), buf).reason is Reason.OLDER_THAN_BUFFER


def test_future_and_empty_wait_until_the_deadline():
    ahead = request(stamp=T0 + 10 * PERIOD, deadline=5.0)
    assert decide(ahead, now=1.0).verdict is Verdict.WAIT
    late = decide(ahead, now=6.0)
    assert late.reason is Reason.TIMEOUT and "within 1 s" in late.message
    assert decide(request(deadline=5.0), FrameBuffer(3), now=1.0).verdict is Verdict.WAIT
    assert decide(request(stamp=0, deadline=5.0), FrameBuffer(3), now=6.0).reason is Reason.TIMEOUT


def test_zero_stamp_means_the_newest_frame_stamped_or_not():
    buf = buffer_of(T0, T0 + PERIOD, 0)
    d = decide(request(stamp=0), buf)
    assert d.verdict is Verdict.START and d.frame is buf.newest


def test_max_targets_but_a_restart_of_an_active_id_is_allowed():
    assert decide(request(target_id="c"), active=("a", "b")).reason is Reason.MAX_TARGETS
    assert decide(request(target_id="a"), active=("a", "b")).verdict is Verdict.START
    assert decide(request(target_id=""), active=("a",)).verdict is Verdict.START


def test_start_gives_the_frame_and_the_checked_box():
    buf = buffer_of(T0, T0 + PERIOD)
    d = decide(request(stamp=T0), buf)
    assert d.verdict is Verdict.START and d.frame.stamp_ns == T0
    np.testing.assert_array_equal(d.box, GOOD_BOX)


def test_pending_requests_are_bounded_until_answered():
    q = PendingRequests(2)
    a, b, c = request(target_id="a"), request(target_id="b"), request(target_id="c")
    assert q.offer(a) and q.offer(b) and not q.offer(c)
    assert q.snapshot() == [a, b]
    q.prune()
    assert not q.offer(c)            # looked at by the worker but unanswered: still counted
    a.answer(True, "a", "")
    q.prune()
    assert q.offer(c) and q.snapshot() == [b, c]
    assert q.drain() == [b, c] and len(q) == 0


def test_a_request_is_answered_once():
    answers = []
    r = request()
    r.reply = lambda *a: answers.append(a)
    r.answer(False, "t", "first").deliver()
    assert r.answer(True, "t", "second") is None
    assert answers == [(False, "t", "first")]
    assert request().answer(True, "t", "") is None     # a topic request: nothing to deliver


# ---------------------------------------------------------------------------------- records, logs
def test_target_table_keeps_one_record_per_target_and_owns_the_policys():
    from stark_ros.tracking.policy import TrackingPolicy
    from stark_ros.tracking.settings import TrackerSettings

    class Engine:
        def encode_templates(self, images, masks):
            return [0] * len(images)

        def predict(self, templates_by_slot, images, masks):
            n = len(images)
            return np.tile([[[0.5, 0.5, 0.2, 0.2]]], (n, 1, 1)), np.full((n, 1), 3.0)

    policy = TrackingPolicy(Engine(), TrackerSettings(template_size=32, search_size=64))
    table = TargetTable(policy)
    f = Frame(T0, "camera", np.zeros((H, W, 3), np.uint8), received_ns=0, seq=3)
    table.start(f, GOOD_BOX, "a", "person")
    table.start(Frame(T0, "camera", f.rgb, 0, seq=5), GOOD_BOX, "b", "")
    assert table.due(5) == ["a"] and table.due(6) == ["a", "b"]
    (result,) = table.track(Frame(T0, "camera", f.rgb, 0, seq=7), ["a"])
    assert table.due(7) == ["b"] and table.get("a").frames_tracked == 1
    np.testing.assert_array_equal(table.get("a").box, result.box)
    table.start(Frame(T0, "camera", f.rgb, 0, seq=8), GOOD_BOX, "a", "car")   # restart replaces the record
    assert table.get("a").label == "car" and table.get("a").frames_tracked == 0
    assert table.start(f, GOOD_BOX, "", "").target_id not in ("a", "b")     # the policy names it
    assert table.remove("a").target_id == "a" and "a" not in table and len(table) == 2
    assert sorted(policy.target_ids) == sorted(table.ids())
    table.clear()
    assert policy.target_ids == [] and len(table) == 0


def test_reason_log_throttles_each_reason_on_its_own():
    now = [0.0]
    log = ReasonLog(5.0, clock=lambda: now[0])
    assert log.record("busy") == 0
    assert log.record("busy") is None and log.record("busy") is None
    assert log.record("bad_box") == 0            # another reason is not hidden by the first
    now[0] = 6.0
    assert log.record("busy") == 2                # says how many went unlogged
    assert log.counts == {"busy": 4, "bad_box": 1} and log.total() == 5
    assert log.summary() == "busy=4,bad_box=1"


# ---------------------------------------------------------------------------------- image size
def test_compressed_size_is_read_from_the_header():
    rgb = np.zeros((37, 53, 3), np.uint8)
    ok, png = cv2.imencode(".png", rgb)
    assert ok and compressed_size(png.tobytes()) == (53, 37)
    jpeg = ImageConverter.rgb_to_jpeg(rgb)
    assert compressed_size(jpeg) == (53, 37)
    assert compressed_size(b"GIF89a....") is None
    assert compressed_size(b"\xff\xd8\xff") is None


def test_huge_compressed_images_are_refused_before_decoding():
    conv = ImageConverter(max_pixels=1000 * 1000)

    class Msg:
        format = "png"

    # A PNG header claiming 10000 x 10000 px: refused from the header (decoding would take 300 MB).
    _, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = (10000).to_bytes(4, "big") + (10000).to_bytes(4, "big")
    Msg.data = bytes(data)
    with pytest.raises(ImageConversionError, match="exceeds max_image_pixels"):
        conv.compressed_to_rgb(Msg)
