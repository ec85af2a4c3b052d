"""Planned crops are the official crop, bit for bit, by every route: padded at full resolution and
resized by OpenCV, cut from the sampled frame pixels (large squares), or batched."""

import math

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stark_ros.core.geometry import (
    AREA_SCALE,
    crop_around,
    crop_batch,
    crop_pixels,
    normalization_table,
    normalize_patch,
    plan_crop,
    resample,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def official_crop(frame, box, factor, size):
    """The official STARK sample_target, written out: pad the whole square at full resolution, then
    resize image and float mask with OpenCV (the definition the planned routes must equal)."""
    x, y, w, h = box
    side = math.ceil(math.sqrt(w * h) * factor)
    left, top = round(x + 0.5 * w - side * 0.5), round(y + 0.5 * h - side * 0.5)
    height, width = frame.shape[:2]
    padded = np.zeros((side, side, 3), np.uint8)
    mask = np.ones((side, side), np.float64)
    # The frame's last row and column never enter the crop (the official quirk, module docstring).
    x0, x1 = max(left, 0), min(left + side, width - 1)
    y0, y1 = max(top, 0), min(top + side, height - 1)
    if x1 > x0 and y1 > y0:
        padded[y0 - top:y1 - top, x0 - left:x1 - left] = frame[y0:y1, x0:x1]
        mask[y0 - top:y1 - top, x0 - left:x1 - left] = 0.0
    return cv2.resize(padded, (size, size)), cv2.resize(mask, (size, size)).astype(bool)


def _frame(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


crops = st.tuples(
    st.integers(8, 300), st.integers(8, 300),                  # frame height, width
    st.floats(-0.5, 1.2), st.floats(-0.5, 1.2),                 # box corner, in frame sizes
    st.floats(0.02, 1.5), st.floats(0.02, 1.5),                 # box size, in frame sizes
    st.sampled_from([0.5, 2.0, 4.0, 5.0, 7.5]), st.sampled_from([16, 32, 64, 128]),
    st.integers(0, 2 ** 16))


@settings(max_examples=300, deadline=None)
@given(crops)
def test_every_route_is_the_official_crop(case):
    height, width, fx, fy, fw, fh, factor, size, seed = case
    frame = _frame(height, width, seed)
    box = (fx * width, fy * height, fw * width, fh * height)
    want_patch, want_mask = official_crop(frame, box, factor, size)
    plan = plan_crop(frame.shape, box, factor, size)
    crop = crop_around(frame, box, factor, size)
    np.testing.assert_array_equal(crop.patch, want_patch)
    np.testing.assert_array_equal(crop.pad_mask, want_mask)
    np.testing.assert_array_equal(plan.pad_mask(), want_mask)
    if not plan.empty:
        np.testing.assert_array_equal(resample(frame, plan), want_patch)


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 200), st.integers(8, 200), st.sampled_from([16, 32, 64]), st.integers(0, 2 ** 16),
       st.floats(-0.5, 1.0), st.floats(-0.5, 1.0))
def test_a_square_of_twice_the_output_takes_opencvs_area_filter(height, width, size, seed, fx, fy):
    # OpenCV resizes by exactly 1/2 with INTER_AREA even when asked for INTER_LINEAR.
    factor = 2.0
    side = AREA_SCALE * size
    box = (fx * width, fy * height, side / factor, side / factor)
    frame = _frame(height, width, seed)
    plan = plan_crop(frame.shape, box, factor, size)
    assert plan.side == side and plan.area
    want_patch, want_mask = official_crop(frame, box, factor, size)
    np.testing.assert_array_equal(crop_pixels(frame, plan), want_patch)
    np.testing.assert_array_equal(plan.pad_mask(), want_mask)
    if not plan.empty:
        np.testing.assert_array_equal(resample(frame, plan), want_patch)


def test_a_large_square_is_cut_from_its_samples_not_padded_at_full_resolution():
    frame = _frame(1080, 1920, 0)
    box = (50.0, 40.0, 1800.0, 1000.0)          # ~ the whole frame: a square ~ 6700 px wide at factor 5
    plan = plan_crop(frame.shape, box, 5.0, 64)
    assert plan.side > 6000
    want_patch, want_mask = official_crop(frame, box, 5.0, 64)
    np.testing.assert_array_equal(crop_pixels(frame, plan), want_patch)
    np.testing.assert_array_equal(plan.pad_mask(), want_mask)


def test_the_batch_is_each_crop_normalised():
    frame = _frame(240, 320, 1)
    boxes = [(100.0, 80.0, 40.0, 30.0), (-20.0, 200.0, 60.0, 70.0), (300.0, 5.0, 15.0, 90.0)]
    plans = [plan_crop(frame.shape, b, 5.0, 64) for b in boxes]
    images, masks = crop_batch(frame, plans, MEAN, STD)
    assert images.shape == (3, 3, 64, 64) and images.dtype == np.float32
    assert masks.shape == (3, 64, 64) and masks.dtype == np.float32
    for i, box in enumerate(boxes):
        crop = crop_around(frame, box, 5.0, 64)
        np.testing.assert_array_equal(images[i], normalize_patch(crop.patch, MEAN, STD)[0])
        np.testing.assert_array_equal(masks[i], crop.pad_mask.astype(np.float32))


def test_the_lookup_table_is_the_normalisation_formula():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    table = normalization_table(MEAN, STD)
    mean, std = np.asarray(MEAN, np.float32), np.asarray(STD, np.float32)
    direct = (levels.astype(np.float32) / np.float32(255.0) - mean) / std
    np.testing.assert_array_equal(normalize_patch(levels, MEAN, STD)[0], direct.transpose(2, 0, 1))
    assert table.shape == (3, 256) and not table.flags.writeable
