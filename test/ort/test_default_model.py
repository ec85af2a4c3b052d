"""The default model shipped in models/default really tracks: on a shared sequence its success AUC
is far above what the same architecture gets with untrained weights (the bound below fails for
random weights: the second assertion shows it on the same frames)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stark_ros.datasets import load_simple_sequence
from stark_ros.evaluation.metrics import sequence_metrics
from stark_ros.runtime import (
    LostSettings,
    ModelLoadError,
    RuntimeOptions,
    StarkRuntime,
    default_model_dir,
)
from stark_ros.tracking.policy import SingleTargetTracker

SEQUENCE = "vot2014_car"   # unseen in training (shared/data/sot is the evaluation set)
FRAMES = 120
MIN_TRAINED_AUC = 0.35
# The score must tell frames with the target from frames without it far better than chance (0.5).
MIN_BALANCED_ACCURACY = 0.75
CPU = RuntimeOptions(providers=("CPUExecutionProvider",))


def success_auc(model_dir, seq) -> float:
    tracker = SingleTargetTracker(StarkRuntime(model_dir, CPU))
    tracker.initialize(seq.frame(0), seq.boxes[0])
    boxes = [seq.boxes[0]] + [tracker.track(seq.frame(i))[0] for i in range(1, len(seq))]
    return sequence_metrics(np.array(boxes[1:]), seq.boxes[1:]).success_auc


@pytest.fixture(scope="module")
def car(shared):
    seq = load_simple_sequence(shared / "data" / "sot" / SEQUENCE)
    seq.frames, seq.boxes = seq.frames[:FRAMES], seq.boxes[:FRAMES]
    return seq


def test_default_model_is_installed_and_describes_itself():
    try:
        model = default_model_dir()
    except ModelLoadError as exc:
        pytest.fail(str(exc))
    rt = StarkRuntime(model, CPU)
    assert rt.info.variant == "LITE" and rt.has_score_head
    # It brings its own lost thresholds, chosen by its score study on the validation split.
    assert rt.info.lost is not None and "validation" in rt.info.lost_source
    assert rt.lost_settings == rt.info.lost
    assert (model / "README.md").is_file()


def test_lost_thresholds_are_the_score_study_of_the_default_model():
    """The thresholds in the model's metadata are those its score study chose, for the score source
    the study found best; config/tracker.yaml does not pin other ones."""
    study = json.loads((default_model_dir() / "score_study.json").read_text())
    rt = StarkRuntime(default_model_dir(), CPU)
    assert LostSettings.from_dict(study["lost_settings"]) == rt.info.lost
    assert rt.settings.score_source == study["chosen_score_source"]
    assert study["balanced_accuracy"] > MIN_BALANCED_ACCURACY
    config = Path(__file__).resolve().parents[2] / "config" / "tracker.yaml"
    params = yaml.safe_load(config.read_text())["/**"]["ros__parameters"]
    for key in ("lost_threshold", "reacquire_threshold"):
        assert params[key] < 0, f"{key}: tracker.yaml should leave it to the model (a negative value)"


def test_default_model_tracks_far_better_than_untrained_weights(car, untrained_lite_model):
    trained = success_auc(default_model_dir(), car)
    untrained = success_auc(untrained_lite_model, car)
    assert trained > MIN_TRAINED_AUC, trained
    assert untrained < MIN_TRAINED_AUC, untrained
