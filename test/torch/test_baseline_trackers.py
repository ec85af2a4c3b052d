"""The two reference trackers of every evaluation report: the never-moving box (the floor) and the
untrained feature matcher (ImageNet features, no training): on a real unseen sequence where the
target moves, the matcher follows it and the static box does not."""

import numpy as np
import pytest

from stark_ros.datasets import load_simple_sequence
from stark_ros.evaluation.matcher import FeatureMatcher, StaticBox
from stark_ros.evaluation.metrics import sequence_metrics
from stark_ros.evaluation.runner import run_sequence

SEQUENCE = "vot2014_car"
FRAMES = 60
# The car drives across the frame: a box that stays put loses it within these frames.
MATCHER_MARGIN = 0.2


@pytest.fixture(scope="module")
def car(shared):
    seq = load_simple_sequence(shared / "data" / "sot" / SEQUENCE)
    seq.frames, seq.boxes = seq.frames[:FRAMES], seq.boxes[:FRAMES]
    return seq


def test_static_box_never_moves(car):
    res = run_sequence(StaticBox(), car)
    np.testing.assert_array_equal(res.boxes, np.repeat(car.boxes[:1], len(car), axis=0))


def test_untrained_matcher_follows_the_target_where_the_static_box_cannot(car):
    matcher = sequence_metrics(run_sequence(FeatureMatcher(), car).boxes[1:], car.boxes[1:]).success_auc
    static = sequence_metrics(run_sequence(StaticBox(), car).boxes[1:], car.boxes[1:]).success_auc
    assert matcher > static + MATCHER_MARGIN, (matcher, static)
