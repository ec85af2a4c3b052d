"""Target-centred cuts (the layout of ``shared/data/train``) put back into whole-frame coordinates.

Each stored image there is only the part of the frame around the target, cut and scaled anew for
every frame (``crop.txt``: ``x0,y0,scale`` per image, stored pixel = (original pixel - x0) x scale),
so the stored images of a video do not line up: the target sits near the centre of each. To *track*
on such a video (the validation split of the trainer), every frame is pasted back where it came
from, on a canvas in the video's own coordinates scaled by one factor for the whole video; the
last few cuts are painted first (oldest first) so that the canvas around the current cut shows
recent scene content rather than a blank that would outline the target's window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stark_ros.datasets.base import Sequence, load_simple_sequence, read_boxes, read_frame_rgb

CROP_FILE = "crop.txt"
# Cuts painted under the current one (older first): enough to cover the canvas near the target.
CONTEXT_CUTS = 4
# Canvas colour where no cut ever reached (mid grey).
CANVAS_FILL = 114


@dataclass
class CutSequence(Sequence):
    """A sequence of cuts; :meth:`frame` returns the pasted-back canvas, ``boxes`` are in it."""

    offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # x0, y0, scale per frame
    canvas_scale: float = 1.0
    canvas_size: tuple[int, int] = (0, 0)  # width, height

    def frame(self, index: int) -> np.ndarray:
        width, height = self.canvas_size
        canvas = np.full((height, width, 3), CANVAS_FILL, np.uint8)
        for i in range(max(0, index - CONTEXT_CUTS), index + 1):
            self._paint(canvas, i)
        return canvas

    def _paint(self, canvas: np.ndarray, i: int) -> None:
        cut = read_frame_rgb(self.frames[i])
        x0, y0, scale = self.offsets[i]
        factor = self.canvas_scale / scale
        h, w = cut.shape[:2]
        out_w, out_h = max(1, round(w * factor)), max(1, round(h * factor))
        if (out_w, out_h) != (w, h):
            cut = cv2.resize(cut, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        left, top = round(x0 * self.canvas_scale), round(y0 * self.canvas_scale)
        ch, cw = canvas.shape[:2]
        x1, y1 = max(0, left), max(0, top)
        x2, y2 = min(cw, left + out_w), min(ch, top + out_h)
        if x2 > x1 and y2 > y1:
            canvas[y1:y2, x1:x2] = cut[y1 - top:y2 - top, x1 - left:x2 - left]


def load_cut_sequence(seq_dir) -> CutSequence:
    """``<seq>/img`` + ``groundtruth.txt`` (boxes in each cut's pixels) + ``crop.txt``."""
    seq_dir = Path(seq_dir)
    plain = load_simple_sequence(seq_dir)
    offsets = read_boxes(seq_dir / CROP_FILE, columns=3)[: len(plain)]
    if len(offsets) < len(plain):
        raise ValueError(f"{seq_dir}: {len(offsets)} {CROP_FILE} lines for {len(plain)} frames")
    if np.any(offsets[:, 2] <= 0):
        raise ValueError(f"{seq_dir}/{CROP_FILE}: scales must be > 0")
    # One canvas scale for the whole video: the median cut scale keeps the canvas near the cuts'
    # own resolution (little up- or downsampling).
    canvas_scale = float(np.median(offsets[:, 2]))
    # Each cut's extent in original pixels: where it starts plus its size unscaled.
    sizes = np.asarray([read_frame_rgb(p).shape[1::-1] for p in plain.frames], np.float64)
    right = float(np.max(offsets[:, 0] + sizes[:, 0] / offsets[:, 2]))
    bottom = float(np.max(offsets[:, 1] + sizes[:, 1] / offsets[:, 2]))
    canvas = (int(np.ceil(right * canvas_scale)), int(np.ceil(bottom * canvas_scale)))
    boxes = plain.boxes.copy()
    boxes[:, :2] = boxes[:, :2] / offsets[:, 2:3] + offsets[:, :2]
    boxes[:, 2:] = boxes[:, 2:] / offsets[:, 2:3]
    boxes *= canvas_scale
    return CutSequence(name=plain.name, frames=plain.frames, boxes=boxes, offsets=offsets,
                       canvas_scale=canvas_scale, canvas_size=canvas)


def load_cuts(root) -> list[CutSequence]:
    root = Path(root)
    dirs = sorted(d for d in root.iterdir() if (d / "img").is_dir() and (d / CROP_FILE).is_file())
    if not dirs:
        raise FileNotFoundError(f"{root} holds no target-centred cuts (<seq>/img + groundtruth.txt + {CROP_FILE})")
    return [load_cut_sequence(d) for d in dirs]
