"""The tracker node's worker, without ROS: everything between a decoded frame or a target request
coming in and the tracks, events and service answers going out.

The node hands each frame to :meth:`TrackerWorker.offer_frame` and each request to
:meth:`~TrackerWorker.submit` / :meth:`~TrackerWorker.cancel` (from its executor: they never wait),
and runs one thread that takes the newest frame (:meth:`~TrackerWorker.take`), calls
:meth:`~TrackerWorker.step` and publishes the :class:`StepOutput` it returns. A step answers the
waiting requests in the order they arrived (starting a target on the frame its request names and
catching it up through the newer buffered frames, with the events live tracking would have emitted
on them; cancelling), then tracks every target on the frame in one batched call. A request that
waits for its frame holds back the later ones for the same target id. :meth:`~TrackerWorker.stop`
ends a step at its next check (between requests, between catch-up frames); then
:meth:`~TrackerWorker.drain` answers whatever still waits, so no caller hangs.

A target's box belongs to the image it was drawn on: when the image size changes (same camera), the
target is restarted on the new frame with its box scaled (an INITIALIZED event says so); when the
``frame_id`` changes (another camera on the topic), the target is cancelled with that reason.

The worker owns the one table of targets (:class:`stark_ros.node.targets.TargetTable`, which starts
and drops the policy's targets), the frame buffer, the latest-frame queue and the pending requests.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stark_ros.core.stamps import NS_PER_S
from stark_ros.node.frame_buffer import Frame, FrameBuffer, Geometry, LatestFrameQueue
from stark_ros.node.log_throttle import suffix
from stark_ros.node.requests import (
    Answer,
    Cancel,
    MatchSettings,
    PendingRequests,
    Reason,
    Request,
    Verdict,
    busy_message,
    match,
)
from stark_ros.node.targets import TargetTable, Track
from stark_ros.node.telemetry import FRAME_ID_CHANGED, IMAGE_SIZE_CHANGED, STAMPS_BACKWARDS, NodeState, Telemetry
from stark_ros.tracking.lost import LostSettings, TrackEventType
from stark_ros.tracking.policy import TargetResult, TrackingPolicy

LOG = logging.getLogger(__name__)
NOT_ACTIVE_MESSAGE = "the node is not active"
DEACTIVATED_MESSAGE = "the node was deactivated before the request could be answered"
CLEANED_UP_REASON = "the node was cleaned up (lifecycle cleanup)"


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
        self._wake = threading.Condition()       # guards buffer, queue and pending requests; wakes take()
        self._buffer = FrameBuffer(limits.frame_buffer_size, limits.frame_buffer_max_bytes)
        self._queue = LatestFrameQueue(limits.queue_size)
        self._pending = PendingRequests(limits.max_pending_requests)
        self._new_requests = False
        self._accepting = False
        self._last_geometry: Geometry | None = None
        self.listing: tuple[Track, ...] = ()     # the targets after the last step (read without a lock)

    # ------------------------------------------------------------------ state
    @property
    def accepting(self) -> bool:
        return self._accepting

    def start(self) -> None:
        """Accept frames and requests (the node is active)."""
        self._accepting = True

    def stop(self) -> None:
        """Refuse new requests and end the step under way at its next check."""
        self._accepting = False
        with self._wake:
            self._wake.notify_all()

    def state(self) -> NodeState:
        info = getattr(self.policy, "info", None)
        return NodeState(active_targets=len(self.listing), pending_requests=len(self._pending),
                         frames_dropped=self._queue.dropped,
                         providers=tuple(getattr(self.policy, "active_providers", ())),
                         model=f"STARK-{info.variant}" if info is not None else "",
                         image=str(self._last_geometry) if self._last_geometry is not None else "")

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
            previous, self._last_geometry = self._last_geometry, frame.geometry
        if jump is not None:
            unlogged = self.telemetry.skips.record(STAMPS_BACKWARDS)
            if unlogged is not None:
                LOG.warning(jump.describe() + suffix(unlogged))
        if previous is not None and previous != frame.geometry:
            # Each kind of change throttled on its own: two cameras alternating on one topic log
            # once per period, and a resize is not hidden behind them.
            new_camera = previous.frame_id != frame.geometry.frame_id
            unlogged = self.telemetry.skips.record(FRAME_ID_CHANGED if new_camera else IMAGE_SIZE_CHANGED)
            if unlogged is not None:
                LOG.warning(f"the image changed from {previous} to {frame.geometry}: "
                            + ("targets on the old frame_id are cancelled" if new_camera else
                               "targets are restarted on their boxes scaled to the new size") + suffix(unlogged))

    def submit(self, request: Request | Cancel) -> StepOutput:
        """Queue a target request or a cancel; refused at once (in the output) when not active or busy."""
        out = StepOutput()
        if not self._accepting:
            self._refuse(request, Reason.NOT_ACTIVE, NOT_ACTIVE_MESSAGE, out)
            return out
        with self._wake:
            accepted = self._pending.offer(request)
            if accepted:
                self._new_requests = True
                self._wake.notify()
        if not accepted:
            self._refuse(request, Reason.BUSY, busy_message(self._pending.capacity), out)
        elif isinstance(request, Request):
            LOG.debug(f"target request {request.target_id!r} queued (stamp {request.stamp_ns / NS_PER_S:.6f}, "
                      f"box {np.round(request.box, 1).tolist()})")
        return out

    def cancel(self, target_id: str, reply: Callable | None = None) -> StepOutput:
        """Queue a cancel (empty id: every target); ``reply(success, ids, reason)`` answers it."""
        return self.submit(Cancel(target_id, reply))

    # ------------------------------------------------------------------ the worker thread
    def take(self, timeout: float) -> Frame | None:
        """The newest queued frame (skipping older ones), after waiting up to ``timeout`` for work.
        Requests waiting for a frame are looked at again on the next frame, or after the timeout
        for their deadline: no busy loop while they wait."""
        with self._wake:
            if not len(self._queue) and not self._new_requests and self._accepting:
                self._wake.wait(timeout)
            self._new_requests = False
            frame, _ = self._queue.take_newest()
        return frame

    def step(self, frame: Frame | None) -> StepOutput:
        """Answer the waiting requests in arrival order, then track every target on ``frame``."""
        out = StepOutput(frame=frame, taken_ns=time.monotonic_ns())
        with self._wake:
            requests = [r for r in self._pending.snapshot() if not r.answered]
        try:
            with self._lock:
                self._answer_in_order(requests, frame, out)
                if frame is not None and self._accepting:
                    self._track(frame, out)
                self.listing = self._targets.tracks()
        except Exception as exc:  # never let the worker die: log, answer, keep serving
            unlogged = self.telemetry.errors.record(type(exc).__name__)
            if unlogged is not None:
                LOG.error(f"tracking step failed: {exc!r}{suffix(unlogged)}")
            for r in requests:
                if not r.answered:
                    self._refuse(r, Reason.FAILED, f"the tracker failed on this request: {exc!r}", out)
        with self._wake:
            self._pending.prune()
        return out

    def drain(self) -> StepOutput:
        """At stop: answer every request still waiting (nobody else will)."""
        out = StepOutput()
        with self._wake:
            waiting = self._pending.drain()
        for r in waiting:
            self._refuse(r, Reason.NOT_ACTIVE, DEACTIVATED_MESSAGE, out)
        return out

    def clear(self, reason: str = CLEANED_UP_REASON) -> StepOutput:
        """Drop every target, with a CANCELLED event each (lifecycle cleanup)."""
        out = StepOutput()
        with self._lock:
            for tid in self._targets.ids():
                self._drop(tid, reason, out)
            self.listing = ()
        return out

    # ------------------------------------------------------------------ inside a step
    def _answer_in_order(self, requests: list, frame: Frame | None, out: StepOutput) -> None:
        """Answer ``requests`` in arrival order. One that waits for its frame holds back the later
        ones for its id (a cancel must not overtake the start before it); a cancel of every target
        waits for every earlier request, and holds back every later one."""
        held_ids: set[str] = set()
        held_any = hold_all = False
        for r in requests:
            if not self._accepting:
                return
            every = isinstance(r, Cancel) and not r.target_id
            if hold_all or (r.target_id and r.target_id in held_ids) or (every and held_any):
                done = False
            elif isinstance(r, Cancel):
                done = self._cancel(r, out)
            else:
                done = self._start(r, frame, out)
            if not done:
                held_any, hold_all = True, hold_all or every
                if r.target_id:
                    held_ids.add(r.target_id)

    def _start(self, r: Request, next_frame: Frame | None, out: StepOutput) -> bool:
        """Start one target, or reject it. False while it waits for a newer frame (it stays pending)."""
        with self._wake:
            decision = match(r, self._buffer, time.monotonic(), self._targets.ids(), self._match_settings())
            if decision.verdict is Verdict.START:
                later = self._buffer.frames_after(decision.frame.seq,
                                                  next_frame.seq if next_frame is not None else None)
        if decision.verdict is Verdict.WAIT:
            return False
        if decision.verdict is Verdict.REJECT:
            self._refuse(r, decision.reason, decision.message, out)
            return True
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
        # live tracking would have emitted on them; a stop ends it between frames.
        for f in later:
            if not self._accepting:
                LOG.info(f"target {tid!r}: catch-up stopped (the node is stopping); it resumes on the next frame")
                break
            self._track_on(f, [tid], out)
        return True

    def _refuse(self, r: Request | Cancel, reason: Reason, message: str, out: StepOutput) -> None:
        unlogged = self.telemetry.rejections.record(reason.value)
        kind = "cancel" if isinstance(r, Cancel) else "target request"
        if unlogged is not None:
            LOG.warning(f"{kind} {r.target_id!r} refused ({reason.value}): {message}{suffix(unlogged)}")
        if isinstance(r, Cancel):
            out.answer(r.answer(False, [], message))
            return
        out.events.append(Event(r.target_id, TrackEventType.REJECTED, r.box, reason=message, header=r.header))
        out.answer(r.answer(False, r.target_id, message))

    def _cancel(self, c: Cancel, out: StepOutput) -> bool:
        ids = [c.target_id] if c.target_id else self._targets.ids()
        unknown = [i for i in ids if i not in self._targets]
        if unknown:
            out.answer(c.answer(False, [], f"no active target with id {unknown[0]!r}"))
            return True
        for tid in ids:
            self._drop(tid, "cancelled by request", out)
        out.answer(c.answer(True, ids, ""))
        return True

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

    def _track_on(self, frame: Frame, ids: list[str], out: StepOutput) -> list[TargetResult]:
        """Track ``ids`` on ``frame`` (one batched call) with their events; a target whose box
        belongs to another image geometry is restarted or cancelled first (the module docstring)."""
        same = []
        for tid in ids:
            if self._targets.get(tid).geometry == frame.geometry:
                same.append(tid)
            else:
                self._follow_new_geometry(tid, frame, out)
        results = self._targets.track(frame, same)
        for res in results:
            self._event_of(res, frame, out)
        return results

    def _follow_new_geometry(self, tid: str, frame: Frame, out: StepOutput) -> None:
        record, new = self._targets.get(tid), frame.geometry
        old = record.geometry
        if old.frame_id != new.frame_id:
            self._drop(tid, f"the image's frame_id changed from {old.frame_id!r} to {new.frame_id!r}: its box "
                            f"belongs to the other camera's image", out)
            return
        sx, sy = new.width / old.width, new.height / old.height
        box = record.box * np.array([sx, sy, sx, sy])
        try:
            self._targets.start(frame, box, tid, record.label)
        except ValueError as exc:  # the scaled box does not fit the new image
            self._drop(tid, f"the image size changed from {old.width}x{old.height} to {new.width}x{new.height} "
                            f"and the scaled box could not restart it: {exc}", out)
            return
        reason = (f"restarted: the image size changed from {old.width}x{old.height} to {new.width}x{new.height}; "
                  f"box scaled")
        out.events.append(Event(tid, TrackEventType.INITIALIZED, box, reason=reason, header=frame.header))
        LOG.info(f"target {tid!r} {reason}")

    def _track(self, frame: Frame, out: StepOutput) -> None:
        ids = self._targets.due(frame.seq)
        t0 = time.perf_counter()
        results = self._track_on(frame, ids, out)
        infer_s = time.perf_counter() - t0
        out.tracks = [self._targets.get(tid).track() for tid in ids if tid in self._targets]
        out.infer_s = infer_s if results else None
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug(f"frame #{frame.seq} (stamp {frame.stamp_ns / NS_PER_S:.6f}, {frame.rgb.shape[1]}x"
                      f"{frame.rgb.shape[0]}): {len(results)} target(s) in {infer_s * 1e3:.1f} ms, "
                      f"{self._queue.dropped} frame(s) dropped so far")
