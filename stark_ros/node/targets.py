"""The node's per-target record, without ROS: one entry per tracked target holding everything the
node keeps about it (label, the last frame it was tracked on, its last result), so that starting,
tracking, catching up and dropping a target each touch one place."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stark_ros.tracking.lost import TargetState


@dataclass
class TargetRecord:
    target_id: str
    label: str
    box: np.ndarray
    last_seq: int                       # arrival number of the last frame this target was tracked on
    started_seq: int
    score: float = math.nan
    state: TargetState = TargetState.TRACKING
    frames_since_confident: int = 0
    frames_tracked: int = 0

    def update(self, seq: int, box, score: float, state: TargetState, frames_since_confident: int) -> None:
        self.last_seq = seq
        self.box = np.asarray(box, dtype=np.float64).copy()
        self.score = float(score)
        self.state = state
        self.frames_since_confident = int(frames_since_confident)
        self.frames_tracked += 1


@dataclass
class TargetTable:
    records: dict[str, TargetRecord] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, target_id: str) -> bool:
        return target_id in self.records

    def ids(self) -> list[str]:
        return list(self.records)

    def get(self, target_id: str) -> TargetRecord | None:
        return self.records.get(target_id)

    def start(self, target_id: str, label: str, box, seq: int) -> TargetRecord:
        """A new target (or a restart of an id in use: the old record is replaced)."""
        record = TargetRecord(target_id, label, np.asarray(box, dtype=np.float64).copy(), last_seq=seq,
                              started_seq=seq)
        self.records[target_id] = record
        return record

    def remove(self, target_id: str) -> TargetRecord | None:
        return self.records.pop(target_id, None)

    def clear(self) -> list[str]:
        ids = list(self.records)
        self.records.clear()
        return ids

    def due(self, seq: int) -> list[str]:
        """Targets not yet tracked on frame ``seq`` (catch-up may already have reached it)."""
        return [tid for tid, r in self.records.items() if r.last_seq < seq]
