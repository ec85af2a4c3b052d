"""The STARK tracker node: camera images + target requests in, tracked boxes + events out.

ROS glue only: it wires the node's ROS-free parts to topics, services and parameters:
:mod:`stark_ros.node.frame_buffer` (the rule for time, recent frames, the latest-frame queue),
:mod:`stark_ros.node.requests` (request matching, the bounded pending queue),
:mod:`stark_ros.node.targets` (one record per target) and :mod:`stark_ros.node.log_throttle`.
Tracking is :class:`stark_ros.runtime.StarkRuntime` (no torch).

Threading: callbacks only convert and enqueue, and never wait: a frame goes into the ring buffer
and the bounded drop-oldest queue; a request into the bounded pending queue (full: REJECTED busy);
a service call awaits a future the worker completes, so no executor thread blocks. One worker
thread takes the newest queued frame, answers pending requests (starting targets on the frame they
name and catching up through the newer ones, with their events), and runs the runtime for all
targets in one batched call.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.logging import LoggingSeverity
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from stark_ros.core.images import DEFAULT_MAX_IMAGE_PIXELS, ImageConversionError, make_converter
from stark_ros.core.stamps import NS_PER_S, stamp_ns
from stark_ros.interface import (
    CANCEL_TRACKING_SERVICE,
    COMPRESSED_IMAGE_TOPIC,
    DEBUG_IMAGE_TOPIC,
    DEFAULT_NODE_NAME,
    DIAGNOSTICS_QOS,
    DIAGNOSTICS_STATUS,
    DIAGNOSTICS_TOPIC,
    EVENTS_QOS,
    EVENTS_TOPIC,
    IMAGE_QOS,
    IMAGE_TOPIC,
    LIST_TARGETS_SERVICE,
    REQUEST_QOS,
    START_TRACKING_SERVICE,
    TARGET_TOPIC,
    TRACKS_QOS,
    TRACKS_TOPIC,
    msg_to_box,
)
from stark_ros.msg import TargetRequest, TrackedObjectArray, TrackEvent
from stark_ros.node.detections import DetectionsOutput
from stark_ros.node.frame_buffer import Frame, FrameBuffer, LatestFrameQueue
from stark_ros.node.log_throttle import ReasonLog, suffix
from stark_ros.node.messages import track_event, tracked_object
from stark_ros.node.requests import MatchSettings, PendingRequests, Reason, Request, Verdict, busy_message, match
from stark_ros.node.targets import TargetTable
from stark_ros.runtime import ModelLoadError, RuntimeOptions, StarkRuntime, resolve_model
from stark_ros.srv import CancelTracking, ListTargets, StartTracking
from stark_ros.tracking.lost import LostSettings, TargetState, TrackEventType

LOG_THROTTLE_S = 5.0
BYTES_PER_MB = 1 << 20
WORKER_POLL_S = 0.05
WORKER_STOP_TIMEOUT_S = 5.0
LATENCY_WINDOW = 300
FPS_WINDOW_S = 1.0
# Frames with a side below this are skipped: the tracker clips boxes with a margin of 10 px and
# crops a search region several times the target; a 1x1 image turned a box into (-9, -9, 10, 10).
MIN_FRAME_SIDE_PX = 32
DEBUG_COLOURS = {TargetState.TRACKING: (0, 255, 0), TargetState.LOST: (255, 0, 0)}
DEBUG_FONT_SCALE = 0.45
DEBUG_TEXT_MIN_Y = 12

# Skip reasons counted on /diagnostics (frames) beside the request Reason values.
SKIP_UNREADABLE = "unreadable"
SKIP_DEGENERATE = "degenerate"
STAMPS_BACKWARDS = "stamps_backwards"


def _descriptor(description: str, read_only: bool = False, floating=None, integer=None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=read_only)
    if floating is not None:
        d.floating_point_range = [FloatingPointRange(from_value=floating[0], to_value=floating[1], step=0.0)]
    if integer is not None:
        d.integer_range = [IntegerRange(from_value=integer[0], to_value=integer[1], step=1)]
    return d


# Lost-target parameters: a negative threshold or 0 frames means "the model's own" (the thresholds
# its score study wrote into its metadata; generic LostSettings() for a model without a study).
FROM_MODEL_THRESHOLD = -1.0
FROM_MODEL_FRAMES = 0
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
    "lost_threshold": (FROM_MODEL_THRESHOLD,
                       _descriptor("Score below which a frame counts as not confident; negative = the model's own "
                                   "(from its score study).", floating=(FROM_MODEL_THRESHOLD, 1.0))),
    "lost_frames": (FROM_MODEL_FRAMES,
                    _descriptor("Consecutive unconfident frames before a target is LOST; 0 = the model's own.",
                                integer=(FROM_MODEL_FRAMES, 1000))),
    "reacquire_threshold": (FROM_MODEL_THRESHOLD,
                            _descriptor("Score above which a LOST target counts towards REACQUIRED; negative = "
                                        "the model's own.", floating=(FROM_MODEL_THRESHOLD, 1.0))),
    "reacquire_frames": (FROM_MODEL_FRAMES,
                         _descriptor("Consecutive confident frames before a LOST target is REACQUIRED; 0 = the "
                                     "model's own.", integer=(FROM_MODEL_FRAMES, 1000))),
    "update_interval": (0, _descriptor("Frames between dynamic-template updates (0 = the model's default).",
                                       read_only=True, integer=(0, 100000))),
    "diagnostics_period": (1.0, _descriptor("Seconds between /diagnostics messages.", read_only=True,
                                            floating=(0.1, 60.0))),
    "max_pending_requests": (32, _descriptor("Target requests waiting for the worker at once; more are REJECTED "
                                             "'busy' at once.", read_only=True, integer=(1, 10000))),
    "frame_buffer_max_mb": (512, _descriptor("Megabytes of decoded frames the buffer keeps at most (older frames "
                                             "go first; the newest is always kept).", read_only=True,
                                             integer=(1, 1 << 20))),
    "max_image_pixels": (DEFAULT_MAX_IMAGE_PIXELS,
                         _descriptor("Images with more pixels are skipped before decoding (checked from the "
                                     "header).", read_only=True, integer=(1, 1 << 30))),
    "publish_detections": (True, _descriptor("Also publish vision_msgs/Detection2DArray on `detections` (where "
                                             "vision_msgs is installed).", read_only=True)),
}
LOST_PARAMETERS = ("lost_threshold", "lost_frames", "reacquire_threshold", "reacquire_frames")


def lost_overrides(values: dict) -> dict:
    """The lost-target parameters that override the model's own (those not left at 'the model's')."""
    return {k: v for k, v in values.items() if k in LOST_PARAMETERS
            and not (v < 0 if isinstance(v, float) else v == FROM_MODEL_FRAMES)}


def merged_lost_settings(model_settings: LostSettings, values: dict) -> LostSettings:
    return replace(model_settings, **lost_overrides(values))


@dataclass
class _Stats:
    processed: int = 0
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    # Frame received -> taken by the worker, and taken -> tracks published: the node's latency apart
    # into waiting for the worker and the worker's own time (inference + bookkeeping + publishing).
    wait_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    work_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
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
        super().__init__(logging.DEBUG)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        # One call line per severity: rclpy remembers the severity of each calling line and raises
        # ("Logger severity cannot be changed between calls") when one line logs at two.
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self._ros_logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._ros_logger.warning(message)
        elif record.levelno >= logging.INFO:
            self._ros_logger.info(message)
        else:
            self._ros_logger.debug(message)


def _header(frame: Frame) -> Header:
    return frame.header if frame.header is not None else Header(frame_id=frame.frame_id)


class TrackerNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(DEFAULT_NODE_NAME, **kwargs)
        self._log = self.get_logger()
        runtime_log = logging.getLogger("stark_ros")
        runtime_log.addHandler(_RosLogHandler(self._log))
        # The runtime's debug lines only when the node's logger asks for them (log_level:=debug).
        runtime_log.setLevel(logging.DEBUG if self._log.is_enabled_for(LoggingSeverity.DEBUG)
                             else logging.INFO)
        runtime_log.propagate = False
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._runtime: StarkRuntime | None = None
        self._lock = threading.RLock()           # guards the runtime and the target table (worker side)
        self._wake = threading.Condition()       # guards buffer, queue, pending, cancels; wakes the worker
        self._converter = None
        self._buffer: FrameBuffer | None = None
        self._queue: LatestFrameQueue | None = None
        self._pending: PendingRequests | None = None
        self._cancels: collections.deque = collections.deque()
        self._new_requests = False
        self._targets = TargetTable()
        self._listed: tuple = ()                 # snapshot of the targets for list_targets (no lock)
        self._stats = _Stats()
        self._skips = ReasonLog(LOG_THROTTLE_S)
        self._rejections = ReasonLog(LOG_THROTTLE_S)
        self._errors = ReasonLog(LOG_THROTTLE_S)
        self._debug_enabled = self._log.is_enabled_for(LoggingSeverity.DEBUG)
        self._worker: threading.Thread | None = None
        self._running = False
        self._subs = []
        self._pubs = []
        # Not `_services`: rclpy's Node keeps the services its executor waits on under that name.
        self._tracker_services = []
        self._group = ReentrantCallbackGroup()
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._diag_timer = None
        self._tracks_pub = self._events_pub = self._debug_pub = self._diag_pub = None

    def p(self, name):
        return self.get_parameter(name).value

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self._log.info("configuring: loading the model")
        self._log.debug("parameters: " + ", ".join(f"{name}={self.p(name)!r}" for name in PARAMETERS))
        try:
            model_dir = resolve_model(self.p("model"))
            options = RuntimeOptions(providers=tuple(self.p("providers")), trt_fp16=self.p("trt_fp16"),
                                     intra_op_threads=self.p("intra_op_threads"),
                                     **({"trt_engine_cache_dir": self.p("trt_engine_cache_dir")}
                                        if self.p("trt_engine_cache_dir") else {}))
            overrides = lost_overrides({k: self.p(k) for k in LOST_PARAMETERS})
            interval = self.p("update_interval") or None
            runtime = StarkRuntime(model_dir, options, update_interval=interval)
            # The model's own thresholds, with what the parameters override.
            runtime.set_lost_settings(merged_lost_settings(runtime.lost_settings, overrides))
        except (ModelLoadError, ValueError) as exc:
            self._log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        origin = (f"the model's ({runtime.info.lost_source})" if runtime.info.lost is not None
                  else "generic (the model has no score study)")
        self._log.info(f"lost-target settings: {runtime.lost_settings}; {origin}"
                       + (f", overridden by parameters {overrides}" if overrides else ""))
        self._converter = make_converter(max_pixels=self.p("max_image_pixels"))
        info = runtime.info
        self._log.info(
            f"model STARK-{info.variant} from {model_dir} (source sha256 {info.source_sha256[:12]}), "
            f"providers in use: {', '.join(runtime.active_providers)}, image converter: {self._converter.name}")
        if not runtime.has_score_head:
            self._log.warning(f"STARK-{info.variant} has no score head: no LOST/REACQUIRED events")
        with self._lock:
            self._runtime = runtime
            self._targets.clear()
        with self._wake:
            self._buffer = FrameBuffer(self.p("frame_buffer_size"), self.p("frame_buffer_max_mb") * BYTES_PER_MB)
            self._queue = LatestFrameQueue(self.p("queue_size"))
            self._pending = PendingRequests(self.p("max_pending_requests"))
        self._create_outputs()
        self._log.info("configured")
        return TransitionCallbackReturn.SUCCESS

    def _create_outputs(self) -> None:
        self._tracks_pub = self.create_publisher(TrackedObjectArray, TRACKS_TOPIC, TRACKS_QOS)
        self._events_pub = self.create_publisher(TrackEvent, EVENTS_TOPIC, EVENTS_QOS)
        self._debug_pub = self.create_publisher(Image, DEBUG_IMAGE_TOPIC, IMAGE_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._pubs = [self._tracks_pub, self._events_pub, self._debug_pub, self._diag_pub]
        self._detections = DetectionsOutput(self, self.p("publish_detections"), TRACKS_QOS)
        self._pubs += self._detections.publishers
        self._tracker_services = [
            self.create_service(StartTracking, START_TRACKING_SERVICE, self._srv_start, callback_group=self._group),
            self.create_service(CancelTracking, CANCEL_TRACKING_SERVICE, self._srv_cancel, callback_group=self._group),
            self.create_service(ListTargets, LIST_TARGETS_SERVICE, self._srv_list, callback_group=self._group),
        ]

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        qos_options = QoSOverridingOptions.with_default_policies()
        if self.p("compressed"):
            sub = self.create_subscription(CompressedImage, COMPRESSED_IMAGE_TOPIC, self._on_compressed,
                                           IMAGE_QOS, callback_group=self._image_group,
                                           qos_overriding_options=qos_options)
        else:
            sub = self.create_subscription(Image, IMAGE_TOPIC, self._on_image, IMAGE_QOS,
                                           callback_group=self._image_group, qos_overriding_options=qos_options)
        self._subs = [sub, self.create_subscription(TargetRequest, TARGET_TOPIC, self._on_target, REQUEST_QOS,
                                                    callback_group=self._group)]
        self._running = True
        self._worker = threading.Thread(target=self._work, name="stark_worker", daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(self.p("diagnostics_period"), self._publish_diagnostics)
        self._log.info(f"active: tracking on '{sub.topic_name}'")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self._log.info("deactivated: not tracking (targets are kept until cleanup)")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            self._runtime = None
            self._targets.clear()
            self._listed = ()
        with self._wake:
            self._buffer = self._queue = self._pending = None
        for pub in self._pubs:
            self.destroy_publisher(pub)
        for srv in self._tracker_services:
            self.destroy_service(srv)
        self._pubs, self._tracker_services = [], []
        self._tracks_pub = self._events_pub = self._debug_pub = self._diag_pub = None
        self._log.info("cleaned up: model unloaded")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        self._log.info("shut down")
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        self._running = False
        with self._wake:
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=WORKER_STOP_TIMEOUT_S)
            self._worker = None
        # Nobody will answer what is still waiting: answer it now, so no caller hangs.
        with self._wake:
            waiting = self._pending.drain() if self._pending is not None else []
            cancels, self._cancels = list(self._cancels), collections.deque()
        for r in waiting:
            self._reject(r, Reason.NOT_ACTIVE, "the node was deactivated before the request could be answered")
        for _, reply in cancels:
            reply(False, [], "the node was deactivated")

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in LOST_PARAMETERS}
        if not changes or self._runtime is None:
            return SetParametersResult(successful=True)
        current = {k: self.p(k) for k in LOST_PARAMETERS}
        try:
            settings = merged_lost_settings(self._runtime.info.lost or LostSettings(), {**current, **changes})
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            if self._runtime is not None:
                self._runtime.set_lost_settings(settings)
        self._log.info(f"lost-target settings changed: {changes}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ callbacks (convert + enqueue)
    def _on_image(self, msg: Image) -> None:
        self._enqueue(msg.header, lambda: self._converter.image_to_rgb(msg))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._enqueue(msg.header, lambda: self._converter.compressed_to_rgb(msg))

    def _skip(self, reason: str, message: str) -> None:
        unlogged = self._skips.record(reason)
        if unlogged is not None:
            self._log.warning(f"frame skipped ({reason}): {message}{suffix(unlogged)}")

    def _enqueue(self, header: Header, convert) -> None:
        start_ns = time.monotonic_ns()
        try:
            rgb = convert()
        except ImageConversionError as exc:
            self._skip(SKIP_UNREADABLE, str(exc))
            return
        if min(rgb.shape[:2]) < MIN_FRAME_SIDE_PX:
            self._skip(SKIP_DEGENERATE, f"{rgb.shape[1]}x{rgb.shape[0]} px is too small to track in (at least "
                                        f"{MIN_FRAME_SIDE_PX} px a side)")
            return
        received = time.monotonic_ns()
        frame = Frame(stamp_ns(header.stamp), header.frame_id, rgb, received,
                      header=header)
        self._stats.decode_ms.append((received - start_ns) / 1e6)
        with self._wake:
            if self._buffer is None:
                return
            frame, jump = self._buffer.append(frame)
            self._queue.push(frame)
            self._wake.notify()
        if jump is not None:
            unlogged = self._skips.record(STAMPS_BACKWARDS)
            if unlogged is not None:
                self._log.warning(jump.describe() + suffix(unlogged))

    def _on_target(self, msg: TargetRequest) -> None:
        self._submit(self._request_from(msg))

    def _request_from(self, target: TargetRequest, reply=None) -> Request:
        return Request(stamp_ns=stamp_ns(target.header.stamp),
                       frame_id=target.header.frame_id, box=msg_to_box(target.bbox), target_id=target.id,
                       label=target.label, deadline=time.monotonic() + self.p("request_timeout"),
                       header=target.header, reply=reply)

    def _submit(self, request: Request) -> None:
        if not self._running:
            self._reject(request, Reason.NOT_ACTIVE, "the node is not active")
            return
        with self._wake:
            accepted = self._pending is not None and self._pending.offer(request)
            if accepted:
                self._new_requests = True
                self._wake.notify()
        if not accepted:
            self._reject(request, Reason.BUSY, busy_message(self.p("max_pending_requests")))
        else:
            self._log.debug(f"target request {request.target_id!r} queued (stamp "
                            f"{request.stamp_ns / NS_PER_S:.6f}, box {np.round(request.box, 1).tolist()})")

    # ------------------------------------------------------------------ services (never block a thread)
    def _deferred(self):
        """A future the worker completes, and the reply function that completes it and wakes the
        executor (a coroutine awaiting an rclpy future is resumed when the executor wakes)."""
        future = Future()
        executor = self.executor

        def reply(*answer):
            future.set_result(answer)
            if executor is not None:
                executor.wake()
        return future, reply

    async def _srv_start(self, req: StartTracking.Request, resp: StartTracking.Response):
        future, reply = self._deferred()
        self._submit(self._request_from(req.target, reply=reply))
        resp.success, resp.id, resp.reason = await future
        return resp

    async def _srv_cancel(self, req: CancelTracking.Request, resp: CancelTracking.Response):
        if not self._running:
            resp.success, resp.reason = False, "the node is not active"
            return resp
        future, reply = self._deferred()
        with self._wake:
            self._cancels.append((req.id, reply))
            self._wake.notify()
        resp.success, ids, resp.reason = await future
        resp.cancelled_ids = list(ids)
        return resp

    def _srv_list(self, req: ListTargets.Request, resp: ListTargets.Response):
        resp.targets = list(self._listed)
        return resp

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while self._running:
            with self._wake:
                # Requests waiting for a frame are looked at again on the next frame, or after the
                # poll period for their deadline: no busy loop while they wait.
                if not len(self._queue) and not self._new_requests and not self._cancels:
                    self._wake.wait(WORKER_POLL_S)
                self._new_requests = False
                frame, _ = self._queue.take_newest()
                requests = [r for r in self._pending.snapshot() if not r.answered]
                cancels, self._cancels = list(self._cancels), collections.deque()
            try:
                with self._lock:
                    if self._runtime is None:
                        continue
                    for target_id, reply in cancels:
                        self._cancel(target_id, reply)
                    for r in requests:
                        if self._running:
                            self._handle_request(r, frame)
                    if frame is not None:
                        self._process(frame)
                    self._listed = tuple(self._listing())
            except Exception as exc:  # never let the worker die: log, answer, keep serving
                unlogged = self._errors.record(type(exc).__name__)
                if unlogged is not None:
                    self._log.error(f"tracking step failed: {exc!r}{suffix(unlogged)}")
                for r in requests:
                    if not r.answered:
                        self._reject(r, Reason.FAILED, f"the tracker failed on this request: {exc!r}")
            with self._wake:
                if self._pending is not None:
                    self._pending.prune()

    def _match_settings(self) -> MatchSettings:
        return MatchSettings(tolerance_s=self.p("stamp_tolerance"), request_timeout_s=self.p("request_timeout"),
                             max_targets=self.p("max_targets"))

    def _handle_request(self, r: Request, next_frame: Frame | None) -> bool:
        """Start one target, or reject it. False while it waits for a newer frame (it stays pending)."""
        with self._wake:
            decision = match(r, self._buffer, time.monotonic(), self._targets.ids(), self._match_settings())
            if decision.verdict is Verdict.START:
                later = self._buffer.frames_after(decision.frame.seq,
                                                  next_frame.seq if next_frame is not None else None)
        if decision.verdict is Verdict.WAIT:
            return False
        if decision.verdict is Verdict.REJECT:
            self._reject(r, decision.reason, decision.message)
            return True
        frame = decision.frame
        tid = self._runtime.add_target(frame.rgb, decision.box, r.target_id or None)
        self._targets.start(tid, r.label, decision.box, frame.seq)
        header = _header(frame)
        self._events_pub.publish(track_event(header, tid, TrackEventType.INITIALIZED, decision.box,
                                             reason=f"started on the frame stamped "
                                                    f"{frame.stamp_ns / NS_PER_S:.6f}"))
        self._log.info(f"target {tid!r} started on the frame stamped {frame.stamp_ns / NS_PER_S:.6f}"
                       + (f", catching up through {len(later)} newer frame(s)" if later else ""))
        r.answer(True, tid, "")
        # Catch up through the frames received since the one the box was drawn on, with the events
        # live tracking would have emitted on them.
        for f in later:
            for res in self._runtime.update(f.rgb, [tid]):
                self._record(res, f)
        return True

    def _reject(self, r: Request, reason: Reason, message: str) -> None:
        unlogged = self._rejections.record(reason.value)
        if unlogged is not None:
            self._log.warning(f"target request {r.target_id!r} rejected ({reason.value}): {message}"
                              f"{suffix(unlogged)}")
        if self._events_pub is not None:
            header = r.header if r.header is not None else Header()
            self._events_pub.publish(track_event(header, r.target_id, TrackEventType.REJECTED, r.box,
                                                 reason=message))
        r.answer(False, r.target_id, message)

    def _cancel(self, target_id: str, reply) -> None:
        ids = [target_id] if target_id else self._targets.ids()
        unknown = [i for i in ids if i not in self._targets]
        if unknown:
            reply(False, [], f"no active target with id {unknown[0]!r}")
            return
        for tid in ids:
            self._drop_target(tid, "cancelled by request")
        reply(True, ids, "")

    def _drop_target(self, tid: str, reason: str) -> None:
        record = self._targets.remove(tid)
        self._runtime.remove_target(tid)
        header = Header(frame_id="")
        header.stamp = self.get_clock().now().to_msg()
        box = record.box if record is not None else None
        self._events_pub.publish(track_event(header, tid, TrackEventType.CANCELLED, box, reason=reason))
        self._log.info(f"target {tid!r} {reason}")

    def _record(self, res, frame: Frame) -> None:
        """Keep one result in its target's record and publish its event, if any."""
        record = self._targets.get(res.target_id)
        if record is not None:
            record.update(frame.seq, res.box, res.score, res.state, res.frames_since_confident)
        if res.event is not None:
            self._events_pub.publish(track_event(_header(frame), res.target_id, res.event, res.box, res.score))
            message = f"target {res.target_id!r}: {res.event.value} (score {res.score:.2f})"
            if res.event is TrackEventType.LOST:
                self._log.warning(message)
            else:
                self._log.info(message)

    def _listing(self):
        for r in self._targets.records.values():
            yield tracked_object(r.target_id, r.label, r.box, r.score, r.state, r.frames_since_confident)

    def _process(self, frame: Frame) -> None:
        taken_ns = time.monotonic_ns()
        ids = self._targets.due(frame.seq)
        out = TrackedObjectArray(header=_header(frame))
        t0 = time.perf_counter()
        results = self._runtime.update(frame.rgb, ids) if ids else []
        infer_s = time.perf_counter() - t0
        for res in results:
            self._record(res, frame)
            out.objects.append(tracked_object(res.target_id, self._targets.get(res.target_id).label, res.box,
                                              res.score, res.state, res.frames_since_confident))
        self._tracks_pub.publish(out)
        self._detections.publish(out)
        self._account(frame, taken_ns, infer_s, bool(results))
        if self._debug_enabled:
            self._log.debug(f"frame #{frame.seq} (stamp {frame.stamp_ns / NS_PER_S:.6f}, {frame.rgb.shape[1]}x"
                            f"{frame.rgb.shape[0]}): {len(results)} target(s) in {infer_s * 1e3:.1f} ms, "
                            f"{self._queue.dropped} frame(s) dropped so far")
        if self._debug_pub.get_subscription_count() > 0:
            self._publish_debug(frame, out.header, results)

    def _account(self, frame: Frame, taken_ns: int, infer_s: float, tracked: bool) -> None:
        s = self._stats
        s.processed += 1
        s.window_frames += 1
        now = time.monotonic_ns()
        s.latency_ms.append((now - frame.received_ns) / 1e6)
        s.wait_ms.append((taken_ns - frame.received_ns) / 1e6)
        s.work_ms.append((now - taken_ns) / 1e6)
        if tracked:
            s.infer_ms.append(infer_s * 1e3)
        elapsed = time.monotonic() - s.window_start
        if elapsed >= FPS_WINDOW_S:
            s.fps, s.window_frames, s.window_start = s.window_frames / elapsed, 0, time.monotonic()

    def _publish_debug(self, frame: Frame, header: Header, results) -> None:
        img = frame.rgb.copy()
        for r in results:
            x, y, w, h = (round(v) for v in r.box)
            colour = DEBUG_COLOURS[r.state]
            cv2.rectangle(img, (x, y), (x + w, y + h), colour, 2)
            text = f"{r.target_id} {r.score:.2f}" + (" LOST" if r.state is TargetState.LOST else "")
            cv2.putText(img, text, (x, max(DEBUG_TEXT_MIN_Y, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, DEBUG_FONT_SCALE,
                        colour, 1, cv2.LINE_AA)
        msg = Image(header=header, **self._converter.rgb_to_fields(img, "rgb8"))
        self._debug_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        s = self._stats
        runtime = self._runtime
        if self._diag_pub is None:
            return
        status = DiagnosticStatus(name=f"{self.get_name()}: {DIAGNOSTICS_STATUS}", hardware_id="onnxruntime")
        latency, infer, decode = sorted(s.latency_ms), sorted(s.infer_ms), sorted(s.decode_ms)
        status.level = DiagnosticStatus.OK if runtime is not None else DiagnosticStatus.WARN
        status.message = "tracking" if len(self._listed) else "idle"
        queue = self._queue
        skips = self._skips.counts
        values = {
            "fps": f"{s.fps:.1f}", "latency_p50_ms": f"{_percentile(latency, 50):.1f}",
            "latency_p99_ms": f"{_percentile(latency, 99):.1f}", "inference_p50_ms": f"{_percentile(infer, 50):.1f}",
            "decode_p50_ms": f"{_percentile(decode, 50):.2f}",
            "queue_wait_p50_ms": f"{_percentile(sorted(s.wait_ms), 50):.2f}",
            "worker_p50_ms": f"{_percentile(sorted(s.work_ms), 50):.2f}",
            "frames_processed": str(s.processed),
            "frames_dropped": str(queue.dropped if queue is not None else 0),
            "bad_frames": str(skips[SKIP_UNREADABLE] + skips[SKIP_DEGENERATE]),
            "frames_skipped_by_reason": self._skips.summary(),
            "requests_rejected_by_reason": self._rejections.summary(),
            "worker_errors": self._errors.summary(),
            "pending_requests": str(len(self._pending) if self._pending is not None else 0),
            "providers": ",".join(runtime.active_providers) if runtime else "",
            "active_targets": str(len(self._listed)),
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
        # One executor thread: no callback waits (services await a future the worker completes), and
        # rclpy's multi-threaded executor costs a thread-pool hop per callback that competes with the
        # worker for the GIL (measured at 60 Hz on 2 cores: 59-62% of frames tracked, 66-69% with this).
        executor = SingleThreadedExecutor()
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
