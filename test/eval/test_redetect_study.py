"""The re-detection study's `elsewhere` absence (stark_ros.evaluation.redetect_study) on a real
validation video: the target is gone for the episode (ground truth NaN) and afterwards both the frame
and the ground truth have moved by the same shift, past the local search region."""

import numpy as np

from stark_ros.datasets.cuts import load_cut_sequence
from stark_ros.evaluation.redetect_study import ELSEWHERE_SHIFT, elsewhere, grid
from stark_ros.tracking.redetect import RedetectSettings

VIDEO = "otb_bolt2"   # a validation video (stark_ros.datasets.splits.TRAIN_VALIDATION)
# The target's pixels at the moved box match the original ones up to the sub-pixel resampling.
MAX_MEAN_DIFFERENCE = 12.0


def test_the_target_comes_back_where_the_frame_moved_it(shared):
    base = load_cut_sequence(shared / "data" / "train" / VIDEO)
    seq = elsewhere(base)
    assert np.all(np.isnan(seq.boxes[seq.first:seq.last + 1]))
    size = float(np.sqrt(np.prod(base.boxes[seq.last + 1, 2:])))
    assert np.hypot(*seq.shift) > 2.5 * size    # past the local search's half side (search factor 5)
    assert np.hypot(*seq.shift) <= ELSEWHERE_SHIFT * size + 1e-6
    i = seq.last + 5
    x, y, w, h = np.round(seq.boxes[i]).astype(int)
    x0, y0 = np.round(base.boxes[i][:2]).astype(int)
    here, there = seq.frame(i)[y:y + h, x:x + w].astype(float), base.frame(i)[y0:y0 + h, x0:x0 + w].astype(float)
    assert here.shape == there.shape and np.abs(here - there).mean() < MAX_MEAN_DIFFERENCE
    # Before the episode the video is untouched.
    np.testing.assert_array_equal(seq.frame(seq.first - 1), base.frame(seq.first - 1))


def test_the_grid_holds_valid_settings_with_re_detection_on():
    assert grid() and all(isinstance(s, RedetectSettings) and s.enabled for s in grid())
