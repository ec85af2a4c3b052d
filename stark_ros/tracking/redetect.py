"""Re-detection while LOST (numpy only): finding a target again away from where it was lost.

While a target is LOST its search crop stays local (:mod:`stark_ros.tracking.lost`), so a target that
leaves the view and comes back elsewhere, or that a panning camera moved by more than half a search
region, is never seen again. The re-detector looks at the whole frame instead: it cuts the frame into
*tiles*, square crops of the target's own search-crop size (so the target appears at the scale the
network was trained on), and sends them through the tracking graph in one batched engine call, with
the target's templates. Each tile returns the network's box and its confidence (the policy's score,
judged as the lost logic judges it). The best box above ``candidate_threshold`` becomes the target's
*candidate*: from the next frame on, the target's own search crop is centred on it, and it becomes the
target (REACQUIRED, with the candidate's box) once its confidence has held on ``confirm_frames``
frames in a row, the tile's frame included; one frame below drops it and the scan goes on.

Cost is bounded: re-detection runs on every ``every_frames``-th frame and cuts at most
``crops_per_frame`` tiles on it, shared by all LOST targets (in turns, so that none starves); a target
whose tiles do not fit into one frame's budget is scanned over several frames, the tiles nearest to
where it was last seen first. A target on probation (a candidate under confirmation) takes no tiles.

The settings belong to a model, as its lost thresholds do: the exporter writes them into its metadata
(:data:`stark_ros.tracking.model_metadata.KEY_REDETECT_SETTINGS`), and the runtime takes them as its
defaults; ``RedetectSettings()`` is for a model without.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from stark_ros.core.geometry import crop_side


@dataclass(frozen=True)
class RedetectSettings:
    # Tiles cut per re-detection frame, shared by all LOST targets (0: no re-detection).
    crops_per_frame: int = 4
    # Re-detection runs on every this-many-th frame (1: every frame).
    every_frames: int = 1
    # Frames in a row a candidate's confidence must hold, the tile's frame included, before it
    # becomes the target.
    confirm_frames: int = 3
    # Confidence (judged like the lost thresholds: relative to the target's own first scores where
    # the lost logic is) a tile's box needs to become a candidate, and a candidate to stay one.
    candidate_threshold: float = 0.5
    # Distance between neighbouring tile centres, as a share of a tile's side: below 1 the tiles
    # overlap, so that a target anywhere lies well inside some tile. 0.7: a target is at most 0.35
    # tile sides (1.75 target sizes at search factor 5) from some tile's centre, as far as the
    # default recipe's search-centre jitter (3.5 target sizes wide) moved it in training.
    tile_stride: float = 0.7

    def __post_init__(self):
        for name in ("crops_per_frame",):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("every_frames", "confirm_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.candidate_threshold <= 1.0 or math.isnan(self.candidate_threshold):
            raise ValueError(f"candidate_threshold must lie in [0, 1], got {self.candidate_threshold}")
        if not 0.0 < self.tile_stride <= 1.0:
            raise ValueError(f"tile_stride must lie in (0, 1], got {self.tile_stride}")

    @property
    def enabled(self) -> bool:
        return int(self.crops_per_frame) > 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RedetectSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown re-detection settings {unknown}; known: {sorted(known)}")
        return cls(**d)


# Re-detection off: what a caller passes to keep LOST targets to their local search.
NO_REDETECTION = RedetectSettings(crops_per_frame=0)


def tile_centres(frame_shape, side: int, stride_share: float) -> list[tuple[float, float]]:
    """Centres of square tiles of ``side`` pixels over a frame of ``frame_shape``, at most
    ``stride = stride_share * side`` apart along each axis and evenly spread from ``stride / 2``
    inside one edge to ``stride / 2`` inside the other, so that every frame pixel, the edges' too
    (where a target comes back into view), lies within ``stride / 2`` of a tile's centre; tiles
    reaching past the frame are padded as any search crop is. One centred tile along an axis no
    longer than the stride."""
    height, width = frame_shape[:2]
    stride = stride_share * side

    def axis(length: int) -> list[float]:
        if length <= stride:
            return [length / 2]
        count = math.ceil(length / stride)
        return list(np.linspace(stride / 2, length - stride / 2, count))

    return [(cx, cy) for cy in axis(height) for cx in axis(width)]


def tile_boxes(frame_shape, target_box, search_factor: float, stride_share: float) -> list[np.ndarray]:
    """The tiles of a target as boxes of its size (x, y, w, h) centred on each tile centre (a search
    crop cut around such a box is the tile), nearest to ``target_box``'s centre first."""
    _, _, w, h = (float(v) for v in target_box)
    side = crop_side(target_box, search_factor)
    cx0, cy0 = float(target_box[0]) + w / 2, float(target_box[1]) + h / 2
    centres = sorted(tile_centres(frame_shape, side, stride_share),
                     key=lambda c: (c[0] - cx0) ** 2 + (c[1] - cy0) ** 2)
    return [np.array([cx - w / 2, cy - h / 2, w, h]) for cx, cy in centres]


@dataclass
class Candidate:
    """A box re-detection found, under confirmation: ``held`` frames so far."""

    box: np.ndarray
    score: float
    held: int = 1


@dataclass
class _Scan:
    """One LOST target's re-detection state."""

    next_tile: int = 0
    candidate: Candidate | None = None


@dataclass(frozen=True)
class TileRequest:
    target_id: str
    box: np.ndarray       # the search crop is cut around this box (the target's size, on the tile centre)


class Redetector:
    """Schedules tiles over LOST targets within the budget and keeps their candidates. The policy
    calls :meth:`plan` once per frame (after its tracking step), runs the tiles, and reports each
    target's best tile with :meth:`offer`; it asks :meth:`candidate` where to search next and reports
    the candidate's confidence every frame with :meth:`confirm`."""

    def __init__(self, settings: RedetectSettings):
        self.settings = settings
        self._scans: dict[str, _Scan] = {}
        self._frame = 0
        self._turn = 0
        # Tiles cut since start (what the budget bounds).
        self.tiles_cut = 0

    def forget(self, target_id: str) -> None:
        """The target is tracked again, restarted or removed: its scan starts afresh next time."""
        self._scans.pop(target_id, None)

    def candidate(self, target_id: str) -> Candidate | None:
        scan = self._scans.get(target_id)
        return None if scan is None else scan.candidate

    def confirm(self, target_id: str, box, judged_score: float, score: float) -> bool | None:
        """The candidate's frame: True once it has held ``confirm_frames`` frames (it becomes the
        target; the scan is forgotten), False when its confidence fell (dropped), None while it holds."""
        scan = self._scans[target_id]
        if judged_score <= self.settings.candidate_threshold:
            scan.candidate = None
            return False
        scan.candidate = Candidate(np.asarray(box, dtype=np.float64).copy(), score, scan.candidate.held + 1)
        if scan.candidate.held >= self.settings.confirm_frames:
            self.forget(target_id)
            return True
        return None

    def plan(self, frame_shape, lost: list[tuple[str, np.ndarray]], search_factor: float) -> list[TileRequest]:
        """This frame's tiles for the LOST targets ``lost`` ((id, last confident box), in a stable
        order) not on probation: none on frames between re-detection frames, at most
        ``crops_per_frame`` in all, dealt one at a time to the targets in turn."""
        s = self.settings
        self._frame += 1
        if not s.enabled or (self._frame - 1) % s.every_frames:
            return []
        scanning = [(tid, box) for tid, box in lost if self.candidate(tid) is None]
        if not scanning:
            return []
        tiles = {tid: tile_boxes(frame_shape, box, search_factor, s.tile_stride) for tid, box in scanning}
        # Each target takes at most one sweep of its tiles per frame.
        wanted = {tid: len(t) for tid, t in tiles.items()}
        order = [scanning[(self._turn + k) % len(scanning)][0] for k in range(len(scanning))]
        self._turn = (self._turn + 1) % len(scanning)
        requests: list[TileRequest] = []
        while len(requests) < s.crops_per_frame and any(wanted.values()):
            for tid in order:
                if len(requests) >= s.crops_per_frame:
                    break
                if not wanted[tid]:
                    continue
                scan = self._scans.setdefault(tid, _Scan())
                requests.append(TileRequest(tid, tiles[tid][scan.next_tile % len(tiles[tid])]))
                scan.next_tile += 1
                wanted[tid] -= 1
        self.tiles_cut += len(requests)
        return requests

    def offer(self, target_id: str, box, judged_score: float, score: float) -> Candidate | None:
        """A target's best tile of this frame: a candidate (held once) when its confidence is above
        ``candidate_threshold``."""
        if judged_score <= self.settings.candidate_threshold:
            return None
        candidate = Candidate(np.asarray(box, dtype=np.float64).copy(), score)
        self._scans.setdefault(target_id, _Scan()).candidate = candidate
        return candidate
