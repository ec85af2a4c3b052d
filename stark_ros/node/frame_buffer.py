"""Frames inside the node, without ROS: the rule for time, the ring buffer of recent frames (looked up
by stamp, for requests drawn on an older frame) and the bounded latest-frame queue for the worker.

The rule for time (docs/architecture.md, "Time"): frames are tracked in **arrival order**, numbered
by ``seq``; stamps are only used to find the frame a request was drawn on and to stamp the output.
A stamp <= 0 means "unstamped" (cameras that leave stamps at 0, and negative stamps that no clock
gives): such a frame is tracked and can be the "newest frame" of a zero-stamp request, but never
matches a request by stamp. A stamped frame older than the newest stamped frame seen before it
(a bag played in a loop, a ``use_sim_time`` reset, a camera clock correction) starts a new run of
stamps: the buffer forgets the frames of the old run, so that a stamp means one frame again.

Beyond the frames it keeps, the buffer remembers the stamps of the last RECEIVED_STAMPS_KEPT frames
of the current run, so that a request older than the buffer is told apart from one whose frame never
arrived (lost in transport, see README "Image QoS", or a stamp no camera frame had).
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass
from enum import Enum

import numpy as np

from stark_ros.core.stamps import NS_PER_S

# Stamps of received frames remembered (about 11 minutes at 30 Hz; a list of ints, about 1.5 MB at most).
RECEIVED_STAMPS_KEPT = 20_000


def is_stamped(ns: int) -> bool:
    return ns > 0


@dataclass(frozen=True)
class Geometry:
    """What a box in a frame is relative to: the camera (``frame_id``) and the image size."""

    frame_id: str
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height} in {self.frame_id!r}"


@dataclass(frozen=True)
class Frame:
    stamp_ns: int
    frame_id: str
    rgb: np.ndarray
    received_ns: int
    seq: int = 0          # arrival order, assigned by the buffer (the order frames are tracked in)
    header: object = None  # the message header, echoed in the outputs as it came

    @property
    def stamped(self) -> bool:
        return is_stamped(self.stamp_ns)

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.frame_id, self.rgb.shape[1], self.rgb.shape[0])


class Lookup(str, Enum):
    FOUND = "found"
    NEWER_THAN_BUFFER = "the stamp is newer than the newest frame"
    OLDER_THAN_BUFFER = "the stamp is older than the oldest buffered frame"
    NEVER_RECEIVED = ("no frame with that stamp was received (frames stamped before and after it were): lost in "
                      "transport, or not a camera frame's stamp")
    NO_MATCH = "no buffered frame has that stamp (within the tolerance): no frame with it was received"
    EMPTY = "no frame has been received yet"


@dataclass(frozen=True)
class StampJump:
    """A stamped frame older than the newest stamped frame before it: a new run of stamps began."""

    previous_ns: int
    new_ns: int
    forgotten_frames: int

    @property
    def seconds(self) -> float:
        return (self.previous_ns - self.new_ns) / NS_PER_S

    def describe(self) -> str:
        return (f"image stamps went back by {self.seconds:.3f} s (from {self.previous_ns / NS_PER_S:.6f} to "
                f"{self.new_ns / NS_PER_S:.6f}: a looping bag, a sim-time reset or a clock correction); "
                f"tracking goes on in arrival order, {self.forgotten_frames} buffered frame(s) of the old stamps "
                f"forgotten")


class ReceivedStamps:
    """The stamps of the last ``capacity`` stamped frames of the current run, in order (a run's
    stamps never decrease), for "was a frame with this stamp received at all?"."""

    def __init__(self, capacity: int = RECEIVED_STAMPS_KEPT):
        self.capacity = capacity
        self._stamps: list[int] = []

    def add(self, stamp: int) -> None:
        self._stamps.append(stamp)
        if len(self._stamps) > 2 * self.capacity:  # trimmed in chunks: amortised O(1) per frame
            del self._stamps[:-self.capacity]

    def clear(self) -> None:
        self._stamps.clear()

    @property
    def oldest(self) -> int | None:
        return self._stamps[0] if self._stamps else None

    def contains(self, stamp: int, tolerance_ns: int) -> bool:
        i = bisect.bisect_left(self._stamps, stamp - tolerance_ns)
        return i < len(self._stamps) and self._stamps[i] <= stamp + tolerance_ns


class FrameBuffer:
    """The last ``capacity`` frames in arrival order, and at most ``max_bytes`` of pixels (the
    newest frame is always kept); numbers each frame it is given (``seq``)."""

    def __init__(self, capacity: int, max_bytes: int | None = None):
        if capacity < 1:
            raise ValueError("the frame buffer needs room for at least one frame")
        self._frames: collections.deque[Frame] = collections.deque(maxlen=capacity)
        self.max_bytes = max_bytes
        self._next_seq = 1
        self._newest_stamp: int | None = None  # newest stamp of the current run of stamps
        self._received = ReceivedStamps()

    def __len__(self) -> int:
        return len(self._frames)

    def append(self, frame: Frame) -> tuple[Frame, StampJump | None]:
        """Number the frame, keep it; returns it (with its ``seq``) and the jump it began, if any."""
        frame = Frame(frame.stamp_ns, frame.frame_id, frame.rgb, frame.received_ns, self._next_seq, frame.header)
        self._next_seq += 1
        jump = None
        if frame.stamped:
            if self._newest_stamp is not None and frame.stamp_ns < self._newest_stamp:
                forgotten = sum(1 for f in self._frames if f.stamped)
                jump = StampJump(self._newest_stamp, frame.stamp_ns, forgotten)
                self._frames = collections.deque((f for f in self._frames if not f.stamped),
                                                 maxlen=self._frames.maxlen)
                self._newest_stamp = None
                self._received.clear()
            self._received.add(frame.stamp_ns)
            self._newest_stamp = frame.stamp_ns if self._newest_stamp is None else max(self._newest_stamp,
                                                                                        frame.stamp_ns)
        self._frames.append(frame)
        if self.max_bytes is not None:
            # A frame count alone bounds nothing when frames are large: the oldest go first.
            total = sum(f.rgb.nbytes for f in self._frames)
            while total > self.max_bytes and len(self._frames) > 1:
                total -= self._frames.popleft().rgb.nbytes
        return frame, jump

    @property
    def newest(self) -> Frame | None:
        """The frame that arrived last, stamped or not (what a zero-stamp request starts on)."""
        return self._frames[-1] if self._frames else None

    def find(self, stamp: int, tolerance_ns: int) -> tuple[Lookup, Frame | None]:
        """The buffered frame stamped ``stamp`` (within the tolerance; the later one of equal stamps)."""
        stamped = [f for f in self._frames if f.stamped]
        if not stamped:
            return Lookup.EMPTY, None
        newest = max(f.stamp_ns for f in stamped)
        oldest = min(f.stamp_ns for f in stamped)
        if stamp > newest + tolerance_ns:
            return Lookup.NEWER_THAN_BUFFER, None
        if stamp < oldest - tolerance_ns:
            remembered = self._received.oldest
            if remembered is not None and stamp >= remembered - tolerance_ns and \
                    not self._received.contains(stamp, tolerance_ns):
                return Lookup.NEVER_RECEIVED, None
            return Lookup.OLDER_THAN_BUFFER, None
        # Ties (repeated stamps) go to the later arrival: min() keeps the first of equal keys.
        best = min(reversed(stamped), key=lambda f: abs(f.stamp_ns - stamp))
        if abs(best.stamp_ns - stamp) > tolerance_ns:
            return Lookup.NO_MATCH, None
        return Lookup.FOUND, best

    def frames_after(self, seq: int, before_seq: int | None = None) -> list[Frame]:
        """Buffered frames that arrived after frame ``seq`` (and before ``before_seq``), in order."""
        return [f for f in self._frames if f.seq > seq and (before_seq is None or f.seq < before_seq)]


class LatestFrameQueue:
    """Frames waiting for the worker: bounded, drop-oldest. The worker takes the newest and the
    ones it skips count as dropped (a tracker wants the newest image, not a backlog)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("the frame queue needs room for at least one frame")
        self._frames: collections.deque[Frame] = collections.deque()
        self.capacity = capacity
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: Frame) -> int:
        """Queue a frame; returns how many older frames it pushed out."""
        pushed_out = 0
        while len(self._frames) >= self.capacity:
            self._frames.popleft()
            pushed_out += 1
        self._frames.append(frame)
        self.dropped += pushed_out
        return pushed_out

    def take_newest(self) -> tuple[Frame | None, int]:
        """The newest frame and how many older ones were skipped (and dropped) for it."""
        if not self._frames:
            return None, 0
        frame = self._frames.pop()
        skipped = len(self._frames)
        self._frames.clear()
        self.dropped += skipped
        return frame, skipped
