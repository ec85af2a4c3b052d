"""A ring buffer of recent frames, looked up by stamp (for requests drawn on an older frame)."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from enum import Enum

import numpy as np


@dataclass(frozen=True)
class Frame:
    stamp_ns: int
    frame_id: str
    rgb: np.ndarray
    received_ns: int


class Lookup(str, Enum):
    FOUND = "found"
    NEWER_THAN_BUFFER = "the stamp is newer than the newest frame"
    OLDER_THAN_BUFFER = "the stamp is older than the oldest buffered frame"
    NO_MATCH = "no buffered frame has that stamp (within the tolerance)"
    EMPTY = "no frame has been received yet"


class FrameBuffer:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("the frame buffer needs room for at least one frame")
        self._frames: collections.deque[Frame] = collections.deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._frames)

    def append(self, frame: Frame) -> None:
        self._frames.append(frame)

    def clear(self) -> None:
        self._frames.clear()

    @property
    def newest(self) -> Frame | None:
        return self._frames[-1] if self._frames else None

    def find(self, stamp_ns: int, tolerance_ns: int) -> tuple[Lookup, Frame | None]:
        if not self._frames:
            return Lookup.EMPTY, None
        if stamp_ns > self._frames[-1].stamp_ns + tolerance_ns:
            return Lookup.NEWER_THAN_BUFFER, None
        if stamp_ns < self._frames[0].stamp_ns - tolerance_ns:
            return Lookup.OLDER_THAN_BUFFER, None
        best = min(self._frames, key=lambda f: abs(f.stamp_ns - stamp_ns))
        if abs(best.stamp_ns - stamp_ns) > tolerance_ns:
            return Lookup.NO_MATCH, None
        return Lookup.FOUND, best

    def frames_between(self, after_ns: int, before_ns: int | None) -> list[Frame]:
        """Buffered frames with after < stamp (< before, when given), oldest first."""
        return [f for f in self._frames if f.stamp_ns > after_ns and (before_ns is None or f.stamp_ns < before_ns)]
