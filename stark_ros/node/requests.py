"""Target requests without ROS: what a request is, the bounded queue of pending ones, and the
matcher that decides, for one request and the buffered frames, to start it, let it wait, or reject
it with a reason.

The matcher checks in this order, so that the answer names the first thing the caller must fix:
1. the box itself (NaN / infinite, zero or negative size): a bad box is a bad box whatever its stamp;
2. the stamp (negative: no clock gives one), then the frame it names: zero = the newest frame;
   newer than the newest frame = wait up to the deadline; older than the buffer (received, gone since),
   never received (older than the buffer, but the frames around it arrived), or between frames;
3. the frame_id against the frame's;
4. the box against that frame: entirely outside, larger than the frame, smaller than a pixel or two;
5. room for one more target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from stark_ros.core.geometry import BoxProblem, InvalidBoxError, validate_box
from stark_ros.core.stamps import NS_PER_S
from stark_ros.node.frame_buffer import Frame, FrameBuffer, Lookup

# A box wider or taller than the frame times this is refused: the crops around it (template and
# search region are several times the box) would cost memory and time out of all proportion
# (a 3000 px box on a 360x240 frame took 10 s and 2.4 GB), and no camera image holds such a target.
MAX_BOX_TO_FRAME = 1.0
# Boxes with a side below this many pixels have no appearance to learn.
MIN_BOX_SIDE_PX = 2.0


class Reason(str, Enum):
    """Why a request was refused; the value is the stable key counted on /diagnostics."""

    BAD_BOX = "bad_box"
    NEGATIVE_STAMP = "negative_stamp"
    TIMEOUT = "timeout"
    OLDER_THAN_BUFFER = "older_than_buffer"
    NEVER_RECEIVED = "never_received"
    NO_MATCH = "no_matching_frame"
    FRAME_ID = "frame_id_mismatch"
    OUTSIDE_IMAGE = "outside_image"
    BOX_TOO_LARGE = "box_too_large"
    BOX_TOO_SMALL = "box_too_small"
    MAX_TARGETS = "max_targets"
    BUSY = "busy"
    NOT_ACTIVE = "not_active"
    FAILED = "failed"


@dataclass(frozen=True)
class Answer:
    """A service call's answer: decided by the worker, delivered by the node after the step's events."""

    reply: Callable
    values: tuple

    def deliver(self) -> None:
        self.reply(*self.values)


@dataclass
class Request:
    stamp_ns: int
    frame_id: str
    box: np.ndarray
    target_id: str
    label: str
    deadline: float             # monotonic seconds after which a waiting request is rejected
    header: Any = None          # the request's header, echoed in its REJECTED event
    reply: Any = None           # called once with (success, target_id, reason) (services)
    answered: bool = field(default=False, init=False)

    @property
    def wants_newest(self) -> bool:
        return self.stamp_ns == 0

    def answer(self, success: bool, target_id: str, reason: str) -> Answer | None:
        """Answer once (a second answer would be a bug, and is ignored): the answer to deliver to a
        service caller, None for a topic request or a second answer."""
        if self.answered:
            return None
        self.answered = True
        return Answer(self.reply, (success, target_id, reason)) if self.reply is not None else None


@dataclass
class Cancel:
    """A cancel request (empty id: every target); queued with the target requests, so that the
    requests for one id are applied in the order they arrived, whatever their kind."""

    target_id: str
    reply: Any = None           # called once with (success, cancelled ids, reason) (services)
    answered: bool = field(default=False, init=False)

    def answer(self, success: bool, ids: list[str], reason: str) -> Answer | None:
        if self.answered:
            return None
        self.answered = True
        return Answer(self.reply, (success, list(ids), reason)) if self.reply is not None else None


class Verdict(Enum):
    START = "start"
    WAIT = "wait"
    REJECT = "reject"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    frame: Frame | None = None
    box: np.ndarray | None = None
    reason: Reason | None = None
    message: str = ""

    @classmethod
    def reject(cls, reason: Reason, message: str) -> Decision:
        return cls(Verdict.REJECT, reason=reason, message=message)


@dataclass(frozen=True)
class MatchSettings:
    tolerance_s: float
    request_timeout_s: float
    max_targets: int

    @property
    def tolerance_ns(self) -> int:
        return round(self.tolerance_s * NS_PER_S)


def _box_problem(box: np.ndarray) -> str | None:
    """The problem of the box on its own (before any frame is known), or None."""
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,):
        return BoxProblem.WRONG_SHAPE.value
    if not np.all(np.isfinite(b)):
        return BoxProblem.NOT_FINITE.value
    if b[2] <= 0 or b[3] <= 0:
        return BoxProblem.NON_POSITIVE_SIZE.value
    return None


def match(request: Request, buffer: FrameBuffer, now: float, active_ids, settings: MatchSettings) -> Decision:
    """Start ``request`` on a buffered frame, let it wait, or reject it (see the module docstring)."""
    problem = _box_problem(request.box)
    if problem is not None:
        return Decision.reject(Reason.BAD_BOX, problem)
    if request.stamp_ns < 0:
        return Decision.reject(Reason.NEGATIVE_STAMP, f"the request's stamp is negative "
                                                      f"({request.stamp_ns / NS_PER_S:.9f} s); use 0 for the newest "
                                                      f"frame")
    if request.wants_newest:
        frame = buffer.newest
        lookup = Lookup.FOUND if frame is not None else Lookup.EMPTY
    else:
        lookup, frame = buffer.find(request.stamp_ns, settings.tolerance_ns)
    if lookup in (Lookup.NEWER_THAN_BUFFER, Lookup.EMPTY):
        if now < request.deadline:
            return Decision(Verdict.WAIT)
        return Decision.reject(Reason.TIMEOUT, f"no frame with the request's stamp arrived within "
                                               f"{settings.request_timeout_s:g} s ({lookup.value})")
    if lookup is Lookup.OLDER_THAN_BUFFER:
        return Decision.reject(Reason.OLDER_THAN_BUFFER, lookup.value)
    if lookup is Lookup.NEVER_RECEIVED:
        return Decision.reject(Reason.NEVER_RECEIVED, lookup.value)
    if lookup is Lookup.NO_MATCH:
        return Decision.reject(Reason.NO_MATCH, lookup.value)
    if request.frame_id and frame.frame_id and request.frame_id != frame.frame_id:
        return Decision.reject(Reason.FRAME_ID, f"frame_id {request.frame_id!r} does not match the image's "
                                                f"frame_id {frame.frame_id!r}")
    height, width = frame.rgb.shape[:2]
    try:
        box = validate_box(request.box, frame.rgb.shape)
    except InvalidBoxError as exc:
        return Decision.reject(Reason.OUTSIDE_IMAGE if exc.problem is BoxProblem.OUTSIDE_IMAGE else Reason.BAD_BOX,
                               exc.problem.value)
    if box[2] > MAX_BOX_TO_FRAME * width or box[3] > MAX_BOX_TO_FRAME * height:
        return Decision.reject(Reason.BOX_TOO_LARGE, f"box is larger than the image ({box[2]:.0f}x{box[3]:.0f} px "
                                                     f"on a {width}x{height} image)")
    if min(box[2], box[3]) < MIN_BOX_SIDE_PX:
        return Decision.reject(Reason.BOX_TOO_SMALL, f"box is smaller than {MIN_BOX_SIDE_PX:g} px "
                                                     f"({box[2]:.3g}x{box[3]:.3g} px)")
    active = set(active_ids)
    if request.target_id not in active and len(active) >= settings.max_targets:
        return Decision.reject(Reason.MAX_TARGETS, f"already tracking the maximum of {settings.max_targets} targets")
    return Decision(Verdict.START, frame=frame, box=box)


class PendingRequests:
    """Accepted requests (starts and cancels) not yet answered, in arrival order, at most
    ``capacity``: beyond it a request is refused (busy) at once instead of queueing work nobody can
    wait for. A request stays counted until it is answered, also while the worker looks at it."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("the request queue needs room for at least one request")
        self.capacity = capacity
        self._queue: list[Request | Cancel] = []

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, request: Request | Cancel) -> bool:
        if len(self._queue) >= self.capacity:
            return False
        self._queue.append(request)
        return True

    def snapshot(self) -> list[Request | Cancel]:
        """The waiting requests in arrival order (the worker answers them, then calls prune)."""
        return list(self._queue)

    def prune(self) -> None:
        """Forget the answered ones."""
        self._queue = [r for r in self._queue if not r.answered]

    def drain(self) -> list[Request | Cancel]:
        taken, self._queue = self._queue, []
        return taken


def busy_message(capacity: int) -> str:
    return f"busy: {capacity} requests are already waiting; try again"
