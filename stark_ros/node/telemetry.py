"""What the node measures about itself, without ROS: latency windows, frame rate, counts of skipped
frames, refused requests and worker errors, and the key -> value pairs the node publishes on
/diagnostics from them (README, "Diagnostics")."""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass

from stark_ros.node.log_throttle import ReasonLog

# Each reason is logged at most once per this many seconds (with the count left unlogged since).
LOG_THROTTLE_S = 5.0
# Latency percentiles are taken over this many recent frames.
LATENCY_WINDOW = 300
FPS_WINDOW_S = 1.0
NS_PER_MS = 1e6
MS_PER_S = 1e3

# Frame reasons counted on /diagnostics (frames_skipped_by_reason) beside the request Reason values.
SKIP_UNREADABLE = "unreadable"
SKIP_DEGENERATE = "degenerate"
STAMPS_BACKWARDS = "stamps_backwards"
IMAGE_SIZE_CHANGED = "image_size_changed"  # counted, not skipped: the targets follow (worker.py)
FRAME_ID_CHANGED = "frame_id_changed"
LOST_IN_TRANSPORT = "lost_in_transport"     # DDS sample-lost: frames that never reached the node
STATUS_WAITING = "waiting for images"
STATUS_TRACKING = "tracking"
STATUS_IDLE = "idle"


def percentile(sorted_values, q: float) -> float:
    """Nearest-rank percentile of an already sorted window (NaN when empty)."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q / 100))]


@dataclass(frozen=True)
class NodeState:
    """What the diagnostics report beside the measurements (read from the worker and the runtime)."""

    active_targets: int = 0
    pending_requests: int = 0
    frames_dropped: int = 0
    providers: tuple[str, ...] = ()
    model: str = ""
    image: str = ""                      # the newest frame's size and frame_id


class Telemetry:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self.skips = ReasonLog(LOG_THROTTLE_S, clock)
        self.rejections = ReasonLog(LOG_THROTTLE_S, clock)
        self.errors = ReasonLog(LOG_THROTTLE_S, clock)
        self.processed = 0
        self._fps = 0.0
        self._last_frame: float | None = None    # when the last frame was decoded (clock seconds)
        self._window_start = clock()
        self._window_frames = 0
        # Frame received -> tracks published, and apart: received -> taken by the worker (waiting)
        # and taken -> published (the worker's own time: inference + bookkeeping + publishing).
        self.latency_ms = collections.deque(maxlen=LATENCY_WINDOW)
        self.wait_ms = collections.deque(maxlen=LATENCY_WINDOW)
        self.work_ms = collections.deque(maxlen=LATENCY_WINDOW)
        self.infer_ms = collections.deque(maxlen=LATENCY_WINDOW)
        self.decode_ms = collections.deque(maxlen=LATENCY_WINDOW)
        self._lock = threading.Lock()    # the executor reads the windows while the worker appends

    def decoded(self, start_ns: int, end_ns: int) -> None:
        with self._lock:
            self.decode_ms.append((end_ns - start_ns) / NS_PER_MS)
            self._last_frame = self._clock()

    def seconds_since_frame(self) -> float:
        """Since the last frame arrived (infinite before the first)."""
        last = self._last_frame
        return math.inf if last is None else self._clock() - last

    def silent(self, image_timeout_s: float) -> bool:
        return self.seconds_since_frame() > image_timeout_s

    def status(self, state: NodeState, image_timeout_s: float) -> tuple[bool, str]:
        """(whether it is a warning, the message): waiting for images after ``image_timeout_s``
        without a frame, else tracking or idle."""
        if self.silent(image_timeout_s):
            return True, STATUS_WAITING
        return False, STATUS_TRACKING if state.active_targets else STATUS_IDLE

    def frame_done(self, received_ns: int, taken_ns: int, done_ns: int, infer_s: float | None) -> None:
        """One frame tracked and published (``infer_s`` None when no target was tracked on it)."""
        with self._lock:
            self.processed += 1
            self._window_frames += 1
            self.latency_ms.append((done_ns - received_ns) / NS_PER_MS)
            self.wait_ms.append((taken_ns - received_ns) / NS_PER_MS)
            self.work_ms.append((done_ns - taken_ns) / NS_PER_MS)
            if infer_s is not None:
                self.infer_ms.append(infer_s * MS_PER_S)
            now = self._clock()
            elapsed = now - self._window_start
            if elapsed >= FPS_WINDOW_S:
                self._fps, self._window_frames, self._window_start = self._window_frames / elapsed, 0, now

    def values(self, state: NodeState, image_timeout_s: float) -> dict[str, str]:
        """The /diagnostics key -> value pairs (fps 0 while no frame comes, not the last rate)."""
        with self._lock:
            latency, infer, decode = sorted(self.latency_ms), sorted(self.infer_ms), sorted(self.decode_ms)
            wait, work = sorted(self.wait_ms), sorted(self.work_ms)
        skips = self.skips.counts
        return {
            "fps": f"{0.0 if self.silent(image_timeout_s) else self._fps:.1f}",
            "latency_p50_ms": f"{percentile(latency, 50):.1f}",
            "latency_p99_ms": f"{percentile(latency, 99):.1f}", "inference_p50_ms": f"{percentile(infer, 50):.1f}",
            "decode_p50_ms": f"{percentile(decode, 50):.2f}",
            "queue_wait_p50_ms": f"{percentile(wait, 50):.2f}",
            "worker_p50_ms": f"{percentile(work, 50):.2f}",
            "frames_processed": str(self.processed),
            "frames_dropped": str(state.frames_dropped),
            "frames_lost_in_transport": str(skips[LOST_IN_TRANSPORT]),
            "seconds_since_last_frame": f"{self.seconds_since_frame():.1f}",
            "image": state.image,
            "bad_frames": str(skips[SKIP_UNREADABLE] + skips[SKIP_DEGENERATE]),
            "frames_skipped_by_reason": self.skips.summary(),
            "requests_rejected_by_reason": self.rejections.summary(),
            "worker_errors": self.errors.summary(),
            "pending_requests": str(state.pending_requests),
            "providers": ",".join(state.providers),
            "active_targets": str(state.active_targets),
            "model": state.model,
        }
