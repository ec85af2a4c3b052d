"""The node's outputs as messages: results -> ``TrackedObject``, events -> ``TrackEvent`` (boxes
through :func:`stark_ros.interface.box_to_msg`, shared with the node's clients)."""

from __future__ import annotations

import math

import numpy as np

from stark_ros.interface import box_to_msg
from stark_ros.msg import TrackedObject, TrackEvent
from stark_ros.tracking.lost import TargetState, TrackEventType

STATE_TO_MSG = {TargetState.TRACKING: TrackedObject.STATE_TRACKING, TargetState.LOST: TrackedObject.STATE_LOST}
EVENT_TO_MSG = {
    TrackEventType.INITIALIZED: TrackEvent.INITIALIZED,
    TrackEventType.LOST: TrackEvent.LOST,
    TrackEventType.REACQUIRED: TrackEvent.REACQUIRED,
    TrackEventType.CANCELLED: TrackEvent.CANCELLED,
    TrackEventType.REJECTED: TrackEvent.REJECTED,
}


def tracked_object(target_id: str, label: str, box, score: float, state: TargetState,
                   frames_since_confident: int) -> TrackedObject:
    obj = TrackedObject()
    obj.id = target_id
    obj.label = label
    obj.bbox = box_to_msg(box)
    obj.score = float(score) if not math.isnan(score) else math.nan
    obj.state = STATE_TO_MSG[state]
    obj.frames_since_confident = int(frames_since_confident)
    return obj


def track_event(header, target_id: str, event: TrackEventType, box=None, score: float = math.nan,
                reason: str = "") -> TrackEvent:
    msg = TrackEvent()
    msg.header = header
    msg.id = target_id
    msg.type = EVENT_TO_MSG[event]
    if box is not None and np.all(np.isfinite(np.asarray(box, dtype=np.float64))):
        msg.bbox = box_to_msg(box)
    msg.score = float(score)
    msg.reason = reason
    return msg
