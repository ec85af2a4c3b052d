"""Property tests (hypothesis) of the box geometry and crops shared by every tracker in the package.

The bit-exact parity with the official crop is proven on the reference fixtures
(test_geometry_reference.py); these tests cover what fixtures cannot: any frame size, boxes partly or
fully outside the frame, tiny boxes and boxes many times larger than the frame.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stark_ros.core.boxes import centres, cxcywh_to_xywh, iou_xywh, xywh_to_cxcywh, xywh_to_xyxy, xyxy_to_xywh
from stark_ros.core.geometry import (
    BoxProblem,
    InvalidBoxError,
    clip_box,
    crop_around,
    crop_side,
    map_box_back,
    normalize_patch,
    validate_box,
)
from stark_ros.tracking.settings import DEFAULT_CLIP_MARGIN, IMAGENET_MEAN, IMAGENET_STD

# Small frames and outputs keep each example cheap on a shared 2-core machine; boxes reach several
# times the frame size (and ~1500 px crops), far enough to exercise "huge" without large allocations.
MIN_FRAME, MAX_FRAME = 12, 64
MAX_BOX_SIZE = 300.0
MIN_BOX_SIZE = 1e-3
COORD_RANGE = 250.0
OUTPUT_SIZES = (8, 16, 32)
CONTEXT_FACTORS = (2.0, 5.0)
# The frame is filled with this value; the crop pads with 0, so a pixel equal to it came from the frame.
FRAME_VALUE = 200
# Float tolerance of conversions that go through a few additions and multiplications.
ATOL = 1e-6
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

coords = st.floats(-COORD_RANGE, COORD_RANGE, allow_nan=False)
sizes = st.floats(MIN_BOX_SIZE, MAX_BOX_SIZE, allow_nan=False)
boxes = st.tuples(coords, coords, sizes, sizes)
frame_dims = st.tuples(st.integers(MIN_FRAME, MAX_FRAME), st.integers(MIN_FRAME, MAX_FRAME))


def _frame(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), FRAME_VALUE, dtype=np.uint8)


def _crop_extent(box, factor: float) -> tuple[int, int, int]:
    """(left, top, side) of the crop in frame pixels, from the documented rule (not from the code)."""
    x, y, w, h = box
    side = math.ceil(math.sqrt(w * h) * factor)
    return round(x + 0.5 * w - side * 0.5), round(y + 0.5 * h - side * 0.5), side


# ------------------------------------------------------------------------------ conversions
@PROPERTY_SETTINGS
@given(boxes)
def test_box_conversions_round_trip(box):
    np.testing.assert_allclose(xyxy_to_xywh(xywh_to_xyxy(box)), box, atol=1e-9, rtol=1e-12)
    np.testing.assert_allclose(cxcywh_to_xywh(xywh_to_cxcywh(box)), box, atol=1e-9, rtol=1e-12)
    x1, y1, x2, y2 = xywh_to_xyxy(box)
    assert x2 >= x1 and y2 >= y1
    # The centre lies halfway between the corners, whichever layout it is read from.
    np.testing.assert_allclose(centres(box), ((x1 + x2) / 2, (y1 + y2) / 2), atol=1e-9, rtol=1e-12)


@PROPERTY_SETTINGS
@given(boxes, boxes)
def test_iou_bounds_symmetry_and_identity(a, b):
    iou = float(iou_xywh(a, b))
    assert 0.0 <= iou <= 1.0 + ATOL
    assert iou == pytest.approx(float(iou_xywh(b, a)), abs=ATOL)
    assert float(iou_xywh(a, a)) == pytest.approx(1.0, abs=ATOL)


# ------------------------------------------------------------------------------ validation
@PROPERTY_SETTINGS
@given(boxes, frame_dims)
def test_validate_box_accepts_exactly_the_boxes_that_overlap_the_frame(box, dims):
    height, width = dims
    x, y, w, h = box
    overlaps = x < width and y < height and x + w > 0 and y + h > 0
    if overlaps:
        np.testing.assert_array_equal(validate_box(box, (height, width, 3)), box)
    else:
        with pytest.raises(InvalidBoxError) as err:
            validate_box(box, (height, width, 3))
        assert err.value.problem is BoxProblem.OUTSIDE_IMAGE


@pytest.mark.parametrize(("box", "problem"), [
    ((1.0, 2.0, float("nan"), 4.0), BoxProblem.NOT_FINITE),
    ((float("inf"), 2.0, 3.0, 4.0), BoxProblem.NOT_FINITE),
    ((1.0, 2.0, 0.0, 4.0), BoxProblem.NON_POSITIVE_SIZE),
    ((1.0, 2.0, 3.0, -4.0), BoxProblem.NON_POSITIVE_SIZE),
    ((1.0, 2.0, 3.0), BoxProblem.WRONG_SHAPE),
])
def test_validate_box_names_the_problem(box, problem):
    with pytest.raises(InvalidBoxError) as err:
        validate_box(box, (48, 64, 3))
    assert err.value.problem is problem
    assert problem.value in str(err.value)


# ------------------------------------------------------------------------------ clipping
@PROPERTY_SETTINGS
@given(boxes, frame_dims)
def test_clip_box_keeps_margin_inside_and_is_idempotent(box, dims):
    height, width = dims
    margin = DEFAULT_CLIP_MARGIN
    x, y, w, h = clip_box(box, height, width, margin)
    assert 0.0 <= x <= width - margin and 0.0 <= y <= height - margin
    assert w >= margin and h >= margin
    assert x + w <= width + ATOL and y + h <= height + ATOL
    np.testing.assert_allclose(clip_box((x, y, w, h), height, width, margin), (x, y, w, h), atol=ATOL)


@PROPERTY_SETTINGS
@given(frame_dims, st.data())
def test_clip_box_leaves_boxes_inside_the_frame_unchanged(dims, data):
    height, width = dims
    margin = DEFAULT_CLIP_MARGIN
    w = data.draw(st.floats(margin, width))
    h = data.draw(st.floats(margin, height))
    x = data.draw(st.floats(0.0, width - w))
    y = data.draw(st.floats(0.0, height - h))
    np.testing.assert_allclose(clip_box((x, y, w, h), height, width, margin), (x, y, w, h), atol=ATOL)


# ------------------------------------------------------------------------------ crops
@PROPERTY_SETTINGS
@given(boxes, frame_dims, st.sampled_from(CONTEXT_FACTORS), st.sampled_from(OUTPUT_SIZES))
@example(box=(-50.0, 10.0, 5.0, 5.0), dims=(40, 60), factor=5.0, size=32)   # fully left of the frame
@example(box=(10.0, -50.0, 5.0, 5.0), dims=(40, 60), factor=5.0, size=32)   # fully above
@example(box=(-3.0, -3.0, 2.0, 2.0), dims=(40, 60), factor=5.0, size=32)    # partly outside
@example(box=(-200.0, -200.0, 300.0, 300.0), dims=(12, 12), factor=5.0, size=16)  # huge
@example(box=(5.0, 5.0, MIN_BOX_SIZE, MIN_BOX_SIZE), dims=(40, 60), factor=2.0, size=8)  # tiny
def test_crop_shape_scale_and_padding_mask(box, dims, factor, size):
    height, width = dims
    crop = crop_around(_frame(height, width), box, factor, size)
    left, top, side = _crop_extent(box, factor)
    assert crop.patch.shape == (size, size, 3) and crop.patch.dtype == np.uint8
    assert crop.pad_mask.shape == (size, size) and crop.pad_mask.dtype == bool
    assert side == crop_side(box, factor)
    assert crop.resize_factor == size / side
    assert (crop.left, crop.top) == (left, top)
    # Every pixel not marked as padding came from the frame alone.
    assert np.all(crop.patch[~crop.pad_mask] == FRAME_VALUE)
    # The crop uses frame pixels [0, width - 1) x [0, height - 1) (the official quirk drops the last).
    if left >= 0 and top >= 0 and left + side <= width - 1 and top + side <= height - 1:
        assert not crop.pad_mask.any()
    if left + side <= 0 or top + side <= 0 or left >= width - 1 or top >= height - 1:
        assert crop.pad_mask.all()
        assert not crop.patch.any()


@PROPERTY_SETTINGS
@given(boxes, frame_dims, st.sampled_from(CONTEXT_FACTORS), st.sampled_from(OUTPUT_SIZES))
def test_crop_is_centred_on_the_box_with_the_context_factor(box, dims, factor, size):
    crop = crop_around(_frame(*dims), box, factor, size)
    cx, cy, w, h = xywh_to_cxcywh(crop.box_to_crop(box))
    # The crop origin is rounded to whole frame pixels: at most half a pixel, scaled to the output.
    off_centre = 0.5 * crop.resize_factor + ATOL
    assert abs(cx - size / 2) <= off_centre and abs(cy - size / 2) <= off_centre
    # side = ceil(sqrt(w h) * factor): the box's geometric mean size is the output over the factor,
    # short by less than one frame pixel of the side.
    assert math.sqrt(w * h) * factor <= size + ATOL
    assert math.sqrt(w * h) * factor > size - crop.resize_factor - ATOL


@pytest.mark.parametrize("size", [1e-200, 0.0])
def test_crop_of_a_box_without_area_is_refused(size):
    with pytest.raises(InvalidBoxError) as err:
        crop_around(_frame(32, 32), (4.0, 4.0, size, size), 5.0, 16)
    assert err.value.problem is BoxProblem.NON_POSITIVE_SIZE


# ------------------------------------------------------------------------------ mapping back
@PROPERTY_SETTINGS
@given(boxes, boxes, frame_dims, st.sampled_from(OUTPUT_SIZES))
def test_map_box_back_inverts_the_crop_coordinates(prev_box, box, dims, size):
    """A box expressed in the search crop around ``prev_box`` maps back onto itself; the only loss is
    the crop origin's rounding (the official mapping uses the unrounded centre): half a frame pixel."""
    factor = CONTEXT_FACTORS[-1]
    crop = crop_around(_frame(*dims), prev_box, factor, size)
    pred = xywh_to_cxcywh(crop.box_to_crop(box)) / size
    back = map_box_back(pred, prev_box, crop.resize_factor, size)
    scale = max(1.0, *(abs(v) for v in box), *(abs(v) for v in prev_box))
    np.testing.assert_allclose(back[2:], box[2:], rtol=1e-9, atol=1e-9 * scale)
    assert np.all(np.abs(back[:2] - np.asarray(box[:2])) <= 0.5 + 1e-9 * scale)


@PROPERTY_SETTINGS
@given(boxes, boxes, st.sampled_from(OUTPUT_SIZES))
def test_map_box_back_is_exact_without_rounding(prev_box, box, size):
    factor = CONTEXT_FACTORS[-1]
    side = crop_side(prev_box, factor)
    resize_factor = size / side
    px, py, pw, ph = prev_box
    origin = np.array([px + 0.5 * pw - 0.5 * side, py + 0.5 * ph - 0.5 * side])
    cxcywh = xywh_to_cxcywh(box)
    pred = np.concatenate([cxcywh[:2] - origin, cxcywh[2:]]) * resize_factor / size
    back = map_box_back(pred, prev_box, resize_factor, size)
    scale = max(1.0, side, *(abs(v) for v in box))
    np.testing.assert_allclose(back, box, rtol=1e-9, atol=1e-9 * scale)


# ------------------------------------------------------------------------------ normalisation
@PROPERTY_SETTINGS
@given(st.integers(1, 16), st.integers(1, 16), st.integers(0, 2**32 - 1))
def test_normalize_patch_round_trip(height, width, seed):
    patch = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    img = normalize_patch(patch, IMAGENET_MEAN, IMAGENET_STD)
    assert img.shape == (1, 3, height, width) and img.dtype == np.float32
    assert img.flags.c_contiguous
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)
    restored = (img[0] * std + mean) * 255.0
    np.testing.assert_allclose(restored, patch.transpose(2, 0, 1), atol=1e-3)
