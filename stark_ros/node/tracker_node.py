"""The STARK tracker node: camera images + target requests in, tracked boxes + events out.

ROS glue only: conversion, queues, parameters, lifecycle, publishing. Tracking is
:class:`stark_ros.runtime.StarkRuntime` (no torch).

Threading: callbacks only convert and enqueue. Image frames go into a ring buffer (for requests
drawn on an older frame) and a bounded drop-oldest queue; one worker thread takes the newest
queued frame, starts pending targets, and runs the runtime for all targets in one batched call.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from stark_ros.core.geometry import InvalidBoxError
from stark_ros.core.lost import LostSettings, TargetState, TrackEventType
from stark_ros.msg import TargetRequest, TrackedObjectArray, TrackEvent
from stark_ros.node.frame_buffer import Frame, FrameBuffer, Lookup
from stark_ros.node.image_conversion import ImageConversionError, make_converter
from stark_ros.node.messages import msg_to_box, track_event, tracked_object
from stark_ros.runtime import ModelLoadError, RuntimeOptions, StarkRuntime, resolve_model
from stark_ros.srv import CancelTracking, ListTargets, StartTracking

NODE_NAME = "stark_tracker"
EVENTS_QUEUE_DEPTH = 100
TRACKS_QUEUE_DEPTH = 10
REQUEST_QUEUE_DEPTH = 20
WARN_THROTTLE_S = 5.0
WORKER_POLL_S = 0.05
LATENCY_WINDOW = 300
NS_PER_S = 1_000_000_000
DEBUG_COLOURS = {TargetState.TRACKING: (0, 255, 0), TargetState.LOST: (255, 0, 0)}


def _descriptor(description: str, read_only: bool = False, floating=None, integer=None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=read_only)
    if floating is not None:
        d.floating_point_range = [FloatingPointRange(from_value=floating[0], to_value=floating[1], step=0.0)]
    if integer is not None:
        d.integer_range = [IntegerRange(from_value=integer[0], to_value=integer[1], step=1)]
    return d


_LOST_DEFAULTS = LostSettings()
# name -> (default, descriptor). config/tracker.yaml documents the same values.
PARAMETERS = {
    "model": ("", _descriptor("Folder with template.onnx + track.onnx; empty = the default model installed "
                              "with the package.", read_only=True)),
    "providers": (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                  _descriptor("ONNX Runtime execution providers in order of preference; the node reports "
                              "the ones really in use.", read_only=True)),
    "trt_fp16": (True, _descriptor("TensorRT: build FP16 engines.", read_only=True)),
    "trt_engine_cache_dir": ("", _descriptor("TensorRT engine cache folder (empty = ~/.cache/stark_ros).",
                                             read_only=True)),
    "intra_op_threads": (0, _descriptor("ONNX Runtime CPU threads (0 = one per core).", read_only=True,
                                        integer=(0, 256))),
    "compressed": (False, _descriptor("Subscribe to image/compressed (sensor_msgs/CompressedImage) instead of "
                                      "image (sensor_msgs/Image).", read_only=True)),
    "auto_activate": (True, _descriptor("Configure and activate on start (plain-node mode); false waits for a "
                                        "lifecycle manager.", read_only=True)),
    "queue_size": (2, _descriptor("Frames waiting for the worker; older ones are dropped (and counted).",
                                  read_only=True, integer=(1, 100))),
    "frame_buffer_size": (30, _descriptor("Recent frames kept for target requests stamped on an older frame.",
                                          read_only=True, integer=(1, 1000))),
    "stamp_tolerance": (0.001, _descriptor("Seconds between a request's stamp and a frame's stamp that still "
                                           "match.", floating=(0.0, 1.0))),
    "request_timeout": (1.0, _descriptor("Seconds a request stamped after the newest frame waits for that frame.",
                                         floating=(0.0, 60.0))),
    "max_targets": (16, _descriptor("Targets tracked at once; more are rejected.", integer=(1, 256))),
    "lost_threshold": (_LOST_DEFAULTS.lost_threshold,
                       _descriptor("Score below which a frame counts as not confident.", floating=(0.0, 1.0))),
    "lost_frames": (_LOST_DEFAULTS.lost_frames,
                    _descriptor("Consecutive unconfident frames before a target is LOST.", integer=(1, 1000))),
    "reacquire_threshold": (_LOST_DEFAULTS.reacquire_threshold,
                            _descriptor("Score above which a LOST target is REACQUIRED.", floating=(0.0, 1.0))),
    "update_interval": (0, _descriptor("Frames between dynamic-template updates (0 = the model's default).",
                                       read_only=True, integer=(0, 100000))),
    "diagnostics_period": (1.0, _descriptor("Seconds between /diagnostics messages.", read_only=True,
                                            floating=(0.1, 60.0))),
}
LOST_PARAMETERS = ("lost_threshold", "lost_frames", "reacquire_threshold")


@dataclass
class _Request:
    stamp_ns: int
    frame_id: str
    box: np.ndarray
    target_id: str
    label: str
    header: Header
    deadline: float
    done: threading.Event | None = None
    result: tuple[bool, str, str] = ("", "", "")


@dataclass
class _Stats:
    processed: int = 0
    dropped: int = 0
    bad_frames: int = 0
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    infer_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    decode_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    window_start: float = field(default_factory=time.monotonic)
    window_frames: int = 0
    fps: float = 0.0


def _percentile(sorted_values, q: float) -> float:
    """Nearest-rank percentile of an already sorted window (NaN when empty)."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q / 100))]


class _RosLogHandler(logging.Handler):
    """Routes the runtime's Python logging (provider fallbacks, model notes) to the node's logger."""

    def __init__(self, ros_logger):
        super().__init__(logging.INFO)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        # One call line per severity: rclpy remembers the severity of each calling line and raises
        # ("Logger severity cannot be changed between calls") when one line logs at two.
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self._ros_logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._ros_logger.warning(message)
        else:
            self._ros_logger.info(message)


class TrackerNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        runtime_log = logging.getLogger("stark_ros")
        runtime_log.addHandler(_RosLogHandler(self.get_logger()))
        runtime_log.setLevel(logging.INFO)
        runtime_log.propagate = False
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._converter = make_converter()
        self._runtime: StarkRuntime | None = None
        self._lock = threading.RLock()           # guards the runtime and the target tables
        self._wake = threading.Condition()       # worker wake-up
        self._queue: collections.deque[Frame] = collections.deque()
        self._pending: list[_Request] = []
        self._labels: dict[str, str] = {}
        self._last_stamp: dict[str, int] = {}
        self._last_result: dict[str, object] = {}
        self._stats = _Stats()
        self._buffer: FrameBuffer | None = None
        self._worker: threading.Thread | None = None
        self._running = False
        self._subs = []
        self._group = ReentrantCallbackGroup()
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._tracks_pub = self.create_publisher(TrackedObjectArray, "tracks", TRACKS_QUEUE_DEPTH)
        events_qos = QoSProfile(depth=EVENTS_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                                history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
        self._events_pub = self.create_publisher(TrackEvent, "events", events_qos)
        self._debug_pub = self.create_publisher(Image, "debug_image", qos_profile_sensor_data)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", TRACKS_QUEUE_DEPTH)
        self.create_service(StartTracking, "start_tracking", self._srv_start, callback_group=self._group)
        self.create_service(CancelTracking, "cancel_tracking", self._srv_cancel, callback_group=self._group)
        self.create_service(ListTargets, "list_targets", self._srv_list, callback_group=self._group)
        self._diag_timer = None

    def p(self, name):
        return self.get_parameter(name).value

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            model_dir = resolve_model(self.p("model"))
            options = RuntimeOptions(providers=tuple(self.p("providers")), trt_fp16=self.p("trt_fp16"),
                                     intra_op_threads=self.p("intra_op_threads"),
                                     **({"trt_engine_cache_dir": self.p("trt_engine_cache_dir")}
                                        if self.p("trt_engine_cache_dir") else {}))
            lost = LostSettings(**{k: self.p(k) for k in LOST_PARAMETERS})
            interval = self.p("update_interval") or None
            self._runtime = StarkRuntime(model_dir, options, lost, update_interval=interval)
        except (ModelLoadError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        info = self._runtime.info
        self.get_logger().info(
            f"model STARK-{info.variant} from {model_dir} (source sha256 {info.source_sha256[:12]}), "
            f"providers in use: {', '.join(self._runtime.active_providers)}, image converter: {self._converter.name}")
        if not self._runtime.has_score_head:
            self.get_logger().warning(f"STARK-{info.variant} has no score head: no LOST/REACQUIRED events")
        self._buffer = FrameBuffer(self.p("frame_buffer_size"))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        qos_options = QoSOverridingOptions.with_default_policies()
        if self.p("compressed"):
            sub = self.create_subscription(CompressedImage, "image/compressed", self._on_compressed,
                                           qos_profile_sensor_data, callback_group=self._image_group,
                                           qos_overriding_options=qos_options)
        else:
            sub = self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data,
                                           callback_group=self._image_group, qos_overriding_options=qos_options)
        target_qos = QoSProfile(depth=REQUEST_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self._subs = [sub, self.create_subscription(TargetRequest, "target", self._on_target, target_qos,
                                                    callback_group=self._group)]
        self._running = True
        self._worker = threading.Thread(target=self._work, name="stark_worker", daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(self.p("diagnostics_period"), self._publish_diagnostics)
        self.get_logger().info(f"active: tracking on '{sub.topic_name}'")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            self._runtime = None
            self._buffer = None
            self._labels.clear()
            self._last_stamp.clear()
            self._last_result.clear()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        self._running = False
        with self._wake:
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in LOST_PARAMETERS}
        if not changes or self._runtime is None:
            return SetParametersResult(successful=True)
        current = {k: self.p(k) for k in LOST_PARAMETERS}
        try:
            settings = LostSettings(**{**current, **changes})
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            self._runtime.set_lost_settings(settings)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ callbacks (convert + enqueue)
    def _on_image(self, msg: Image) -> None:
        self._enqueue(msg.header, lambda: self._converter.image_to_rgb(msg))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._enqueue(msg.header, lambda: self._converter.compressed_to_rgb(msg))

    def _enqueue(self, header: Header, convert) -> None:
        start_ns = time.monotonic_ns()
        try:
            rgb = convert()
        except ImageConversionError as exc:
            self._stats.bad_frames += 1
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=WARN_THROTTLE_S)
            return
        frame = Frame(Time.from_msg(header.stamp).nanoseconds, header.frame_id, rgb, time.monotonic_ns())
        self._stats.decode_ms.append((frame.received_ns - start_ns) / 1e6)
        with self._wake:
            if self._buffer is not None:
                self._buffer.append(frame)
            if len(self._queue) >= self.p("queue_size"):
                self._queue.popleft()
                self._stats.dropped += 1
            self._queue.append(frame)
            self._wake.notify()

    def _on_target(self, msg: TargetRequest) -> None:
        self._submit(self._request_from(msg.header, msg.bbox, msg.id, msg.label))

    def _request_from(self, header, bbox, target_id: str, label: str, done=None) -> _Request:
        return _Request(stamp_ns=Time.from_msg(header.stamp).nanoseconds, frame_id=header.frame_id,
                        box=msg_to_box(bbox), target_id=target_id, label=label, header=header,
                        deadline=time.monotonic() + self.p("request_timeout"), done=done)

    def _submit(self, request: _Request) -> None:
        with self._wake:
            self._pending.append(request)
            self._wake.notify()

    # ------------------------------------------------------------------ services
    def _srv_start(self, req: StartTracking.Request, resp: StartTracking.Response):
        if not self._running:
            resp.success, resp.reason = False, "the node is not active"
            return resp
        request = self._request_from(req.target.header, req.target.bbox, req.target.id, req.target.label,
                                     done=threading.Event())
        self._submit(request)
        if not request.done.wait(self.p("request_timeout") + 5.0):
            resp.success, resp.reason = False, "timed out waiting for the tracker"
            return resp
        resp.success, resp.id, resp.reason = request.result
        return resp

    def _srv_cancel(self, req: CancelTracking.Request, resp: CancelTracking.Response):
        with self._lock:
            if self._runtime is None:
                resp.success, resp.reason = False, "the node is not configured"
                return resp
            ids = [req.id] if req.id else self._runtime.target_ids
            unknown = [i for i in ids if i not in self._runtime.target_ids]
            if unknown:
                resp.success, resp.reason = False, f"no active target with id {unknown[0]!r}"
                return resp
            for tid in ids:
                self._drop_target(tid, "cancelled by request")
        resp.success, resp.cancelled_ids = True, ids
        return resp

    def _srv_list(self, req: ListTargets.Request, resp: ListTargets.Response):
        with self._lock:
            for result in self._last_result.values():
                resp.targets.append(result)
        return resp

    def _drop_target(self, tid: str, reason: str) -> None:
        last = self._last_result.get(tid)
        self._runtime.remove_target(tid)
        self._labels.pop(tid, None)
        self._last_stamp.pop(tid, None)
        self._last_result.pop(tid, None)
        header = Header(frame_id="")
        header.stamp = self.get_clock().now().to_msg()
        box = msg_to_box(last.bbox) if last is not None else None
        self._events_pub.publish(track_event(header, tid, TrackEventType.CANCELLED, box, reason=reason))

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while self._running:
            with self._wake:
                if not self._queue and not self._pending:
                    self._wake.wait(WORKER_POLL_S)
                frame = self._queue.pop() if self._queue else None
                if frame is not None and self._queue:
                    self._stats.dropped += len(self._queue)
                    self._queue.clear()
                pending, self._pending = self._pending, []
            try:
                with self._lock:
                    if self._runtime is None:
                        continue
                    still_waiting = [r for r in pending if not self._handle_request(r, frame)]
                    if frame is not None:
                        self._process(frame)
            except Exception as exc:  # never let the worker die: log and keep serving
                self.get_logger().error(f"tracking step failed: {exc!r}", throttle_duration_sec=WARN_THROTTLE_S)
                still_waiting = []
            if still_waiting:
                with self._wake:
                    self._pending[:0] = still_waiting

    def _handle_request(self, r: _Request, next_frame: Frame | None) -> bool:
        """Start one target, or reject it. False while it waits for a newer frame."""
        lookup, frame = self._buffer.find(r.stamp_ns, int(self.p("stamp_tolerance") * NS_PER_S))
        if lookup in (Lookup.NEWER_THAN_BUFFER, Lookup.EMPTY):
            if time.monotonic() < r.deadline:
                return False
            return self._reject(r, f"no frame with the request's stamp arrived within {self.p('request_timeout')} s "
                                   f"({lookup.value})")
        if lookup is not Lookup.FOUND:
            return self._reject(r, lookup.value)
        if r.frame_id and frame.frame_id and r.frame_id != frame.frame_id:
            return self._reject(r, f"frame_id {r.frame_id!r} does not match the image's frame_id {frame.frame_id!r}")
        if r.target_id not in self._runtime.target_ids and len(self._runtime.target_ids) >= self.p("max_targets"):
            return self._reject(r, f"already tracking the maximum of {self.p('max_targets')} targets")
        try:
            tid = self._runtime.add_target(frame.rgb, r.box, r.target_id or None)
        except InvalidBoxError as exc:
            return self._reject(r, exc.problem.value)
        self._labels[tid] = r.label
        self._last_stamp[tid] = frame.stamp_ns
        # Catch up through the frames received since the one the box was drawn on.
        before = next_frame.stamp_ns if next_frame is not None else None
        for later in self._buffer.frames_between(frame.stamp_ns, before):
            self._runtime.update(later.rgb, [tid])
            self._last_stamp[tid] = later.stamp_ns
        box = self._runtime.box_of(tid)
        self._last_result[tid] = tracked_object(tid, r.label, box, math.nan, TargetState.TRACKING, 0)
        header = Header(stamp=Time(nanoseconds=frame.stamp_ns).to_msg(), frame_id=frame.frame_id)
        self._events_pub.publish(track_event(header, tid, TrackEventType.INITIALIZED, r.box,
                                             reason=f"started on the frame stamped {frame.stamp_ns / NS_PER_S:.6f}"))
        self._finish(r, True, tid, "")
        return True

    def _reject(self, r: _Request, reason: str) -> bool:
        self.get_logger().warning(f"target request rejected: {reason}")
        self._events_pub.publish(track_event(r.header, r.target_id, TrackEventType.REJECTED, r.box, reason=reason))
        self._finish(r, False, r.target_id, reason)
        return True

    @staticmethod
    def _finish(r: _Request, success: bool, tid: str, reason: str) -> None:
        r.result = (success, tid, reason)
        if r.done is not None:
            r.done.set()

    def _process(self, frame: Frame) -> None:
        ids = [t for t in self._runtime.target_ids if self._last_stamp.get(t, -1) < frame.stamp_ns]
        header = Header(stamp=Time(nanoseconds=frame.stamp_ns).to_msg(), frame_id=frame.frame_id)
        out = TrackedObjectArray(header=header)
        t0 = time.perf_counter()
        results = self._runtime.update(frame.rgb, ids) if ids else []
        infer_s = time.perf_counter() - t0
        for r in results:
            self._last_stamp[r.target_id] = frame.stamp_ns
            obj = tracked_object(r.target_id, self._labels.get(r.target_id, ""), r.box, r.score, r.state,
                                 r.frames_since_confident)
            self._last_result[r.target_id] = obj
            out.objects.append(obj)
            if r.event is not None:
                self._events_pub.publish(track_event(header, r.target_id, r.event, r.box, r.score))
                self.get_logger().warning(f"target {r.target_id}: {r.event.value} (score {r.score:.2f})")
        self._tracks_pub.publish(out)
        self._account(frame, infer_s, bool(results))
        if self._debug_pub.get_subscription_count() > 0:
            self._publish_debug(frame, header, results)

    def _account(self, frame: Frame, infer_s: float, tracked: bool) -> None:
        s = self._stats
        s.processed += 1
        s.window_frames += 1
        s.latency_ms.append((time.monotonic_ns() - frame.received_ns) / 1e6)
        if tracked:
            s.infer_ms.append(infer_s * 1e3)
        elapsed = time.monotonic() - s.window_start
        if elapsed >= 1.0:
            s.fps, s.window_frames, s.window_start = s.window_frames / elapsed, 0, time.monotonic()

    def _publish_debug(self, frame: Frame, header: Header, results) -> None:
        img = frame.rgb.copy()
        for r in results:
            x, y, w, h = (round(v) for v in r.box)
            colour = DEBUG_COLOURS[r.state]
            cv2.rectangle(img, (x, y), (x + w, y + h), colour, 2)
            text = f"{r.target_id} {r.score:.2f}" + (" LOST" if r.state is TargetState.LOST else "")
            cv2.putText(img, text, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        msg = Image(header=header, **self._converter.rgb_to_fields(img, "rgb8"))
        self._debug_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        s = self._stats
        runtime = self._runtime
        status = DiagnosticStatus(name=f"{self.get_name()}: STARK tracker", hardware_id="onnxruntime")
        latency, infer, decode = sorted(s.latency_ms), sorted(s.infer_ms), sorted(s.decode_ms)
        status.level = DiagnosticStatus.OK if runtime is not None else DiagnosticStatus.WARN
        status.message = "tracking" if runtime is not None and runtime.target_ids else "idle"
        values = {
            "fps": f"{s.fps:.1f}", "latency_p50_ms": f"{_percentile(latency, 50):.1f}",
            "latency_p99_ms": f"{_percentile(latency, 99):.1f}", "inference_p50_ms": f"{_percentile(infer, 50):.1f}",
            "decode_p50_ms": f"{_percentile(decode, 50):.2f}",
            "frames_processed": str(s.processed),
            "frames_dropped": str(s.dropped), "bad_frames": str(s.bad_frames),
            "providers": ",".join(runtime.active_providers) if runtime else "",
            "active_targets": str(len(runtime.target_ids)) if runtime else "0",
            "model": f"STARK-{runtime.info.variant}" if runtime else "",
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = TrackerNode()
        if node.p("auto_activate"):
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("could not configure the tracker; see the error above")
                return 1
            node.trigger_activate()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node._stop_worker()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
