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

The official crop pads the whole square at full resolution and resizes it (with a float64 mask of the
same size): a box as large as a 4K frame meant a square of ~11,000 px a side, seconds and gigabytes.
Here a crop is planned first (:class:`CropPlan`: the square and OpenCV's own sampling positions and
fixed-point weights) and cut by the cheapest route that gives the same bits: a view of the frame
resized by OpenCV when the square lies inside it, the official padding when the square is small, and
otherwise :func:`resample`, which reads only the frame pixels the output samples. The pad mask comes
from the plan, per axis. The GPU's crop graph (:mod:`stark_ros.runtime.crops`) repeats the arithmetic.
"""

from __future__ import annotations

import functools
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


# OpenCV's bilinear resize of 8-bit images works in fixed point: horizontal weights scaled by
# 2**11, a vertical pass that drops 4 bits before and 16 bits after its multiply, and a final
# rounding shift by 2 (cv2 resize.cpp: INTER_RESIZE_COEF_BITS, VResizeLinear<uchar, int, short>).
# :func:`resample` repeats that arithmetic exactly, so that a crop can be made from the frame pixels
# it samples, whatever the size of the square around them.
RESIZE_COEF_BITS = 11
RESIZE_ONE = 1 << RESIZE_COEF_BITS
LINEAR_SHIFTS = (4, 16, 2)
# OpenCV resizes by exactly 1/2 with its area filter: the rounded mean of 2 x 2 pixels.
AREA_SHIFTS = (0, 0, 2)
AREA_SCALE = 2
# A crop whose padded square has at most this many times the output's pixels is padded at full
# resolution and resized by OpenCV (fastest there); a larger one (a large box, a large frame) is
# resampled from the frame pixels it samples, at a cost bounded by the output size.
FULL_PAD_MAX_AREA_RATIO = 16


@dataclass(frozen=True)
class AxisTaps:
    """One axis of the resampling of N crops: output pixel ``i`` of crop ``n`` is
    ``weight0[n, i] * pixel[index0[n, i]] + weight1[n, i] * pixel[index1[n, i]]`` (frame
    coordinates, fixed-point weights; a tap on padding has weight 0 and index 0), and
    ``padded[n, i]`` says whether padding weighs in on it. All arrays (N, S)."""

    index0: np.ndarray
    index1: np.ndarray
    weight0: np.ndarray
    weight1: np.ndarray
    padded: np.ndarray


def axis_taps(output_size: int, sides, starts, frame_size: int, clamp_weights: bool) -> AxisTaps:
    """OpenCV's sampling positions and weights for resizing ``sides[n]`` pixels from frame
    coordinate ``starts[n]`` on to ``output_size`` (cv2 resize.cpp, resizeGeneric): the horizontal
    axis clamps its position at the borders, the vertical axis only its rows; a side of exactly
    twice the output takes OpenCV's area filter. Frame pixels from ``frame_size - 1`` on count as
    padding (the official crop drops the frame's last row/column, see the module docstring)."""
    sides = np.asarray(sides, dtype=np.int64)[:, None]
    starts = np.asarray(starts, dtype=np.int64)[:, None]
    # OpenCV's own expressions and types: double scale, float32 position and weight.
    scale = 1.0 / (output_size / sides)
    pos = ((np.arange(output_size, dtype=np.float64)[None, :] + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0.astype(np.float32)
    if clamp_weights:
        frac[(i0 < 0) | (i0 >= sides - 1)] = 0.0
        i0 = np.clip(i0, 0, sides - 1)
        i1 = np.minimum(i0 + 1, sides - 1)
    else:
        i1 = np.clip(i0 + 1, 0, sides - 1)
        i0 = np.clip(i0, 0, sides - 1)
    w0 = np.rint((np.float32(1.0) - frac) * np.float32(RESIZE_ONE)).astype(np.int32)
    w1 = np.rint(frac * np.float32(RESIZE_ONE)).astype(np.int32)
    area = (sides == AREA_SCALE * output_size)[:, 0]
    if area.any():
        pairs = np.arange(output_size, dtype=np.int64) * AREA_SCALE
        i0[area], i1[area], w0[area], w1[area] = pairs, pairs + 1, 1, 1
    i0, i1 = i0 + starts, i1 + starts
    out0, out1 = (i0 < 0) | (i0 >= frame_size - 1), (i1 < 0) | (i1 >= frame_size - 1)
    padded = (out0 & (w0 != 0)) | (out1 & (w1 != 0))
    return AxisTaps(np.where(out0, 0, i0), np.where(out1, 0, i1), np.where(out0, 0, w0).astype(np.int32),
                    np.where(out1, 0, w1).astype(np.int32), padded)


@dataclass(frozen=True)
class CropPlan:
    """Where a square crop lies in the frame and how it is resampled to ``output_size``: everything
    a crop needs but the pixels, so that the same crop can be cut on the CPU or on a GPU."""

    left: int
    top: int
    side: int
    output_size: int
    frame_height: int
    frame_width: int

    @property
    def resize_factor(self) -> float:
        return self.output_size / self.side

    @property
    def area(self) -> bool:
        return self.side == AREA_SCALE * self.output_size

    @property
    def shifts(self) -> tuple[int, int, int]:
        return AREA_SHIFTS if self.area else LINEAR_SHIFTS

    @property
    def inside(self) -> bool:
        """The square holds frame pixels only (the frame's last row and column excluded)."""
        return (self.left >= 0 and self.top >= 0 and self.left + self.side <= self.frame_width - 1
                and self.top + self.side <= self.frame_height - 1)

    @property
    def empty(self) -> bool:
        """No frame pixel inside the square."""
        return (self.left + self.side <= 0 or self.top + self.side <= 0 or self.left >= self.frame_width - 1
                or self.top >= self.frame_height - 1)

    def rows(self) -> AxisTaps:
        return axis_taps(self.output_size, [self.side], [self.top], self.frame_height, False)

    def columns(self) -> AxisTaps:
        return axis_taps(self.output_size, [self.side], [self.left], self.frame_width, True)

    def pad_mask(self) -> np.ndarray:
        """(S, S) bool, True where padding weighs in on the output pixel (as the official crop's
        resized float mask is nonzero)."""
        return np.logical_or.outer(self.rows().padded[0], self.columns().padded[0])


def plan_crop(frame_shape, box, factor: float, output_size: int) -> CropPlan:
    """The square of side ``ceil(sqrt(w*h) * factor)`` centred on ``box``, to be resized to
    ``output_size``."""
    x, y, w, h = (float(v) for v in box)
    side = crop_side(box, factor)
    if side < 1:
        raise InvalidBoxError(BoxProblem.NON_POSITIVE_SIZE, box)
    # Python's round() (half to even) on purpose: the official crop origin uses it.
    left = round(x + 0.5 * w - side * 0.5)
    top = round(y + 0.5 * h - side * 0.5)
    return CropPlan(left, top, side, output_size, int(frame_shape[0]), int(frame_shape[1]))


def resample(frame: np.ndarray, plan: CropPlan) -> np.ndarray:
    """The (S, S, 3) uint8 crop of ``plan``, computed from the frame pixels it samples with OpenCV's
    fixed-point arithmetic (bit for bit what padding the square and resizing it gives); the work
    and memory depend on the output size only."""
    rows, cols = plan.rows(), plan.columns()
    shift_in, shift_mid, shift_out = plan.shifts
    size = plan.output_size

    def taps(row_index, col_index):
        # A nearest-neighbour remap at integer positions is a gather of those pixels, in C.
        map_x = np.broadcast_to(col_index.astype(np.float32)[None, :], (size, size))
        map_y = np.broadcast_to(row_index.astype(np.float32)[:, None], (size, size))
        return cv2.remap(frame, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y),
                         cv2.INTER_NEAREST).astype(np.int32)

    def horizontal(row_index):
        return (taps(row_index, cols.index0[0]) * cols.weight0[0, None, :, None]
                + taps(row_index, cols.index1[0]) * cols.weight1[0, None, :, None])

    top = (rows.weight0[0, :, None, None] * (horizontal(rows.index0[0]) >> shift_in)) >> shift_mid
    bottom = (rows.weight1[0, :, None, None] * (horizontal(rows.index1[0]) >> shift_in)) >> shift_mid
    return ((top + bottom + (1 << (shift_out - 1))) >> shift_out).astype(np.uint8)


def crop_around(frame: np.ndarray, box, factor: float, output_size: int) -> Crop:
    """Cut a square of side ``ceil(sqrt(w*h) * factor)`` centred on ``box``, pad it where it leaves
    the frame, and resize it to ``output_size``. See the module docstring for the exact rules; the
    cost is bounded by the output size, whatever the box and the frame."""
    plan = plan_crop(frame.shape, box, factor, output_size)
    return Crop(patch=crop_pixels(frame, plan), pad_mask=plan.pad_mask(), resize_factor=plan.resize_factor,
                left=plan.left, top=plan.top)


def crop_pixels(frame: np.ndarray, plan: CropPlan) -> np.ndarray:
    """The crop's (S, S, 3) pixels, by the cheapest exact route for its size."""
    size, side = plan.output_size, plan.side
    if plan.empty:
        return np.full((size, size, *frame.shape[2:]), CROP_PAD_VALUE, frame.dtype)
    if plan.inside:
        # A view of the frame: OpenCV reads only the rows it samples.
        return cv2.resize(frame[plan.top:plan.top + side, plan.left:plan.left + side], (size, size))
    if side * side > FULL_PAD_MAX_AREA_RATIO * size * size:
        return resample(frame, plan)
    height, width = frame.shape[:2]
    left, top, right, bottom = plan.left, plan.top, plan.left + side, plan.top + side
    pad_left, pad_top = max(0, -left), max(0, -top)
    # "+ 1": the official crop drops the frame's last column/row once the crop reaches it.
    pad_right, pad_bottom = max(right - width + 1, 0), max(bottom - height + 1, 0)
    inside = frame[top + pad_top:bottom - pad_bottom, left + pad_left:right - pad_right]
    padded = cv2.copyMakeBorder(inside, pad_top, pad_bottom, pad_left, pad_right,
                                cv2.BORDER_CONSTANT, value=CROP_PAD_VALUE)
    return cv2.resize(padded, (size, size))


def crop_batch(frame: np.ndarray, plans: list[CropPlan], mean, std) -> tuple[np.ndarray, np.ndarray]:
    """The network's inputs for N crops of one frame: (N, 3, S, S) float32 normalised images and
    (N, S, S) float32 pad masks (1 = padding), written in place, one crop after another."""
    size = plans[0].output_size
    table = normalization_table(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    images = np.empty((len(plans), 3, size, size), dtype=np.float32)
    masks = np.empty((len(plans), size, size), dtype=np.float32)
    for i, plan in enumerate(plans):
        patch = crop_pixels(frame, plan)
        for channel in range(3):
            np.take(table[channel], patch[..., channel], out=images[i, channel])
        # A square inside the frame has no padding: no sampling positions needed for its mask.
        masks[i] = 0.0 if plan.inside else plan.pad_mask()
    return images, masks


def map_box_back(pred_cxcywh, prev_box, resize_factor: float, search_size: int) -> np.ndarray:
    """Map a network box (cx, cy, w, h normalised to the search crop) into frame (x, y, w, h),
    given the box the search crop was centred on."""
    cx, cy, w, h = (float(v) * search_size / resize_factor for v in np.asarray(pred_cxcywh).reshape(4))
    # The crop's top-left corner in the frame: the crop is centred on the previous box.
    origin = centres(prev_box) - 0.5 * search_size / resize_factor
    return cxcywh_to_xywh((cx + origin[0], cy + origin[1], w, h))


@functools.lru_cache(maxsize=8)
def normalization_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: the normalised value of every 8-bit level of each channel, computed with
    the float32 operations of the definition (x / 255 - mean) / std, so a lookup gives the same bits."""
    levels = np.arange(256, dtype=np.float32)[None, :]
    mean32 = np.asarray(mean, dtype=np.float32).reshape(3, 1)
    std32 = np.asarray(std, dtype=np.float32).reshape(3, 1)
    table = (levels / np.float32(255.0) - mean32) / std32
    table.flags.writeable = False
    return table


def normalize_patch(patch: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HWC RGB patch -> float32 (1, 3, H, W), scaled to 0..1 then standardised."""
    table = normalization_table(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    out = np.empty((1, 3, *patch.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], patch[..., channel], out=out[0, channel])
    return out


def damp_size(predicted, previous, rate: float) -> np.ndarray:
    """``predicted`` (x, y, w, h) with its size moved only ``rate`` of the way from ``previous``'s
    size, about the predicted centre (rate 1: the prediction as it is)."""
    x, y, w, h = (float(v) for v in predicted)
    if rate >= 1.0:
        return np.array([x, y, w, h], dtype=np.float64)
    pw, ph = float(previous[2]), float(previous[3])
    nw, nh = pw + rate * (w - pw), ph + rate * (h - ph)
    return cxcywh_to_xywh(np.concatenate([centres(predicted), (nw, nh)]))
