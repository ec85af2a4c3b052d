"""The node's targets, without ROS: one table that owns them. Each entry holds what the node keeps
about a target (label, the last frame it was tracked on, its last result); the tracking policy's
own per-target state (templates, lost monitor) is started, tracked and dropped only through this
table, so that the two never disagree about which targets exist."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stark_ros.node.frame_buffer import Frame, Geometry
from stark_ros.tracking.lost import TargetState
from stark_ros.tracking.policy import TargetResult, TrackingPolicy


@dataclass(frozen=True)
class Track:
    """One target's state as the node reports it (a ``TrackedObject``)."""

    target_id: str
    label: str
    box: np.ndarray
    score: float
    state: TargetState
    frames_since_confident: int


@dataclass
class TargetRecord:
    target_id: str
    label: str
    box: np.ndarray
    last_seq: int                       # arrival number of the last frame this target was tracked on
    started_seq: int
    geometry: Geometry                  # of the frames its box refers to
    score: float = math.nan
    state: TargetState = TargetState.TRACKING
    frames_since_confident: int = 0
    frames_tracked: int = 0

    def update(self, seq: int, result: TargetResult) -> None:
        self.last_seq = seq
        self.box = np.asarray(result.box, dtype=np.float64).copy()
        self.score = float(result.score)
        self.state = result.state
        self.frames_since_confident = int(result.frames_since_confident)
        self.frames_tracked += 1

    def track(self) -> Track:
        return Track(self.target_id, self.label, self.box.copy(), self.score, self.state, self.frames_since_confident)


@dataclass
class TargetTable:
    policy: TrackingPolicy
    records: dict[str, TargetRecord] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, target_id: str) -> bool:
        return target_id in self.records

    def ids(self) -> list[str]:
        return list(self.records)

    def get(self, target_id: str) -> TargetRecord | None:
        return self.records.get(target_id)

    def start(self, frame: Frame, box, target_id: str, label: str) -> TargetRecord:
        """A new target on ``frame`` (or a restart of an id in use: the old one is replaced); an
        empty id gets the policy's next free one."""
        tid = self.policy.add_target(frame.rgb, box, target_id or None)
        record = TargetRecord(tid, label, np.asarray(box, dtype=np.float64).copy(), last_seq=frame.seq,
                              started_seq=frame.seq, geometry=frame.geometry)
        self.records[tid] = record
        return record

    def remove(self, target_id: str) -> TargetRecord | None:
        self.policy.remove_target(target_id)
        return self.records.pop(target_id, None)

    def clear(self) -> list[str]:
        ids = list(self.records)
        for tid in ids:
            self.remove(tid)
        return ids

    def due(self, seq: int) -> list[str]:
        """Targets not yet tracked on frame ``seq`` (catch-up may already have reached it)."""
        return [tid for tid, r in self.records.items() if r.last_seq < seq]

    def track(self, frame: Frame, target_ids: list[str]) -> list[TargetResult]:
        """Track ``target_ids`` into ``frame`` (one batched call) and keep each result in its record."""
        results = self.policy.update(frame.rgb, target_ids) if target_ids else []
        for result in results:
            self.records[result.target_id].update(frame.seq, result)
        return results

    def tracks(self) -> tuple[Track, ...]:
        return tuple(r.track() for r in self.records.values())
