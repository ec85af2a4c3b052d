"""The node's worker without ROS or DDS: a real StarkRuntime on the default model (and the policy on
a scripted engine where the engine must fail), fed frames and requests the way the node feeds them,
and what each step returns (tracks, events, answers) checked."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from stark_ros.core.stamps import NS_PER_S
from stark_ros.datasets import load_simple_sequence
from stark_ros.node.frame_buffer import Frame
from stark_ros.node.parameters import PARAMETERS, check_changes, defaults
from stark_ros.node.requests import MatchSettings, Reason, Request
from stark_ros.node.telemetry import LOST_IN_TRANSPORT, Telemetry
from stark_ros.node.transport import FASTDDS_DEFAULT_SEGMENT_BYTES, PROFILE_ENV, TransportWatch
from stark_ros.node.worker import DEACTIVATED_MESSAGE, Limits, StepOutput, TrackerWorker
from stark_ros.tracking.lost import TargetState, TrackEventType
from stark_ros.tracking.policy import TrackingPolicy
from stark_ros.tracking.settings import TrackerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = 1_000 * NS_PER_S
PERIOD = NS_PER_S // 10
LIMITS = Limits(queue_size=2, frame_buffer_size=30, frame_buffer_max_bytes=None, max_pending_requests=6)
MATCH = MatchSettings(tolerance_s=0.001, request_timeout_s=1.0, max_targets=4)
NO_WAIT = 0.0


def stamp(i: int) -> int:
    return T0 + i * PERIOD


@pytest.fixture(scope="module")
def runtime():
    from stark_ros.runtime import RuntimeOptions, StarkRuntime, default_model_dir

    return StarkRuntime(default_model_dir(), RuntimeOptions(providers=("CPUExecutionProvider",), intra_op_threads=1))


@pytest.fixture(scope="module")
def car(shared):
    return load_simple_sequence(shared / "data" / "sot" / "vot2014_car")


@pytest.fixture()
def worker(runtime):
    runtime.clear()
    w = TrackerWorker(runtime, LIMITS, lambda: MATCH)
    w.start()
    return w


class Replies:
    """Service replies as the node's deferred futures receive them: every call recorded."""

    def __init__(self):
        self.calls = []

    def __call__(self, *answer):
        self.calls.append(answer)


def frame(rgb, i: int) -> Frame:
    # The header is echoed as it came: here the frame's index, so events say which frame they are on.
    return Frame(stamp(i), "camera", rgb, received_ns=0, header=i)


def request(box, i: int | None, target_id: str, reply=None, deadline: float = 1e18) -> Request:
    return Request(stamp_ns=0 if i is None else stamp(i), frame_id="camera", box=np.asarray(box, np.float64),
                   target_id=target_id, label="car", deadline=deadline, header=f"request {target_id}", reply=reply)


def deliver(out: StepOutput) -> StepOutput:
    for answer in out.answers:
        answer.deliver()
    return out


def run_step(worker: TrackerWorker) -> StepOutput:
    return deliver(worker.step(worker.take(NO_WAIT)))


def events_of(out: StepOutput, target_id: str) -> list:
    return [(e.type, e.header) for e in out.events if e.target_id == target_id]


def test_catch_up_emits_the_events_of_the_frames_it_goes_through(worker, car):
    """A request drawn on frame 0 arrives after 20 frames, the target gone from frame 3: it starts
    on frame 0, catches up with LOST on a blank frame, and the newest frame is tracked once."""
    blank_from, frames = 3, 20
    for i in range(frames):
        rgb = car.frame(i) if i < blank_from else np.zeros_like(car.frame(i))
        worker.offer_frame(frame(rgb, i))
    replies = Replies()
    assert deliver(worker.submit(request(car.boxes[0], 0, "car", replies))).answers == []   # queued
    out = run_step(worker)
    kinds = [t for t, _ in events_of(out, "car")]
    assert kinds[0] is TrackEventType.INITIALIZED and events_of(out, "car")[0][1] == 0
    lost = [h for t, h in events_of(out, "car") if t is TrackEventType.LOST]
    assert len(lost) == 1 and blank_from <= lost[0] < frames
    assert replies.calls == [(True, "car", "")]
    # The newest frame (the one taken) is tracked in the step's tracks, the others only by catch-up.
    assert out.frame.header == frames - 1 and [t.target_id for t in out.tracks] == ["car"]
    assert out.tracks[0].state is TargetState.LOST
    assert [t.target_id for t in worker.listing] == ["car"]


def test_cancel_drops_the_target_from_the_one_table(worker, car, runtime):
    worker.offer_frame(frame(car.frame(0), 0))
    worker.submit(request(car.boxes[0], 0, "a"))
    worker.submit(request(car.boxes[0], 0, "b"))
    run_step(worker)
    assert sorted(runtime.target_ids) == ["a", "b"]
    cancelled, unknown = Replies(), Replies()
    worker.cancel("a", cancelled)
    worker.cancel("nobody", unknown)
    worker.offer_frame(frame(car.frame(1), 1))
    out = run_step(worker)
    assert cancelled.calls == [(True, ["a"], "")]
    assert unknown.calls == [(False, [], "no active target with id 'nobody'")]
    assert events_of(out, "a") == [(TrackEventType.CANCELLED, None)]   # stamped by the node when published
    # Gone from the worker's table and from the policy's alike; the other target tracks on.
    assert runtime.target_ids == ["b"] and [t.target_id for t in out.tracks] == ["b"]
    every = Replies()
    worker.cancel("", every)
    run_step(worker)
    assert every.calls == [(True, ["b"], "")] and runtime.target_ids == [] and worker.listing == ()


class FailingEngine:
    """An engine (the policy's protocol) whose tracking call fails ``failures`` times, then works."""

    def __init__(self, failures: int):
        self.failures = failures

    def encode_templates(self, images, masks):
        return [np.zeros(1, np.float32) for _ in images]

    def predict(self, templates_by_slot, images, masks):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("engine failure")
        n = len(images)
        return np.tile([[[0.5, 0.5, 0.2, 0.2]]], (n, 1, 1)), np.full((n, 1), 3.0)


def test_an_engine_error_answers_each_request_once_and_the_worker_goes_on():
    policy = TrackingPolicy(FailingEngine(failures=1), TrackerSettings(template_size=32, search_size=64))
    worker = TrackerWorker(policy, LIMITS, lambda: MATCH)
    worker.start()
    rgb = np.full((120, 160, 3), 100, np.uint8)
    for i in range(3):
        worker.offer_frame(frame(rgb, i))
    # "first" starts on frame 0 and is answered, then its catch-up fails: it must not be answered
    # again; "second", not reached, is answered FAILED.
    first, second = Replies(), Replies()
    worker.submit(request((40, 30, 40, 30), 0, "first", first))
    worker.submit(request((40, 30, 40, 30), 0, "second", second))
    out = run_step(worker)
    assert first.calls == [(True, "first", "")]
    assert len(second.calls) == 1 and not second.calls[0][0] and "failed" in second.calls[0][2]
    assert [e.type for e in out.events if e.target_id == "second"] == [TrackEventType.REJECTED]
    assert worker.telemetry.errors.counts == {"RuntimeError": 1}
    assert worker.telemetry.rejections.counts == {Reason.FAILED.value: 1}
    # The next frame is tracked as usual.
    worker.offer_frame(frame(rgb, 3))
    assert [t.target_id for t in run_step(worker).tracks] == ["first"]
    assert len(first.calls) == 1 and len(second.calls) == 1


def test_what_waits_at_stop_is_answered_and_nothing_after(worker, car):
    worker.offer_frame(frame(car.frame(0), 0))
    waiting, cancel = Replies(), Replies()
    worker.submit(request(car.boxes[0], 5, "future", waiting))        # waits for a frame still to come
    run_step(worker)
    assert waiting.calls == []
    worker.cancel("future", cancel)
    worker.stop()
    out = deliver(worker.drain())
    assert waiting.calls == [(False, "future", DEACTIVATED_MESSAGE)]
    assert cancel.calls == [(False, [], DEACTIVATED_MESSAGE)]
    assert [e.type for e in out.events] == [TrackEventType.REJECTED]
    late, late_cancel = Replies(), Replies()
    deliver(worker.submit(request(car.boxes[0], 0, "late", late)))
    deliver(worker.cancel("late", late_cancel))
    assert late.calls == [(False, "late", "the node is not active")]
    assert late_cancel.calls == [(False, [], "the node is not active")]
    assert deliver(worker.drain()).answers == []                       # each answered once


def test_beyond_the_pending_limit_requests_are_answered_busy_at_once(worker, car):
    worker.offer_frame(frame(car.frame(0), 0))
    replies = [Replies() for _ in range(LIMITS.max_pending_requests + 2)]
    outs = [deliver(worker.submit(request(car.boxes[0], 50, f"w{k}", r))) for k, r in enumerate(replies)]
    busy = [r.calls for r in replies if r.calls]
    assert len(busy) == 2 and all(not c[0][0] and c[0][2].startswith("busy") for c in busy)
    assert [e.type for out in outs for e in out.events] == [TrackEventType.REJECTED] * 2
    assert worker.state().pending_requests == LIMITS.max_pending_requests


def test_requests_for_one_id_apply_in_arrival_order(worker, car, runtime):
    """start, cancel, start, cancel for one id in one step: the cancels never overtake the starts
    (they were answered first, "no active target", and the target stayed tracked)."""
    worker.offer_frame(frame(car.frame(0), 0))
    replies = [Replies() for _ in range(5)]
    worker.submit(request(car.boxes[0], 0, "x", replies[0]))
    worker.cancel("x", replies[1])
    worker.submit(request(car.boxes[0], 0, "x", replies[2]))
    worker.cancel("x", replies[3])
    worker.submit(request(car.boxes[0], 0, "y", replies[4]))
    out = run_step(worker)
    assert [r.calls for r in replies] == [[(True, "x", "")], [(True, ["x"], "")], [(True, "x", "")],
                                          [(True, ["x"], "")], [(True, "y", "")]]
    assert [t for t, _ in events_of(out, "x")] == [TrackEventType.INITIALIZED, TrackEventType.CANCELLED] * 2
    assert runtime.target_ids == ["y"]


def test_a_waiting_start_holds_back_the_later_requests_for_its_id(worker, car, runtime):
    worker.offer_frame(frame(car.frame(0), 0))
    start, cancel, other = Replies(), Replies(), Replies()
    worker.submit(request(car.boxes[0], 1, "x", start))        # for frame 1, still to come
    worker.cancel("x", cancel)
    worker.submit(request(car.boxes[0], 0, "y", other))        # another id is not held back
    run_step(worker)
    assert start.calls == [] and cancel.calls == [] and other.calls == [(True, "y", "")]
    worker.offer_frame(frame(car.frame(1), 1))
    run_step(worker)
    assert start.calls == [(True, "x", "")] and cancel.calls == [(True, ["x"], "")]
    assert runtime.target_ids == ["y"]


def test_a_stop_ends_a_long_catch_up_between_frames(worker, car, runtime):
    """The stop comes while the step catches up (here: from the engine's own thread, after a few
    frames): the step returns at the next frame, its answer and events still go out."""
    for i in range(LIMITS.frame_buffer_size):
        worker.offer_frame(frame(car.frame(i), i))
    calls = []
    real_update = runtime.update

    def update(rgb, ids=None):
        calls.append(1)
        if len(calls) == 3:
            worker.stop()
        return real_update(rgb, ids)
    runtime.update = update
    try:
        replies = Replies()
        worker.submit(request(car.boxes[0], 0, "car", replies))
        out = run_step(worker)
    finally:
        del runtime.update
    assert len(calls) == 3 and out.tracks is None            # not the 28 frames, nor the newest
    assert replies.calls == [(True, "car", "")] and events_of(out, "car")[0][0] is TrackEventType.INITIALIZED
    assert not worker.accepting and worker.take(NO_WAIT) is None


def test_a_new_image_size_restarts_a_target_on_its_scaled_box(worker, car):
    worker.offer_frame(frame(car.frame(0), 0))
    worker.submit(request(car.boxes[0], 0, "car"))
    run_step(worker)
    small = car.frame(1)[::2, ::2].copy()                        # the camera halves its resolution
    worker.offer_frame(frame(small, 1))
    out = run_step(worker)
    (event,) = out.events
    assert event.type is TrackEventType.INITIALIZED and "size changed" in event.reason and event.header == 1
    np.testing.assert_allclose(event.box, np.asarray(car.boxes[0]) * 0.5, atol=1.0)
    assert [t.target_id for t in out.tracks] == ["car"]
    assert worker.telemetry.skips.counts["image_size_changed"] == 1
    worker.offer_frame(frame(small, 2))
    assert [t.target_id for t in run_step(worker).tracks] == ["car"]    # tracked on the new size


def test_a_new_frame_id_cancels_the_targets_with_the_reason(worker, car, runtime):
    worker.offer_frame(frame(car.frame(0), 0))
    worker.submit(request(car.boxes[0], 0, "car"))
    run_step(worker)
    worker.offer_frame(Frame(stamp(1), "other_camera", car.frame(1), received_ns=0, header=1))
    out = run_step(worker)
    (event,) = out.events
    assert event.type is TrackEventType.CANCELLED and "frame_id changed" in event.reason
    assert out.tracks == [] and runtime.target_ids == []


def test_cleanup_cancels_every_target(worker, car, runtime):
    worker.offer_frame(frame(car.frame(0), 0))
    worker.submit(request(car.boxes[0], 0, "a"))
    worker.submit(request(car.boxes[0], 0, "b"))
    run_step(worker)
    worker.stop()
    out = worker.clear()
    assert sorted((e.target_id, e.type) for e in out.events) == [("a", TrackEventType.CANCELLED),
                                                                 ("b", TrackEventType.CANCELLED)]
    assert all("cleaned up" in e.reason for e in out.events)
    assert runtime.target_ids == [] and worker.listing == ()


# ---------------------------------------------------------------------------------- parameters
def test_config_yaml_gives_every_parameter_its_declared_default():
    doc = yaml.safe_load((REPO_ROOT / "config" / "tracker.yaml").read_text())
    assert doc["/**"]["ros__parameters"] == defaults()


def test_parameter_changes_are_checked_without_a_model():
    values = {"lost_threshold": 0.6, "lost_frames": 0, "reacquire_threshold": 0.7, "reacquire_frames": 0}
    assert check_changes({"lost_threshold": 0.6}, values, None) is None
    assert check_changes({"lost_threshold": 2.0}, values, None) == PARAMETERS["lost_threshold"].check(2.0)
    # Against the generic settings when no model is loaded: reacquiring below losing is refused.
    refused = check_changes({"reacquire_threshold": 0.5}, {**values, "reacquire_threshold": 0.5}, None)
    assert "must not be below" in refused
    assert check_changes({"max_targets": 0}, values, None) is not None


# ---------------------------------------------------------------------------------- transport
def test_frames_lost_in_transport_are_counted_and_large_frames_warned_once():
    telemetry = Telemetry()
    watch = TransportWatch(telemetry, environ={})
    assert watch.frame_arrived(FASTDDS_DEFAULT_SEGMENT_BYTES) is None          # fits the default segment
    warning = watch.frame_arrived(FASTDDS_DEFAULT_SEGMENT_BYTES + 1)
    assert PROFILE_ENV in warning and "fastdds_large_images.xml" in warning
    assert watch.frame_arrived(FASTDDS_DEFAULT_SEGMENT_BYTES + 1) is None      # once
    assert TransportWatch(telemetry, {PROFILE_ENV: "/p.xml"}).frame_arrived(10 * FASTDDS_DEFAULT_SEGMENT_BYTES) is None
    assert "3 frame(s) lost" in watch.frames_lost(3, 3)
    assert watch.frames_lost(2, 5) is None                                     # throttled, still counted
    assert telemetry.skips.counts[LOST_IN_TRANSPORT] == 5
