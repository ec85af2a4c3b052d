"""Realistic absences made inside the validation videos, for choosing a presence confidence.

A confidence that tells a present target from an absent one has to be chosen on absences like the
real ones: the target walks out of view, hides behind something, or the camera looks elsewhere,
and the tracker keeps looking at the *same scene* without it. Frames of another video (the old
validation absences) differ from the target in every way and are too easy to tell apart. The
validation videos of ``shared/data/train`` hold few real absences (NaN rows), so each video also
yields one made-up absence episode per :data:`KINDS` entry, on the video's own frames (its
target-centred cuts pasted back, :mod:`stark_ros.datasets.cuts`):

* ``erased``: the target (with a margin) is covered by the patch of scene beside it, its seams
  feathered: the target is gone from an unchanged scene.
* ``occluded``: the target is covered by another video's target, scaled to its box: something
  else now stands where the target was (an occluder, a distractor).
* ``away``: the target is erased and the whole frame moved by :data:`AWAY_SHIFT` box sizes: the
  camera looks at the scene beside the target (the cuts hold about 4 box sizes of context; the
  side with the most of it is taken).

The episode starts a third into the video and lasts :data:`EPISODE_SHARE` of it (at most
:data:`MAX_EPISODE_FRAMES` frames); its ground truth is NaN. After it the target is back as it was
(the video continues) for at most :data:`FRAMES_AFTER` frames. Nothing random: every run makes the
same frames.

The trainer makes the same kinds of absence on the training videos (:func:`make_absence`, one
frame at a time) as negatives for the score head (:mod:`stark_ros.training.feature_cache`), so the
head learns "the target is not in this crop" from scenes that still hold everything but the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stark_ros.datasets import Sequence
from stark_ros.datasets.cuts import CANVAS_FILL

KINDS = ("erased", "occluded", "away")
EPISODE_START_SHARE = 1 / 3
EPISODE_SHARE = 0.2
MAX_EPISODE_FRAMES = 40
FRAMES_AFTER = 40
# The cover reaches this share of the box's size beyond each side: hides the target's rim too.
COVER_MARGIN = 0.25
# Width of the cover's feathered rim, as a share of the covered region's shorter side.
FEATHER_SHARE = 0.15
# "away": the frame is moved this many box sizes (sqrt(w*h)): past the search region's half side
# (2.5 box sizes at the default search factor 5), within the cuts' 4 box sizes of context.
AWAY_SHIFT = 3.0
# The view judged for real scene when choosing where to look away: a search region's side (box sizes).
AWAY_VIEW = 5.0
# Directions to look for scene to cover the target with (or to move the frame by).
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def cover_region(box, shape) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the box grown by :data:`COVER_MARGIN`, clipped to a frame of ``shape``."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = int(np.floor(x - COVER_MARGIN * w)), int(np.floor(y - COVER_MARGIN * h))
    x1, y1 = int(np.ceil(x + w * (1 + COVER_MARGIN))), int(np.ceil(y + h * (1 + COVER_MARGIN)))
    height, width = shape[:2]
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def feather_mask(height: int, width: int) -> np.ndarray:
    """(h, w, 1) weights: 1 inside, falling linearly to 0 over the rim, so a pasted patch has no hard seam."""
    rim = max(1.0, FEATHER_SHARE * min(height, width))
    ys = np.minimum(np.arange(height) + 1, height - np.arange(height)) / rim
    xs = np.minimum(np.arange(width) + 1, width - np.arange(width)) / rim
    return np.clip(np.minimum(ys[:, None], xs[None, :]), 0.0, 1.0)[..., None]


def blend(frame: np.ndarray, patch: np.ndarray, region) -> np.ndarray:
    x0, y0, x1, y1 = region
    out = frame.copy()
    weight = feather_mask(y1 - y0, x1 - x0)
    inside = out[y0:y1, x0:x1].astype(np.float64)
    out[y0:y1, x0:x1] = np.round(weight * patch + (1 - weight) * inside).astype(np.uint8)
    return out


def _blank_share(patch: np.ndarray) -> float:
    """Share of a patch that is canvas fill (no cut ever reached it)."""
    return float(np.all(patch == CANVAS_FILL, axis=-1).mean()) if patch.size else 1.0


def scene_beside(frame: np.ndarray, region) -> np.ndarray:
    """The patch of the region's size right beside it, on the side with the most real scene."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    height, width = frame.shape[:2]
    best, best_blank = None, 2.0
    for dx, dy in DIRECTIONS:
        px, py = x0 + dx * w, y0 + dy * h
        if px < 0 or py < 0 or px + w > width or py + h > height:
            continue
        patch = frame[py:py + h, px:px + w]
        blank = _blank_share(patch)
        if blank < best_blank:
            best, best_blank = patch, blank
    if best is None:
        # No neighbour fits inside the frame (a box nearly as large as the frame): the frame's mean colour.
        best = np.broadcast_to(frame.reshape(-1, 3).mean(axis=0), (h, w, 3))
    return best.astype(np.float64)


def erase(frame: np.ndarray, box) -> np.ndarray:
    region = cover_region(box, frame.shape)
    if region[2] <= region[0] or region[3] <= region[1]:
        return frame
    return blend(frame, scene_beside(frame, region), region)


def occlude(frame: np.ndarray, box, occluder: np.ndarray) -> np.ndarray:
    region = cover_region(box, frame.shape)
    x0, y0, x1, y1 = region
    if x1 <= x0 or y1 <= y0:
        return frame
    patch = cv2.resize(occluder, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    return blend(frame, patch, region)


def look_away(frame: np.ndarray, box) -> np.ndarray:
    """The target erased, then the frame moved by :data:`AWAY_SHIFT` box sizes, towards the side
    whose view (a search region's worth around the box) holds the most real scene; edges replicated."""
    erased = erase(frame, box)
    x, y, w, h = (float(v) for v in box)
    height, width = frame.shape[:2]
    size = float(np.sqrt(w * h))
    side, view = AWAY_SHIFT * size, AWAY_VIEW * size
    cx, cy = x + w / 2, y + h / 2

    def blank(d) -> float:
        # What will be seen around the box once moved: the view centred `side` pixels away from it.
        vx, vy = cx + d[0] * side, cy + d[1] * side
        x0, y0 = max(0, int(vx - view / 2)), max(0, int(vy - view / 2))
        x1, y1 = min(width, int(vx + view / 2)), min(height, int(vy + view / 2))
        inside = max(0, x1 - x0) * max(0, y1 - y0)
        return 1.0 - (1.0 - _blank_share(erased[y0:y1, x0:x1])) * inside / view ** 2 if inside else 1.0

    dx, dy = min(DIRECTIONS, key=blank)
    shift = np.float64([[1, 0, -dx * side], [0, 1, -dy * side]])
    return cv2.warpAffine(erased, shift, (width, height), borderMode=cv2.BORDER_REPLICATE)


def make_absence(frame: np.ndarray, box, kind: str, occluder: np.ndarray | None = None) -> np.ndarray:
    """``frame`` with its target (at ``box``) made absent in the way ``kind`` names (see :data:`KINDS`)."""
    if kind == "erased":
        return erase(frame, box)
    if kind == "occluded":
        if occluder is None:
            raise ValueError("an occluded absence needs an occluder patch")
        return occlude(frame, box, occluder)
    if kind == "away":
        return look_away(frame, box)
    raise ValueError(f"unknown absence kind {kind!r}; known: {KINDS}")


def target_patch(seq: Sequence, index: int = 0) -> np.ndarray:
    """The target's pixels in one frame (its box, clipped to the frame)."""
    frame = seq.frame(index)
    x, y, w, h = seq.boxes[index]
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(frame.shape[1], int(np.ceil(x + w))), min(frame.shape[0], int(np.ceil(y + h)))
    return np.ascontiguousarray(frame[y0:y1, x0:x1])


def episode_span(length: int) -> tuple[int, int]:
    """(first, last) frame of the made-up absence of a video of ``length`` frames."""
    first = max(1, int(length * EPISODE_START_SHARE))
    frames = max(1, min(MAX_EPISODE_FRAMES, int(length * EPISODE_SHARE)))
    return first, min(length - 1, first + frames - 1)


@dataclass
class AbsenceSequence(Sequence):
    """A validation video cut short after a made-up absence episode of ``kind`` (frames ``first``
    to ``last``, ground truth NaN there)."""

    base: Sequence | None = None
    kind: str = "erased"
    first: int = 0
    last: int = 0
    occluder: np.ndarray | None = None

    def frame(self, index: int) -> np.ndarray:
        frame = self.base.frame(index)
        if not self.first <= index <= self.last:
            return frame
        box = self.base.boxes[index]
        if not np.all(np.isfinite(box)):
            return frame      # the target is already gone in the video itself
        return make_absence(frame, box, self.kind, self.occluder)


def with_absence(seq: Sequence, kind: str, occluder: np.ndarray | None = None) -> AbsenceSequence:
    if kind not in KINDS:
        raise ValueError(f"unknown absence kind {kind!r}; known: {KINDS}")
    if kind == "occluded" and occluder is None:
        raise ValueError("an occluded absence needs an occluder patch")
    first, last = episode_span(len(seq))
    end = min(len(seq), last + 1 + FRAMES_AFTER)
    boxes = seq.boxes[:end].copy()
    boxes[first:last + 1] = np.nan
    return AbsenceSequence(name=f"{seq.name}+{kind}", frames=seq.frames[:end], boxes=boxes,
                           attributes={"video": seq.name, "kind": kind}, base=seq, kind=kind, first=first,
                           last=last, occluder=occluder)


def realistic_absences(videos: list[Sequence], kinds=KINDS) -> list[Sequence]:
    """Every video as it is (its real absences, if any) and once per made-up kind; an occluded
    video is covered by the next video's target."""
    out = []
    for k, seq in enumerate(videos):
        seq.attributes.setdefault("video", seq.name)
        seq.attributes.setdefault("kind", "real")
        out.append(seq)
        for kind in kinds:
            occluder = target_patch(videos[(k + 1) % len(videos)]) if kind == "occluded" else None
            out.append(with_absence(seq, kind, occluder))
    return out
