"""An appearance score: how much the tracked box still looks like the target did at initialisation.

The score of a model whose score head cannot tell a present target from an absent one (STARK-Lite
trained on this project's small data set, see models/default/README.md) is replaced by this one
when its export says ``score_source: appearance``. It compares colour histograms (hue, saturation,
value) of the tracked box and of the first box by histogram intersection: 1 for identical colour
distributions, 0 for disjoint ones (a black frame, a box on plain background of another colour).
"""

from __future__ import annotations

import cv2
import numpy as np

from stark_ros.core.boxes import scale_about_centre

# Coarse bins: robust to small lighting changes and to the background inside a box.
HSV_BINS = (8, 4, 4)
# OpenCV's 8-bit HSV: hue in [0, 180), saturation and value in [0, 256).
HSV_RANGES = (0, 180, 0, 256, 0, 256)
# Only the central part of a box (this share of its width and height) is compared: a box is
# usually a little loose, and its rim shows background rather than the target.
CORE_SHARE = 0.6


def box_histogram(frame: np.ndarray, box) -> np.ndarray:
    """Normalised HSV histogram of the central pixels of ``box`` (x, y, w, h) inside the RGB
    ``frame``; all zeros when that part of the box holds no pixel of the frame."""
    empty = np.zeros(int(np.prod(HSV_BINS)), dtype=np.float64)
    height, width = frame.shape[:2]
    if not np.all(np.isfinite(np.asarray(box, dtype=np.float64))):
        return empty
    x, y, w, h = (float(v) for v in scale_about_centre(box, CORE_SHARE))
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        return empty
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(HSV_BINS), list(HSV_RANGES)).ravel().astype(np.float64)
    return hist / hist.sum()


class AppearanceModel:
    """The target's first look; :meth:`similarity` scores later boxes against it, in [0, 1]."""

    def __init__(self, frame: np.ndarray, box):
        self.reference = box_histogram(frame, box)

    def similarity(self, frame: np.ndarray, box) -> float:
        return float(np.minimum(self.reference, box_histogram(frame, box)).sum())
