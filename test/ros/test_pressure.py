"""Nothing silent under pressure (issue 22), over real DDS against the installed node process:
every one of 200 concurrent service calls answered once, a cancel never overtakes the start before
it, a stop or deactivate during a long catch-up is clean, frames lost in transport are counted,
and the weak cases (silence, cleanup, a new image size or frame_id, parameters while unconfigured)
each say what happened. Each test prints the figures it measured."""

import collections
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from stark_ros.msg import TrackEvent
from stark_ros.srv import CancelTracking, ListTargets, StartTracking

from stark_ros.core.stamps import NS_PER_S as NS
from stark_ros.core.stamps import set_stamp
from stark_ros.datasets import load_simple_sequence
from stark_ros.interface import (
    CANCEL_TRACKING_SERVICE,
    DIAGNOSTICS_QOS,
    DIAGNOSTICS_TOPIC,
    LIST_TARGETS_SERVICE,
    SERVICE_QUEUE_DEPTH,
    START_TRACKING_SERVICE,
    box_to_msg,
)
from stark_ros.node.parameters import PARAMETERS

from .conftest import TrackerClient, start_tracker, wait_for

PERIOD_NS = 100_000_000
START_NS = 1_000 * NS
CONCURRENT_CALLS = 200            # issue 22: 12 of 20 and 13 of 50 concurrent calls were answered
CHURN_TRIALS = 30                 # issue 22: 10 of 30 cancels overtook their start
ANSWER_TIMEOUT_S = 60.0
QUIET_S = 1.0                     # after deactivate: nothing may be published for this long
SIGNAL_EXIT_TIMEOUT_S = 30.0
FRAMES_WITHOUT_PROFILE = 30
VGA = (480, 640)


def stamp(i: int) -> int:
    return START_NS + i * PERIOD_NS


def start_request(box, ns: int, target_id: str) -> StartTracking.Request:
    req = StartTracking.Request()
    req.target.bbox = box_to_msg(box)
    req.target.id = target_id
    set_stamp(req.target.header, ns)
    req.target.header.frame_id = "camera"
    return req


def change_state(client, name: str, transition: int) -> bool:
    req = ChangeState.Request()
    req.transition.id = transition
    return client.call(ChangeState, f"{name}/change_state", req).success


@pytest.fixture(scope="module")
def car(shared):
    return load_simple_sequence(shared / "data" / "sot" / "vot2014_car")


def test_the_node_declares_the_clients_service_depth():
    assert PARAMETERS["service_queue_depth"].default == SERVICE_QUEUE_DEPTH


def test_every_concurrent_service_call_is_answered_once(tracker, car):
    """200 start and cancel calls at once, far beyond max_pending_requests: each gets one answer
    (started, refused with a reason, or busy), each start one event; none is lost in DDS."""
    proc, client = tracker("calls", max_pending_requests=32)
    client.publish_and_wait(client.image_msg(car.frame(0), stamp(0)))
    calls = []
    for k in range(CONCURRENT_CALLS):
        if k % 4 == 3:
            calls.append(("cancel", client.call_async(CancelTracking, CANCEL_TRACKING_SERVICE,
                                                      CancelTracking.Request(id=f"s{k - 1}"))))
        else:
            calls.append((f"s{k}", client.call_async(StartTracking, START_TRACKING_SERVICE,
                                                     start_request(car.boxes[0], 0, f"s{k}"))))
    done = wait_for(lambda: all(f.done() for _, f in calls) or None, ANSWER_TIMEOUT_S, "every service answer",
                    raise_on_timeout=False)
    answered = sum(f.done() for _, f in calls)
    reasons = collections.Counter((f.result().reason.split(":")[0].split(" with id")[0] or "ok")
                                  for _, f in calls if f.done())
    print(f"\n{answered}/{CONCURRENT_CALLS} concurrent calls answered; answers by reason: {dict(reasons)}")
    assert done and answered == CONCURRENT_CALLS
    starts = {what for what, _ in calls if what != "cancel"}
    wait_for(lambda: starts <= {e.id for e in list(client.events)}, ANSWER_TIMEOUT_S, "an event for every start")
    per_id = collections.Counter(e.id for e in list(client.events)
                                 if e.type in (TrackEvent.INITIALIZED, TrackEvent.REJECTED))
    assert all(per_id[s] == 1 for s in starts), [s for s in starts if per_id[s] != 1]
    assert reasons["busy"] > 0                      # the limit was reached and said so
    assert proc.proc.poll() is None


def test_a_cancel_never_overtakes_its_start(tracker, car):
    """Start then cancel for one id, back to back, 30 times: every cancel finds its target."""
    proc, client = tracker("churn", max_targets=CHURN_TRIALS, max_pending_requests=2 * CHURN_TRIALS)
    client.publish_and_wait(client.image_msg(car.frame(0), stamp(0)))
    # DDS orders the messages of one service, not of two. Just after a client is created, the node may
    # not yet have matched its request writer, so its first requests arrive later (resent once it has)
    # than those sent after them on the other service: about 1 run in 20 under load, every cancel came
    # before its start. One answered call per service first: both clients are then known to the node.
    assert client.call(StartTracking, START_TRACKING_SERVICE, start_request(car.boxes[0], 0, "warm")).success
    assert client.call(CancelTracking, CANCEL_TRACKING_SERVICE, CancelTracking.Request(id="warm")).success
    pairs = []
    for k in range(CHURN_TRIALS):
        start = client.call_async(StartTracking, START_TRACKING_SERVICE, start_request(car.boxes[0], 0, f"c{k}"))
        cancel = client.call_async(CancelTracking, CANCEL_TRACKING_SERVICE, CancelTracking.Request(id=f"c{k}"))
        pairs.append((start, cancel))
    wait_for(lambda: all(s.done() and c.done() for s, c in pairs), ANSWER_TIMEOUT_S, "the churn's answers")
    refused = [c.result().reason for _, c in pairs if not c.result().success]
    print(f"\n{len(refused)}/{CHURN_TRIALS} cancels refused; "
          f"{sum(s.result().success for s, _ in pairs)}/{CHURN_TRIALS} starts succeeded; refusals: "
          f"{collections.Counter(refused + [s.result().reason for s, _ in pairs if not s.result().success])}")
    assert all(s.result().success for s, _ in pairs)
    assert refused == []
    assert client.call(ListTargets, LIST_TARGETS_SERVICE, ListTargets.Request()).targets == []
    assert proc.proc.poll() is None


def _buffer_frames(client, car, count: int, blank_from: int) -> None:
    """``count`` frames into the node's buffer (the target vanishes from ``blank_from`` on)."""
    for i in range(count):
        rgb = car.frame(i) if i < blank_from else np.zeros_like(car.frame(i))
        client.image_pub.publish(client.image_msg(rgb, stamp(i)))
        time.sleep(0.01)
    client.publish_and_wait(client.image_msg(car.frame(count - 1), stamp(count)), resend=True)


def _catching_up(proc, times: int):
    return wait_for(lambda: proc.log_text().count("catching up through") >= times, ANSWER_TIMEOUT_S,
                    "a long catch-up to begin")


def test_stop_and_deactivate_during_a_long_catch_up_are_clean(tracker, car):
    """A request stamped on the oldest of ~240 buffered frames makes one step of several seconds.
    Deactivate during it returns once the worker has stopped (nothing is published afterwards), one
    worker runs after activate, and SIGTERM during the next such step exits cleanly."""
    from stark_ros.runtime import default_model_dir

    frames = len(car.frames) - 10
    proc, client = tracker("stop", model=default_model_dir(), frame_buffer_size=frames + 5)
    _buffer_frames(client, car, frames, blank_from=frames - 30)   # LOST comes near the catch-up's end
    client.request(car.boxes[0], stamp(0), target_id="car")
    _catching_up(proc, 1)
    t0 = time.monotonic()
    assert change_state(client, "stop", Transition.TRANSITION_DEACTIVATE)
    deactivate_s = time.monotonic() - t0
    seen = (len(client.tracks), len(client.events))
    time.sleep(QUIET_S)
    after = (len(client.tracks) - seen[0], len(client.events) - seen[1])
    print(f"\ndeactivate during the catch-up returned in {deactivate_s:.2f} s; tracks/events published after "
          f"it: {after}")
    assert after == (0, 0)

    assert change_state(client, "stop", Transition.TRANSITION_ACTIVATE)
    time.sleep(QUIET_S)
    since = len(client.tracks)
    client.publish_and_wait(client.image_msg(car.frame(0), stamp(frames + 1)), resend=True)
    time.sleep(QUIET_S)
    tracked = [t for t in client.tracks[since:] if t.header.stamp.sec == stamp(frames + 1) // NS]
    assert len(tracked) == 1 and [o.id for o in tracked[0].objects] == ["car"]   # one worker, target kept
    assert proc.log_text().count("catch-up stopped") == 1

    client.request(car.boxes[1], stamp(1), target_id="again")
    _catching_up(proc, 2)
    proc.proc.send_signal(signal.SIGTERM)
    code = proc.proc.wait(SIGNAL_EXIT_TIMEOUT_S)
    log = proc.log_text()
    problems = [p for p in ("RCLError", "terminate called", "Traceback") if p in log]
    print(f"SIGTERM during the catch-up: exit code {code}, problems in the log: {problems}")
    assert code == 0 and problems == []


PUBLISHER = """
import sys, time, numpy as np, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("camera_without_profile", namespace=sys.argv[1])
# A camera driver's usual QoS (best effort): the node turns its image subscription best effort for it.
pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
while pub.get_subscription_count() == 0:
    time.sleep(0.05)
time.sleep(1.0)
h, w, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
msg = Image(height=h, width=w, encoding="rgb8", step=3 * w, data=np.zeros(h * w * 3, np.uint8).tobytes())
msg.header.frame_id = "camera"
for i in range(n):
    msg.header.stamp.sec = 1000 + i
    pub.publish(msg)
    time.sleep(0.1)
time.sleep(1.0)
"""


def test_frames_lost_in_transport_are_counted_and_said(tracker, monkeypatch):
    """A camera and a node without the large-image profile (`ros2 run`, a driver without it): the
    VGA frames DDS loses are counted on /diagnostics, with a warning that says why."""
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)   # for the node and the camera
    proc, client = tracker("transport", diagnostics=True)
    camera = subprocess.run([sys.executable, "-c", PUBLISHER, "/transport", *map(str, VGA),
                             str(FRAMES_WITHOUT_PROFILE)], env=dict(os.environ), timeout=ANSWER_TIMEOUT_S)
    assert camera.returncode == 0
    lost = wait_for(lambda: int(client.latest_diagnostics().get("frames_lost_in_transport", "0")), 10.0,
                    "frames_lost_in_transport on /diagnostics", raise_on_timeout=False) or 0
    print(f"\nVGA without the profile: {lost}/{FRAMES_WITHOUT_PROFILE} frames counted lost in transport, "
          f"{client.latest_diagnostics().get('frames_processed')} processed")
    assert lost > 0
    assert "lost in transport" in proc.log_text() and "fastdds_large_images.xml" in proc.log_text()


def _statuses(received: list, name: str) -> list:
    return [s for msg in list(received) for s in msg.status if s.name.startswith(f"{name}:")]


def _set(client, name: str, **values) -> list:
    req = SetParameters.Request()
    for key, value in values.items():
        req.parameters.append(Parameter(name=key, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                                       double_value=value)))
    return client.call(SetParameters, f"{name}/set_parameters", req).results


def test_the_weak_cases_each_say_what_happened(ros_context, tmp_path, untrained_lite_model, car):
    """One managed node: parameters checked while unconfigured; /diagnostics says "waiting for
    images" while the camera is silent; a new image size restarts the target (INITIALIZED with the
    reason), a new frame_id cancels it (with the reason); cleanup cancels every target."""
    name = "weak"
    proc = start_tracker(tmp_path, name, model=str(untrained_lite_model), auto_activate=False, intra_op_threads=1,
                         image_timeout=0.5, diagnostics_period=0.2)
    client = TrackerClient(name, context=ros_context, name=f"client_{name}")
    diagnostics = client.listen(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
    try:
        (ok,) = _set(client, name, lost_threshold=0.2)
        (refused,) = _set(client, name, reacquire_threshold=0.1)
        print(f"\nunconfigured: lost_threshold 0.2 accepted={ok.successful}, reacquire_threshold 0.1 "
              f"accepted={refused.successful} ({refused.reason})")
        assert ok.successful and not refused.successful and "reacquire_threshold" in refused.reason
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert change_state(client, name, transition)
        client.wait_connected(proc)

        client.publish_and_wait(client.image_msg(car.frame(0), stamp(0)))
        client.request(car.boxes[0], stamp(0), target_id="a")
        client.request(car.boxes[0], stamp(0), target_id="b")
        client.wait_event(lambda e: e.id == "b" and e.type == TrackEvent.INITIALIZED, what="INITIALIZED b")
        last = {o.id: o for o in client.publish_and_wait(client.image_msg(car.frame(1), stamp(1))).objects}
        waiting = wait_for(lambda: [s for s in _statuses(diagnostics, name) if s.message == "waiting for images"
                                    and {kv.key: kv.value for kv in s.values}["frames_processed"] == "2"],
                           10.0, "'waiting for images' after the silence")[-1]
        fps = {kv.key: kv.value for kv in waiting.values}["fps"]
        print(f"silent camera: /diagnostics says {waiting.message!r} (level {waiting.level[0]}), fps {fps}")
        assert waiting.level == DiagnosticStatus.WARN and fps == "0.0"

        half = car.frame(2)[::2, ::2].copy()
        tracks = client.publish_and_wait(client.image_msg(half, stamp(2)), resend=True)
        restarted = client.wait_event(lambda e: e.id == "a" and e.type == TrackEvent.INITIALIZED
                                      and "size changed" in e.reason, what="the restart on the new size")
        print(f"new image size: {restarted.reason!r}; tracks on it: {sorted(o.id for o in tracks.objects)}")
        assert sorted(o.id for o in tracks.objects) == ["a", "b"]
        assert abs(restarted.bbox.size_x - last["a"].bbox.size_x / 2) < 1.0     # its last box, scaled

        other = client.image_msg(half, stamp(3), frame_id="other_camera")
        assert client.publish_and_wait(other, resend=True).objects == []
        moved = client.wait_event(lambda e: e.id == "a" and e.type == TrackEvent.CANCELLED, what="CANCELLED a")
        print(f"new frame_id: {moved.reason!r}")
        assert "frame_id changed" in moved.reason
        assert proc.log_text().count("the image changed from") == 2      # once per change

        client.request((10.0, 10.0, 40.0, 40.0), stamp(3), target_id="c", frame_id="other_camera")
        client.wait_event(lambda e: e.id == "c" and e.type == TrackEvent.INITIALIZED, what="INITIALIZED c")
        for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP):
            assert change_state(client, name, transition)
        cancelled = client.wait_event(lambda e: e.id == "c" and e.type == TrackEvent.CANCELLED, what="CANCELLED c")
        print(f"cleanup: CANCELLED c with {cancelled.reason!r}")
        assert "cleaned up" in cancelled.reason
        assert proc.proc.poll() is None
    finally:
        client.close()
        proc.stop()


LARGE_FRAMES = {"1080p": (1080, 1920), "4K": (2160, 3840)}
LARGE_FRAME_COUNT = 4
# The report's box: 94% x 93% of the frame, 3% from its corner; beside it a box of a usual size.
FULL_BOX_SHARE = (0.03, 0.03, 0.94, 0.93)
NORMAL_BOX_SHARE = (0.45, 0.45, 0.06, 0.08)
# Through the node a frame also pays its transport and decoding, the same for both boxes: a
# full-frame box may cost a little more than a normal one, never the multiples it used to
# (0.45 s and 760 MB a frame at 1080p, 3 s and 2.4 GB at 4K). Delivering a 24 MB 4K frame over DDS
# adds 0-60 ms of its own to single frames (a median of 4 frames once read 30 vs 92 ms for the same
# work), so each box is judged by its fastest frame: its own cost plus the quickest delivery.
MAX_LATENCY_RATIO = 2.0
MAX_PEAK_RSS_RATIO = 1.5
KB = 1024


def _peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory so far (Linux: VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * KB


def _share_box(share, height: int, width: int) -> np.ndarray:
    x, y, w, h = share
    return np.array([x * width, y * height, w * width, h * height])


@pytest.mark.parametrize("size", list(LARGE_FRAMES))
def test_a_full_frame_box_on_a_large_frame_costs_about_a_normal_box(tracker, size):
    """Issue 22, item 3, over DDS: the node's latency and peak memory with a full-frame box on 1080p
    and 4K frames, as ratios to a normal box on the same frames (normal first, so that its peak
    memory is the reference the full-frame box may not exceed by much)."""
    height, width = LARGE_FRAMES[size]
    proc, client = tracker(f"large_{size.lower()}")
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    latency_ms, peak = {}, {}
    for phase, share in (("normal", NORMAL_BOX_SHARE), ("full", FULL_BOX_SHARE)):
        first = {"normal": 0, "full": LARGE_FRAME_COUNT + 1}[phase]
        client.publish_and_wait(client.image_msg(frame, stamp(first)), resend=True)
        client.request(_share_box(share, height, width), stamp(first), target_id=phase)
        client.wait_event(lambda e, p=phase: e.id == p and e.type == TrackEvent.INITIALIZED,
                          what=f"INITIALIZED {phase}")
        stamps = [stamp(first + 1 + i) for i in range(LARGE_FRAME_COUNT)]
        for ns in stamps:
            tracks = client.publish_and_wait(client.image_msg(frame, ns), resend=True)
            assert [o.id for o in tracks.objects] == [phase]
        latency_ms[phase] = float(np.min(client.latencies_ms(stamps)))
        peak[phase] = _peak_rss_bytes(proc.proc.pid)
        assert client.call(CancelTracking, CANCEL_TRACKING_SERVICE,
                           CancelTracking.Request(id=phase)).success
    latency_ratio = latency_ms["full"] / latency_ms["normal"]
    rss_ratio = peak["full"] / peak["normal"]
    print(f"\n{size}: fastest frame's latency, normal box {latency_ms['normal']:.0f} ms, "
          f"full-frame box {latency_ms['full']:.0f} ms "
          f"({latency_ratio:.2f}x); node peak RSS {peak['normal'] / KB / KB:.0f} -> {peak['full'] / KB / KB:.0f} MB "
          f"({rss_ratio:.2f}x)")
    assert latency_ratio <= MAX_LATENCY_RATIO
    assert rss_ratio <= MAX_PEAK_RSS_RATIO
