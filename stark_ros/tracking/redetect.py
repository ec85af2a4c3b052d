"""Re-detection while LOST (numpy only): finding a target again away from where it was lost.

While a target is LOST its search crop stays local (:mod:`stark_ros.tracking.lost`), so a target that
leaves the view and comes back elsewhere, or that a panning camera moved by more than half a search
region, is never seen again. The re-detector looks at the whole frame instead: it cuts the frame into
*tiles*, square crops of the target's own search-crop size (so the target appears at the scale the
network was trained on), and sends them through the tracking graph in one batched engine call, with
the target's templates. Each tile returns the network's box and its confidence (the policy's score,
judged as the lost logic judges it). A box *counts* when its confidence is above
``candidate_threshold`` and beats the target's own search crop on the same frame (the lost logic's
search goes on unchanged, and where it finds the target it reacquires it there). The best tile that
counts becomes the target's *candidate*; from the next frame on, one more crop follows it, and it
becomes the target (REACQUIRED, with the candidate's box) once it has counted on ``confirm_frames``
frames in a row, the tile's frame included; one frame that does not count drops it and the scan
goes on. A colour or score-head confidence also rates look-alikes of the target highly for a frame
or two; the run of frames and the comparison with the target's own search keep those out.

Cost is bounded: at most ``crops_per_frame`` re-detection crops per frame, shared by all LOST
targets: first one per candidate (every frame), then, on every ``every_frames``-th frame with a LOST
target, tiles for the targets without a candidate, dealt in turns so that none starves. A target whose
tiles do not fit into one frame's budget is scanned over several frames, the tiles nearest to where it
was last seen first.

The settings belong to a model, as its lost thresholds do: the exporter writes them into its metadata
(:data:`stark_ros.tracking.model_metadata.KEY_REDETECT_SETTINGS`), and the runtime takes them as its
defaults; ``RedetectSettings()`` is for a model without.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from stark_ros.core.geometry import crop_side
from stark_ros.tracking.settings import check_shares, settings_from_dict


@dataclass(frozen=True)
class RedetectSettings:
    # Re-detection crops per frame (candidates' and tiles), shared by all LOST targets (0: no
    # re-detection).
    crops_per_frame: int = 4
    # Tiles are cut on every this-many-th frame with a LOST target (1: every frame).
    every_frames: int = 1
    # Frames in a row a candidate must count, the tile's frame included, before it becomes the target.
    confirm_frames: int = 3
    # Confidence (judged like the lost thresholds: relative to the target's own first scores where
    # the lost logic is) a re-detected box needs to count.
    candidate_threshold: float = 0.5
    # For a model whose confidence is not its score head's (score_source: appearance): the score
    # head's sigmoid a re-detected box needs as well (0: not asked). Look-alikes in colour are not
    # always look-alikes to the network, and the other way round.
    candidate_head_threshold: float = 0.0
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
        check_shares(self, ("candidate_threshold", "candidate_head_threshold"))
        if not 0.0 < self.tile_stride <= 1.0:
            raise ValueError(f"tile_stride must lie in (0, 1], got {self.tile_stride}")

    @property
    def enabled(self) -> bool:
        return int(self.crops_per_frame) > 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RedetectSettings:
        return settings_from_dict(cls, d, "re-detection settings")


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


@dataclass(frozen=True)
class Sighting:
    """What one re-detection crop found: the network's box in the frame and its confidence."""

    box: np.ndarray
    score: float
    follows_candidate: bool     # the crop was cut around the target's candidate (else: a tile)
    head: float = math.nan      # the score head's sigmoid where it is not the score (else NaN)


@dataclass
class _Scan:
    """One LOST target's re-detection state."""

    next_tile: int = 0
    candidate: Candidate | None = None


@dataclass(frozen=True)
class CropRequest:
    target_id: str
    box: np.ndarray            # the search crop is cut around this box (the target's size)
    follows_candidate: bool    # around the target's candidate (else: a tile)


class Redetector:
    """Schedules re-detection crops over LOST targets within the budget and keeps their candidates.
    Each frame the policy (after its tracking step) asks :meth:`plan` for the crops, runs them, and
    hands each LOST target's sightings to :meth:`judge`, which says when a candidate has held."""

    def __init__(self, settings: RedetectSettings):
        self.settings = settings
        self._scans: dict[str, _Scan] = {}
        self._frame = 0
        self._turn = 0
        # Re-detection crops cut since start (what the budget bounds).
        self.crops_cut = 0

    def forget(self, target_id: str) -> None:
        """The target is tracked again, restarted or removed: its scan starts afresh next time."""
        self._scans.pop(target_id, None)

    def candidate(self, target_id: str) -> Candidate | None:
        scan = self._scans.get(target_id)
        return None if scan is None else scan.candidate

    def plan(self, frame_shape, lost: list[tuple[str, np.ndarray]], search_factor: float) -> list[CropRequest]:
        """This frame's crops for the LOST targets ``lost`` ((id, last confident box), in a stable
        order), ``crops_per_frame`` at most: first one around each candidate (every frame: a
        candidate holds on frames in a row), then, on every ``every_frames``-th frame with a LOST
        target, tiles for the targets without a candidate, dealt one at a time in turns."""
        s = self.settings
        if not s.enabled:
            return []
        self._frame += 1
        requests = [CropRequest(tid, self._scans[tid].candidate.box, True)
                    for tid, _ in lost if self.candidate(tid) is not None][: s.crops_per_frame]
        scanning = [(tid, box) for tid, box in lost if self.candidate(tid) is None]
        if scanning and (self._frame - 1) % s.every_frames == 0:
            tiles = {tid: tile_boxes(frame_shape, box, search_factor, s.tile_stride) for tid, box in scanning}
            # Each target takes at most one sweep of its tiles per frame.
            wanted = {tid: len(t) for tid, t in tiles.items()}
            order = [scanning[(self._turn + k) % len(scanning)][0] for k in range(len(scanning))]
            self._turn = (self._turn + 1) % len(scanning)
            while len(requests) < s.crops_per_frame and any(wanted.values()):
                for tid in order:
                    if len(requests) >= s.crops_per_frame:
                        break
                    if not wanted[tid]:
                        continue
                    scan = self._scans.setdefault(tid, _Scan())
                    requests.append(CropRequest(tid, tiles[tid][scan.next_tile % len(tiles[tid])], False))
                    scan.next_tile += 1
                    wanted[tid] -= 1
        self.crops_cut += len(requests)
        return requests

    def judge(self, target_id: str, sightings: list[Sighting], own_score: float, judged) -> Candidate | None:
        """A LOST target's frame: ``sightings`` of its re-detection crops, ``own_score`` the
        confidence of its own search crop, ``judged`` the lost logic's judgement of a score. A
        sighting counts when its judged confidence is above ``candidate_threshold`` (its score
        head's above ``candidate_head_threshold`` where it has one) and it beats the target's own
        search (where that finds the target, the lost logic reacquires it there). The candidate's
        crop extends or ends its run; else the best tile starts one. Returns the candidate once it
        has held ``confirm_frames`` frames (the scan is then forgotten)."""
        s = self.settings

        def counts(sighting: Sighting) -> bool:
            return (judged(sighting.score) > s.candidate_threshold and sighting.score > own_score
                    and not sighting.head < s.candidate_head_threshold)

        scan = self._scans.setdefault(target_id, _Scan())
        if scan.candidate is not None:
            follow = next((x for x in sightings if x.follows_candidate), None)
            if follow is not None and counts(follow):
                scan.candidate = Candidate(follow.box.copy(), follow.score, scan.candidate.held + 1)
            else:
                scan.candidate = None
        else:
            tiles = [x for x in sightings if not x.follows_candidate and counts(x)]
            if tiles:
                best = max(tiles, key=lambda x: x.score)
                scan.candidate = Candidate(best.box.copy(), best.score)
        if scan.candidate is not None and scan.candidate.held >= s.confirm_frames:
            accepted = scan.candidate
            self.forget(target_id)
            return accepted
        return None
