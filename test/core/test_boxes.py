"""The box verbs and the message layout of core/boxes.py, as properties over random boxes."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stark_ros.core.boxes import (
    box_to_msg_values,
    centre_at,
    centres,
    flip_horizontal,
    iou_xywh,
    msg_to_box,
    pixel_corners,
    scale_about_centre,
)

ATOL = 1e-9
coordinate = st.floats(-500, 500, allow_nan=False)
side = st.floats(0.5, 400, allow_nan=False)
boxes = st.tuples(coordinate, coordinate, side, side).map(np.array)
factors = st.floats(0.1, 4.0, allow_nan=False)


@given(boxes, st.tuples(coordinate, coordinate))
def test_centre_at_moves_the_centre_and_keeps_the_size(box, centre):
    moved = centre_at(box, centre)
    np.testing.assert_allclose(centres(moved), centre, atol=ATOL)
    np.testing.assert_array_equal(moved[2:], box[2:])


def test_centre_at_broadcasts_over_boxes():
    many = np.array([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 2.0, 2.0]])
    np.testing.assert_array_equal(centre_at(many, (1.0, 1.0)), [[-4.0, -9.0, 10.0, 20.0], [0.0, 0.0, 2.0, 2.0]])


@given(boxes, factors)
def test_scale_about_centre_keeps_the_centre(box, factor):
    scaled = scale_about_centre(box, factor)
    np.testing.assert_allclose(centres(scaled), centres(box), atol=ATOL)
    np.testing.assert_allclose(scaled[2:], box[2:] * factor, rtol=1e-12)
    # A box scaled by f inside itself (f <= 1) overlaps it by f**2 of its area.
    if factor <= 1:
        assert float(iou_xywh(scaled, box)) == pytest.approx(factor ** 2, abs=1e-9)


@given(boxes, st.floats(1, 2000, allow_nan=False))
def test_flip_horizontal_mirrors_and_undoes_itself(box, width):
    flipped = flip_horizontal(box, width)
    assert flipped[0] + flipped[2] == pytest.approx(width - box[0], abs=ATOL)   # right edge <- left edge
    np.testing.assert_array_equal(flipped[1:], box[1:])
    np.testing.assert_allclose(flip_horizontal(flipped, width), box, atol=1e-9)


def test_pixel_corners_round_the_corner_and_the_size():
    assert pixel_corners((10.4, 20.6, 30.5, 40.2)) == ((10, 21), (40, 61))
    (x1, y1), (x2, y2) = pixel_corners(np.array([0.5, 1.5, 9.5, 9.5]))
    assert all(isinstance(v, int) for v in (x1, y1, x2, y2))


@given(boxes)
def test_message_values_round_trip(box):
    cx, cy, w, h = box_to_msg_values(box)
    msg = SimpleNamespace(center=SimpleNamespace(position=SimpleNamespace(x=cx, y=cy)), size_x=w, size_y=h)
    np.testing.assert_allclose(msg_to_box(msg), box, atol=1e-9)
    np.testing.assert_allclose((cx, cy), centres(box), atol=ATOL)
