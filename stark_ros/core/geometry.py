"""Box geometry and crops: the one implementation used by the PyTorch reference tracker, the ONNX
runtime, the trainer and the evaluation tools.

Conventions
-----------
* Frames are ``numpy.ndarray`` of shape (H, W, 3), dtype uint8, **RGB**.
* Boxes at every public boundary are ``(x, y, w, h)`` in frame pixels, float, top-left origin.
* Network boxes are ``(cx, cy, w, h)`` normalised to the search crop (0..1).

The crop reproduces the official STARK ``sample_target`` behaviour bit for bit (parity with the
official tracker depends on it), including two quirks that are kept on purpose:
Python's round-half-to-even for the crop origin, and one extra pixel of padding (the frame's last
row/column is dropped) whenever the crop reaches past the right or bottom border.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from stark_ros.core.boxes import centres, cxcywh_to_xywh

# Padding value of the crop outside the frame (black, as the official tracker pads).
CROP_PAD_VALUE = 0


class BoxProblem(str, Enum):
    """Why a box was refused; the value is the human-readable reason used in logs and events."""

    NOT_FINITE = "box has NaN or infinite values"
    NON_POSITIVE_SIZE = "box width or height is zero or negative"
    OUTSIDE_IMAGE = "box lies entirely outside the image"
    WRONG_SHAPE = "box must have exactly four values (x, y, w, h)"


class InvalidBoxError(ValueError):
    """A box that cannot start or continue a track. ``problem`` says which rule it broke."""

    def __init__(self, problem: BoxProblem, box=None):
        self.problem = problem
        self.box = box
        super().__init__(f"{problem.value}: {box!r}")


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def validate_box(box, frame_shape) -> np.ndarray:
    """Return ``box`` as float64 (x, y, w, h) or raise :class:`InvalidBoxError` saying why not.

    A box partly outside the frame is accepted (targets enter and leave the view); a box with no
    overlap with the frame at all is not, because there is nothing in the image to learn it from.
    """
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,):
        raise InvalidBoxError(BoxProblem.WRONG_SHAPE, box)
    if not np.all(np.isfinite(b)):
        raise InvalidBoxError(BoxProblem.NOT_FINITE, box)
    x, y, w, h = b
    if w <= 0 or h <= 0:
        raise InvalidBoxError(BoxProblem.NON_POSITIVE_SIZE, box)
    height, width = int(frame_shape[0]), int(frame_shape[1])
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise InvalidBoxError(BoxProblem.OUTSIDE_IMAGE, box)
    return b


def clip_box(box, height: int, width: int, margin: float = 0.0) -> np.ndarray:
    """Clip an (x, y, w, h) box into the frame, keeping at least ``margin`` pixels of it inside and
    a size of at least ``margin`` (the official tracker's rule, so a box never collapses)."""
    x1, y1, w, h = (float(v) for v in box)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0.0, x1), width - margin)
    x2 = min(max(margin, x2), float(width))
    y1 = min(max(0.0, y1), height - margin)
    y2 = min(max(margin, y2), float(height))
    return np.array([x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Crops
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Crop:
    """A square crop around a box, resized to the network's input size.

    ``patch``: (S, S, 3) uint8 RGB; ``pad_mask``: (S, S) bool, True where the crop lies outside
    the frame; ``resize_factor``: output size / crop side in frame pixels; ``left``, ``top``: the
    crop's top-left corner in frame pixels.
    """

    patch: np.ndarray
    pad_mask: np.ndarray
    resize_factor: float
    left: int = 0
    top: int = 0

    def box_to_crop(self, box) -> np.ndarray:
        """A frame (x, y, w, h) box in this crop's output pixels."""
        x, y, w, h = (float(v) for v in box)
        f = self.resize_factor
        return np.array([(x - self.left) * f, (y - self.top) * f, w * f, h * f], dtype=np.float64)


def crop_side(box, factor: float) -> int:
    """Side in frame pixels of the square crop around ``box`` (context ``factor`` x sqrt(area))."""
    _, _, w, h = (float(v) for v in box)
    return math.ceil(math.sqrt(w * h) * factor)


def crop_around(frame: np.ndarray, box, factor: float, output_size: int) -> Crop:
    """Cut a square of side ``ceil(sqrt(w*h) * factor)`` centred on ``box``, pad it where it leaves
    the frame, and resize it to ``output_size``. See the module docstring for the exact rules."""
    x, y, w, h = (float(v) for v in box)
    side = crop_side(box, factor)
    if side < 1:
        raise InvalidBoxError(BoxProblem.NON_POSITIVE_SIZE, box)
    height, width = frame.shape[:2]
    # Python's round() (half to even) on purpose: the official crop origin uses it.
    left = round(x + 0.5 * w - side * 0.5)
    top = round(y + 0.5 * h - side * 0.5)
    right, bottom = left + side, top + side
    if right <= 0 or bottom <= 0 or left >= width - 1 or top >= height - 1:
        # No frame pixel inside (the frame's last row/column never is, see above). The general path
        # below would slice with negative ends here and wrap frame content into the crop.
        return Crop(patch=np.full((output_size, output_size, *frame.shape[2:]), CROP_PAD_VALUE, frame.dtype),
                    pad_mask=np.ones((output_size, output_size), dtype=bool),
                    resize_factor=output_size / side, left=left, top=top)
    pad_left = max(0, -left)
    pad_top = max(0, -top)
    # "+ 1": the official crop drops the frame's last column/row once the crop reaches it.
    pad_right = max(right - width + 1, 0)
    pad_bottom = max(bottom - height + 1, 0)
    inside = frame[top + pad_top:bottom - pad_bottom, left + pad_left:right - pad_right]
    padded = cv2.copyMakeBorder(inside, pad_top, pad_bottom, pad_left, pad_right,
                                cv2.BORDER_CONSTANT, value=CROP_PAD_VALUE)
    mask = np.ones(padded.shape[:2], dtype=np.float64)
    mask[pad_top:padded.shape[0] - pad_bottom, pad_left:padded.shape[1] - pad_right] = 0.0
    patch = cv2.resize(padded, (output_size, output_size))
    # Any pixel the interpolation touched with padding counts as padding.
    pad_mask = cv2.resize(mask, (output_size, output_size)).astype(bool)
    return Crop(patch=patch, pad_mask=pad_mask, resize_factor=output_size / side, left=left, top=top)


def map_box_back(pred_cxcywh, prev_box, resize_factor: float, search_size: int) -> np.ndarray:
    """Map a network box (cx, cy, w, h normalised to the search crop) into frame (x, y, w, h),
    given the box the search crop was centred on."""
    cx, cy, w, h = (float(v) * search_size / resize_factor for v in np.asarray(pred_cxcywh).reshape(4))
    # The crop's top-left corner in the frame: the crop is centred on the previous box.
    origin = centres(prev_box) - 0.5 * search_size / resize_factor
    return cxcywh_to_xywh((cx + origin[0], cy + origin[1], w, h))


def normalize_patch(patch: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HWC RGB patch -> float32 (1, 3, H, W), scaled to 0..1 then standardised."""
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, 3)
    std = np.asarray(std, dtype=np.float32).reshape(1, 1, 3)
    img = (patch.astype(np.float32) / np.float32(255.0) - mean) / std
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None])


def damp_size(predicted, previous, rate: float) -> np.ndarray:
    """``predicted`` (x, y, w, h) with its size moved only ``rate`` of the way from ``previous``'s
    size, about the predicted centre (rate 1: the prediction as it is)."""
    x, y, w, h = (float(v) for v in predicted)
    if rate >= 1.0:
        return np.array([x, y, w, h], dtype=np.float64)
    pw, ph = float(previous[2]), float(previous[3])
    nw, nh = pw + rate * (w - pw), ph + rate * (h - ph)
    return cxcywh_to_xywh(np.concatenate([centres(predicted), (nw, nh)]))
