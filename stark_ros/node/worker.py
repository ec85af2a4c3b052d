"""The tracker node's worker, without ROS: everything between a decoded frame or a target request
coming in and the tracks, events and service answers going out.

The node hands each frame to :meth:`TrackerWorker.offer_frame` and each request to
:meth:`~TrackerWorker.submit` / :meth:`~TrackerWorker.cancel` (from its executor: they never wait),
and runs one thread that takes the newest frame (:meth:`~TrackerWorker.take`), calls
:meth:`~TrackerWorker.step` and publishes the :class:`StepOutput` it returns. A step answers the
waiting cancels and requests (starting a target on the frame its request names and catching it up
through the newer buffered frames, with the events live tracking would have emitted on them), then
tracks every target on the frame in one batched call. At stop, :meth:`~TrackerWorker.drain`
answers whatever still waits, so no caller hangs.

The worker owns the one table of targets (:class:`stark_ros.node.targets.TargetTable`, which starts
and drops the policy's targets), the frame buffer, the latest-frame queue and the pending requests.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stark_ros.core.stamps import NS_PER_S
from stark_ros.node.frame_buffer import Frame, FrameBuffer, LatestFrameQueue
from stark_ros.node.log_throttle import suffix
from stark_ros.node.requests import (
    Answer,
    MatchSettings,
    PendingRequests,
    Reason,
    Request,
    Verdict,
    busy_message,
    match,
)
from stark_ros.node.targets import TargetTable, Track
from stark_ros.node.telemetry import STAMPS_BACKWARDS, NodeState, Telemetry
from stark_ros.tracking.lost import LostSettings, TrackEventType
from stark_ros.tracking.policy import TargetResult, TrackingPolicy

LOG = logging.getLogger(__name__)
NOT_ACTIVE_MESSAGE = "the node is not active"
DEACTIVATED_MESSAGE = "the node was deactivated before the request could be answered"


@dataclass(frozen=True)
class Limits:
    """The worker's bounds (read-only parameters of the node)."""

    queue_size: int
    frame_buffer_size: int
    frame_buffer_max_bytes: int | None
    max_pending_requests: int


@dataclass(frozen=True)
class Event:
    """A ``TrackEvent`` to publish. ``header``: the frame's or request's (echoed as it came); None:
    stamped with the node's clock when published."""

    target_id: str
    type: TrackEventType
    box: Any = None
    score: float = math.nan
    reason: str = ""
    header: Any = None


@dataclass
class StepOutput:
    """What one call decided, in order: the node publishes the events, then the tracks (when a
    frame was tracked), then delivers the answers."""

    frame: Frame | None = None
    tracks: list[Track] | None = None       # the frame's tracks (None: no frame tracked)
    events: list[Event] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    taken_ns: int = 0                        # when the worker took the frame (monotonic)
    infer_s: float | None = None             # the batched network call's time (None: no target tracked)

    def answer(self, answer: Answer | None) -> None:
        if answer is not None:
            self.answers.append(answer)


class TrackerWorker:
    def __init__(self, policy: TrackingPolicy, limits: Limits, match_settings: Callable[[], MatchSettings],
                 telemetry: Telemetry | None = None):
        self.policy = policy
        self.limits = limits
        self._match_settings = match_settings
        self.telemetry = telemetry or Telemetry()
        self._targets = TargetTable(policy)
        self._lock = threading.RLock()           # guards the policy and the target table (the step)
        self._wake = threading.Condition()       # guards buffer, queue, pending, cancels; wakes take()
        self._buffer = FrameBuffer(limits.frame_buffer_size, limits.frame_buffer_max_bytes)
        self._queue = LatestFrameQueue(limits.queue_size)
        self._pending = PendingRequests(limits.max_pending_requests)
        self._cancels: collections.deque = collections.deque()
        self._new_requests = False
        self._accepting = False
        self.listing: tuple[Track, ...] = ()     # the targets after the last step (read without a lock)

    # ------------------------------------------------------------------ state
    @property
    def accepting(self) -> bool:
        return self._accepting

    def start(self) -> None:
        """Accept frames and requests (the node is active)."""
        self._accepting = True

    def stop(self) -> None:
        """Refuse new requests and end the step under way at its next check (between requests)."""
        self._accepting = False
        with self._wake:
            self._wake.notify_all()

    def state(self) -> NodeState:
        info = getattr(self.policy, "info", None)
        return NodeState(active_targets=len(self.listing), pending_requests=len(self._pending),
                         frames_dropped=self._queue.dropped,
                         providers=tuple(getattr(self.policy, "active_providers", ())),
                         model=f"STARK-{info.variant}" if info is not None else "")

    def set_lost_settings(self, settings: LostSettings) -> None:
        with self._lock:
            self.policy.set_lost_settings(settings)

    # ------------------------------------------------------------------ inputs (never wait)
    def offer_frame(self, frame: Frame) -> None:
        """Keep a decoded frame in the buffer and queue it for the worker."""
        with self._wake:
            frame, jump = self._buffer.append(frame)
            self._queue.push(frame)
            self._wake.notify()
        if jump is not None:
            unlogged = self.telemetry.skips.record(STAMPS_BACKWARDS)
            if unlogged is not None:
                LOG.warning(jump.describe() + suffix(unlogged))

    def submit(self, request: Request) -> StepOutput:
        """Queue a target request; refused at once (in the output) when not active or busy."""
        out = StepOutput()
        if not self._accepting:
            self._reject(request, Reason.NOT_ACTIVE, NOT_ACTIVE_MESSAGE, out)
            return out
        with self._wake:
            accepted = self._pending.offer(request)
            if accepted:
                self._new_requests = True
                self._wake.notify()
        if not accepted:
            self._reject(request, Reason.BUSY, busy_message(self._pending.capacity), out)
        else:
            LOG.debug(f"target request {request.target_id!r} queued (stamp {request.stamp_ns / NS_PER_S:.6f}, "
                      f"box {np.round(request.box, 1).tolist()})")
        return out

    def cancel(self, target_id: str, reply: Callable) -> StepOutput:
        """Queue a cancel (empty id: every target); ``reply(success, ids, reason)`` answers it."""
        out = StepOutput()
        if not self._accepting:
            out.answer(Answer(reply, (False, [], NOT_ACTIVE_MESSAGE)))
            return out
        with self._wake:
            self._cancels.append((target_id, reply))
            self._wake.notify()
        return out

    # ------------------------------------------------------------------ the worker thread
    def take(self, timeout: float) -> Frame | None:
        """The newest queued frame (skipping older ones), after waiting up to ``timeout`` for work.
        Requests waiting for a frame are looked at again on the next frame, or after the timeout
        for their deadline: no busy loop while they wait."""
        with self._wake:
            if not len(self._queue) and not self._new_requests and not self._cancels and self._accepting:
                self._wake.wait(timeout)
            self._new_requests = False
            frame, _ = self._queue.take_newest()
        return frame

    def step(self, frame: Frame | None) -> StepOutput:
        """Answer the waiting cancels and requests, then track every target on ``frame``."""
        out = StepOutput(frame=frame, taken_ns=time.monotonic_ns())
        with self._wake:
            requests = [r for r in self._pending.snapshot() if not r.answered]
            cancels, self._cancels = list(self._cancels), collections.deque()
        try:
            with self._lock:
                for target_id, reply in cancels:
                    self._cancel(target_id, reply, out)
                for r in requests:
                    if self._accepting:
                        self._handle_request(r, frame, out)
                if frame is not None:
                    self._track(frame, out)
                self.listing = self._targets.tracks()
        except Exception as exc:  # never let the worker die: log, answer, keep serving
            unlogged = self.telemetry.errors.record(type(exc).__name__)
            if unlogged is not None:
                LOG.error(f"tracking step failed: {exc!r}{suffix(unlogged)}")
            for r in requests:
                if not r.answered:
                    self._reject(r, Reason.FAILED, f"the tracker failed on this request: {exc!r}", out)
        with self._wake:
            self._pending.prune()
        return out

    def drain(self) -> StepOutput:
        """At stop: answer every request and cancel still waiting (nobody else will)."""
        out = StepOutput()
        with self._wake:
            waiting = self._pending.drain()
            cancels, self._cancels = list(self._cancels), collections.deque()
        for r in waiting:
            self._reject(r, Reason.NOT_ACTIVE, DEACTIVATED_MESSAGE, out)
        for _, reply in cancels:
            out.answer(Answer(reply, (False, [], "the node was deactivated")))
        return out

    # ------------------------------------------------------------------ inside a step
    def _handle_request(self, r: Request, next_frame: Frame | None, out: StepOutput) -> None:
        """Start one target, or reject it; a request waiting for a newer frame stays pending."""
        with self._wake:
            decision = match(r, self._buffer, time.monotonic(), self._targets.ids(), self._match_settings())
            if decision.verdict is Verdict.START:
                later = self._buffer.frames_after(decision.frame.seq,
                                                  next_frame.seq if next_frame is not None else None)
        if decision.verdict is Verdict.WAIT:
            return
        if decision.verdict is Verdict.REJECT:
            self._reject(r, decision.reason, decision.message, out)
            return
        frame = decision.frame
        tid = self._targets.start(frame, decision.box, r.target_id, r.label).target_id
        stamp = f"{frame.stamp_ns / NS_PER_S:.6f}"
        out.events.append(Event(tid, TrackEventType.INITIALIZED, decision.box, reason=f"started on the frame "
                                                                                     f"stamped {stamp}",
                                header=frame.header))
        LOG.info(f"target {tid!r} started on the frame stamped {stamp}"
                 + (f", catching up through {len(later)} newer frame(s)" if later else ""))
        out.answer(r.answer(True, tid, ""))
        # Catch up through the frames received since the one the box was drawn on, with the events
        # live tracking would have emitted on them.
        for f in later:
            for res in self._targets.track(f, [tid]):
                self._event_of(res, f, out)

    def _reject(self, r: Request, reason: Reason, message: str, out: StepOutput) -> None:
        unlogged = self.telemetry.rejections.record(reason.value)
        if unlogged is not None:
            LOG.warning(f"target request {r.target_id!r} rejected ({reason.value}): {message}{suffix(unlogged)}")
        out.events.append(Event(r.target_id, TrackEventType.REJECTED, r.box, reason=message, header=r.header))
        out.answer(r.answer(False, r.target_id, message))

    def _cancel(self, target_id: str, reply: Callable, out: StepOutput) -> None:
        ids = [target_id] if target_id else self._targets.ids()
        unknown = [i for i in ids if i not in self._targets]
        if unknown:
            out.answer(Answer(reply, (False, [], f"no active target with id {unknown[0]!r}")))
            return
        for tid in ids:
            self._drop(tid, "cancelled by request", out)
        out.answer(Answer(reply, (True, ids, "")))

    def _drop(self, tid: str, reason: str, out: StepOutput) -> None:
        record = self._targets.remove(tid)
        out.events.append(Event(tid, TrackEventType.CANCELLED, record.box if record is not None else None,
                                reason=reason))
        LOG.info(f"target {tid!r} {reason}")

    def _event_of(self, res: TargetResult, frame: Frame, out: StepOutput) -> None:
        """The event of one result (LOST / REACQUIRED on the frame it happened), if any."""
        if res.event is None:
            return
        out.events.append(Event(res.target_id, res.event, res.box, res.score, header=frame.header))
        message = f"target {res.target_id!r}: {res.event.value} (score {res.score:.2f})"
        if res.event is TrackEventType.LOST:
            LOG.warning(message)
        else:
            LOG.info(message)

    def _track(self, frame: Frame, out: StepOutput) -> None:
        ids = self._targets.due(frame.seq)
        t0 = time.perf_counter()
        results = self._targets.track(frame, ids)
        infer_s = time.perf_counter() - t0
        for res in results:
            self._event_of(res, frame, out)
        out.tracks = [self._targets.get(res.target_id).track() for res in results]
        out.infer_s = infer_s if results else None
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug(f"frame #{frame.seq} (stamp {frame.stamp_ns / NS_PER_S:.6f}, {frame.rgb.shape[1]}x"
                      f"{frame.rgb.shape[0]}): {len(results)} target(s) in {infer_s * 1e3:.1f} ms, "
                      f"{self._queue.dropped} frame(s) dropped so far")
