"""The worker's outputs as messages: tracks -> ``TrackedObject``, events -> ``TrackEvent`` (boxes
through :func:`stark_ros.interface.box_to_msg`, shared with the node's clients), and the tracks drawn
on the frame for ``debug_image``."""

from __future__ import annotations

import math

import cv2
import numpy as np

from stark_ros.interface import box_to_msg
from stark_ros.msg import TrackedObject, TrackEvent
from stark_ros.node.targets import Track
from stark_ros.node.worker import Event
from stark_ros.tracking.lost import TargetState, TrackEventType

DEBUG_COLOURS = {TargetState.TRACKING: (0, 255, 0), TargetState.LOST: (255, 0, 0)}
DEBUG_FONT_SCALE = 0.45
DEBUG_TEXT_MIN_Y = 12
STATE_TO_MSG = {TargetState.TRACKING: TrackedObject.STATE_TRACKING, TargetState.LOST: TrackedObject.STATE_LOST}
EVENT_TO_MSG = {
    TrackEventType.INITIALIZED: TrackEvent.INITIALIZED,
    TrackEventType.LOST: TrackEvent.LOST,
    TrackEventType.REACQUIRED: TrackEvent.REACQUIRED,
    TrackEventType.CANCELLED: TrackEvent.CANCELLED,
    TrackEventType.REJECTED: TrackEvent.REJECTED,
}


def tracked_object(track: Track) -> TrackedObject:
    obj = TrackedObject()
    obj.id = track.target_id
    obj.label = track.label
    obj.bbox = box_to_msg(track.box)
    obj.score = float(track.score) if not math.isnan(track.score) else math.nan
    obj.state = STATE_TO_MSG[track.state]
    obj.frames_since_confident = int(track.frames_since_confident)
    return obj


def track_event(header, event: Event) -> TrackEvent:
    """``event`` as a message with ``header`` (the event's own, or the node's clock for one without)."""
    msg = TrackEvent()
    msg.header = header
    msg.id = event.target_id
    msg.type = EVENT_TO_MSG[event.type]
    if event.box is not None and np.all(np.isfinite(np.asarray(event.box, dtype=np.float64))):
        msg.bbox = box_to_msg(event.box)
    msg.score = float(event.score)
    msg.reason = event.reason
    return msg


def debug_image(rgb: np.ndarray, tracks) -> np.ndarray:
    """A copy of the frame with each track's box, id and score drawn (``debug_image``)."""
    img = rgb.copy()
    for t in tracks:
        x, y, w, h = (round(v) for v in t.box)
        colour = DEBUG_COLOURS[t.state]
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, 2)
        text = f"{t.target_id} {t.score:.2f}" + (" LOST" if t.state is TargetState.LOST else "")
        cv2.putText(img, text, (x, max(DEBUG_TEXT_MIN_Y, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, DEBUG_FONT_SCALE,
                    colour, 1, cv2.LINE_AA)
    return img
