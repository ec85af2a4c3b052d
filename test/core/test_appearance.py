"""The appearance score (colour histogram intersection of the tracked box with the first box)."""

import numpy as np
import pytest

from stark_ros.datasets import load_simple_sequence
from stark_ros.tracking.appearance import AppearanceModel, box_histogram

BOX = (40, 30, 50, 40)


@pytest.fixture()
def scene():
    """A red square on a blue background."""
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    frame[..., 2] = 200
    x, y, w, h = BOX
    frame[y:y + h, x:x + w] = (220, 30, 30)
    return frame


def test_same_box_scores_one_and_other_colours_score_low(scene):
    model = AppearanceModel(scene, BOX)
    assert model.similarity(scene, BOX) == pytest.approx(1.0)
    assert model.similarity(scene, (100, 80, 40, 30)) < 0.05          # plain background
    assert model.similarity(np.zeros_like(scene), BOX) < 0.05         # a black frame
    assert model.similarity(scene, (45, 35, 50, 40)) > 0.9            # a slightly shifted box


def test_loose_box_still_scores_high(scene):
    """Only the box's centre is compared, so a box 30% too large keeps its score."""
    x, y, w, h = BOX
    loose = (x - 0.15 * w, y - 0.15 * h, 1.3 * w, 1.3 * h)
    assert AppearanceModel(scene, BOX).similarity(scene, loose) > 0.9


@pytest.mark.parametrize("box", [(500, 500, 10, 10), (np.nan, 0, 10, 10), (10, 10, 0, 0)])
def test_boxes_without_pixels_score_zero(scene, box):
    assert not box_histogram(scene, box).any()
    assert AppearanceModel(scene, BOX).similarity(scene, box) == 0.0


def test_real_target_scores_above_other_places(shared):
    seq = load_simple_sequence(shared / "data" / "sot" / "vot2014_car")
    model = AppearanceModel(seq.frame(0), seq.boxes[0])
    later = seq.frame(10)
    on_target = model.similarity(later, seq.boxes[10])
    x, y, w, h = seq.boxes[10]
    elsewhere = [model.similarity(later, (x + dx, y + dy, w, h)) for dx, dy in ((-3 * w, 0), (3 * w, 0), (0, -3 * h))]
    assert on_target > max(elsewhere), (on_target, elsewhere)
