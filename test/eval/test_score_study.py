"""The presence study: its made-up absences hide the target in its own scene, its replay of the lost
logic is the LostMonitor's rule exactly, its logistic fit and its choice behave as stated, and one
real validation video is recorded end to end (both scores, through ONNX Runtime)."""

from dataclasses import replace

import numpy as np
import pytest

from stark_ros.datasets import Sequence
from stark_ros.datasets.absences import (
    KINDS,
    cover_region,
    episode_span,
    erase,
    look_away,
    occlude,
    realistic_absences,
    with_absence,
)
from stark_ros.evaluation.score_study import (
    MAX_FALSE_LOST_MEAN,
    MAX_FALSE_LOST_VIDEO,
    Grid,
    Measured,
    Records,
    best_candidate,
    choose,
    confidence_scores,
    fit_logistic,
    hysteresis_grid,
    measure,
    measure_judged,
    relative_scores,
    replay_states,
)
from stark_ros.tracking.lost import LostMonitor, TargetState

FRAME_SIZE = 200
TARGET = np.array([90.0, 90.0, 20.0, 20.0])


def striped_scene() -> np.ndarray:
    """A textured background (vertical stripes) with a bright red square target at TARGET."""
    frame = np.zeros((FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    frame[:, :, 1] = (np.arange(FRAME_SIZE) % 16 < 8)[None, :] * 120 + 40
    x, y, w, h = TARGET.astype(int)
    frame[y:y + h, x:x + w] = (255, 0, 0)
    return frame


def red_pixels(frame) -> int:
    return int(np.sum((frame[..., 0] > 200) & (frame[..., 1] < 60)))


def test_erase_occlude_and_away_remove_the_target():
    frame = striped_scene()
    assert red_pixels(frame) == 400
    erased = erase(frame, TARGET)
    # The target is gone; the scene beside it (stripes) now stands there; the rest is untouched.
    assert red_pixels(erased) == 0
    x0, y0, x1, y1 = cover_region(TARGET, frame.shape)
    for outside in (np.s_[:y0], np.s_[y1:], np.s_[:, :x0], np.s_[:, x1:]):
        assert np.array_equal(erased[outside], frame[outside])
    assert erased[100, 90:110, 1].std() > 20          # stripes, not a flat fill
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 2] = 255
    occluded = occlude(frame, TARGET, blue)
    assert red_pixels(occluded) == 0 and occluded[100, 100, 2] == 255
    away = look_away(frame, TARGET)
    assert red_pixels(away) == 0 and not np.array_equal(away, erased)


def test_with_absence_marks_the_episode_and_keeps_the_rest():
    frame = striped_scene()
    n = 60
    seq = _MemorySequence(name="toy", frames=[None] * n, boxes=np.tile(TARGET, (n, 1)), images=frame)
    first, last = episode_span(n)
    for kind in KINDS:
        made = with_absence(seq, kind, occluder=np.zeros((5, 5, 3), np.uint8))
        assert np.all(np.isnan(made.boxes[first:last + 1])) and np.all(np.isfinite(made.boxes[:first]))
        assert red_pixels(made.frame(first)) == 0 and red_pixels(made.frame(last)) == 0
        assert red_pixels(made.frame(first - 1)) == 400 and red_pixels(made.frame(last + 1)) == 400
    videos = realistic_absences([seq, seq])
    assert [s.attributes["kind"] for s in videos[:4]] == ["real", *KINDS]
    with pytest.raises(ValueError, match="occluder"):
        with_absence(seq, "occluded")


class _MemorySequence(Sequence):
    """A sequence whose every frame is one in-memory image."""

    def __init__(self, name, frames, boxes, images):
        super().__init__(name=name, frames=frames, boxes=boxes)
        self.images = images

    def frame(self, index):
        return self.images.copy()


def test_replay_states_is_the_lost_monitors_rule():
    rng = np.random.default_rng(0)
    scores = np.clip(np.cumsum(rng.normal(0, 0.15, 300)) % 1.0, 0, 1)
    scores[0] = np.nan
    scores[50] = np.nan          # a score-less frame changes nothing
    grid = hysteresis_grid()
    pick = rng.choice(len(grid), 150, replace=False)
    sub = Grid(grid.lost_threshold[pick], grid.lost_frames[pick], grid.reacquire_threshold[pick],
               grid.reacquire_frames[pick])
    replayed = replay_states(scores, sub)
    assert 0.1 < 1 - replayed.mean() < 0.9      # both states occur
    for k in range(len(sub)):
        monitor = LostMonitor(sub.settings(k), [0, 0, 1, 1])
        states = [True]
        for s in scores[1:]:
            monitor.observe(float(s), [0, 0, 1, 1])
            states.append(monitor.state is TargetState.TRACKING)
        assert np.array_equal(states, replayed[k]), sub.settings(k)


@pytest.mark.parametrize("reference_frames", [5, 10])
def test_replaying_relative_scores_is_the_monitor_with_a_reference(reference_frames):
    """The study replays relative settings on the scores the monitor judges (relative_scores, per
    lost threshold): the same states as a LostMonitor with ``reference_frames`` fed the model's scores."""
    rng = np.random.default_rng(2)
    scores = np.clip(0.3 + np.cumsum(rng.normal(0, 0.05, 200)), 0, 1)
    scores[0] = np.nan
    scores[3:8] = 0.01           # gone early: the reference must not learn it
    grid = hysteresis_grid()
    pick = rng.choice(len(grid), 40, replace=False)
    sub = grid.subset(pick)
    for k in range(len(sub)):
        settings = replace(sub.settings(k), reference_frames=reference_frames)
        replayed = replay_states(relative_scores(scores, reference_frames, settings.lost_threshold), sub.subset([k]))
        monitor = LostMonitor(settings, [0, 0, 1, 1])
        states = [True] + [monitor.observe(float(s), [0, 0, 1, 1]) and monitor.state is TargetState.TRACKING
                           for s in scores[1:]]
        assert np.array_equal(states, replayed[0]), settings


def test_measuring_judged_scores_per_threshold_equals_measuring_each_setting():
    rng = np.random.default_rng(4)
    n = 80
    visible = np.ones(n, bool)
    visible[30:50] = False
    scores = np.where(visible, rng.uniform(0.3, 0.9, n), rng.uniform(0.0, 0.2, n))
    rec = Records("v", "v", "erased", np.where(visible, 0.8, 0.0), visible, scores, scores)
    grid = hysteresis_grid().subset(np.arange(0, 3780, 97))
    together = measure_judged([rec], [scores], grid, 5)
    for k in range(len(grid)):
        alone = measure([rec], [relative_scores(scores, 5, float(grid.lost_threshold[k]))], grid.subset([k]))
        assert together.absent_lost[k] == alone.absent_lost[0]
        assert together.false_lost_mean[k] == alone.false_lost_mean[0]


def test_logistic_fit_separates_and_is_left_out_per_video():
    rng = np.random.default_rng(1)
    records = []
    for video in ("a", "b", "c"):
        n = 200
        visible = np.ones(n, bool)
        visible[100:150] = False
        head = np.where(visible, rng.uniform(0.3, 0.5, n), rng.uniform(0.1, 0.35, n))
        appearance = np.where(visible, rng.uniform(0.5, 0.9, n), rng.uniform(0.2, 0.55, n))
        records.append(Records(video, video, "real", np.where(visible, 0.8, 0.0), visible, head, appearance))
    scores, weights = confidence_scores(records, "logistic")
    assert weights.shape == (3,) and weights[0] > 0 and weights[1] > 0     # both scores count, upwards
    for r, s in zip(records, scores, strict=True):
        assert s[r.visible].min() > np.median(s[~r.visible])
    w = fit_logistic(np.array([[1.0, 1.0], [-1.0, 1.0]]), np.array([True, False]))
    assert np.all(np.isfinite(w)) and w[0] > 0          # separable: the ridge keeps it finite


def test_measure_and_choose_on_a_hand_made_record():
    # Present (found) frames score 0.9 except a dip to 0.4 for 3 frames; absent frames 20-39 score 0.1.
    n = 60
    visible = np.ones(n, bool)
    visible[20:40] = False
    scores = np.full(n, 0.9)
    scores[10:13] = 0.4
    scores[20:40] = 0.1
    rec = Records("v", "v", "erased", np.where(visible, 0.9, 0.0), visible, scores, scores)
    grid = Grid(np.array([0.5, 0.3]), np.array([1, 1]), np.array([0.5, 0.3]), np.array([1, 1]))
    m = measure([rec], [scores], grid)
    # Threshold 0.5: the dip is LOST (3 of 58 found frames) -> over the 5% per-video aim; 0.3: no false LOST.
    assert m.false_lost_mean[0] == pytest.approx(3 / 39) and m.false_lost_mean[1] == 0.0
    assert m.absent_lost[0] == m.absent_lost[1] == 1.0
    assert m.frames_to_lost[1] == 0 and m.frames_to_found[1] == 0
    k, meets = choose(m)
    assert k == 1 and meets
    bad = Measured(np.array([0.03, 0.5]), np.array([0.06, 0.9]), np.array([0.2, 1.0]), {}, np.zeros(2), np.zeros(2))
    k, meets = choose(bad)
    assert k == 0 and not meets and MAX_FALSE_LOST_MEAN < 0.03 and MAX_FALSE_LOST_VIDEO < 0.06


def test_the_model_gets_the_best_confidence_the_policy_can_give():
    """Every source of SCORE_SOURCES (the policy computes each) may be chosen, combinations included;
    the logistic combination, fitted per video, is measured but never given to a model."""
    from stark_ros.tracking.settings import SCORE_SOURCES

    def result(source, absent_lost, meets=True):
        return {"score_source": source, "meets_false_lost_aim": meets, "absent_lost": absent_lost,
                "false_lost_mean": 0.01}

    results = {"appearance/ref10": result("appearance", 0.50), "min/ref20": result("min", 0.56),
               "logistic/ref5": result("logistic", 0.70), "product/ref5": result("product", 0.90, meets=False)}
    assert {"min", "product", "mean"} <= set(SCORE_SOURCES)
    assert best_candidate(results, SCORE_SOURCES) == "min/ref20"


def test_record_one_validation_video(shared, tmp_path):
    """End to end on the real model: both scores recorded per frame, every setting replayable."""
    import onnxruntime as ort

    from stark_ros.evaluation.score_study import RECORDS_KEY_CHARS, collect, validation_sequences
    from stark_ros.runtime import default_model_dir
    from stark_ros.tracking.model_metadata import KEY_SOURCE_SHA256, TRACK_FILE

    seqs = validation_sequences(("uav_person11",), kinds=("erased",))
    records = collect(default_model_dir(), seqs, tmp_path)
    real, erased = records
    first, last = episode_span(len(real.ious))
    assert erased.kind == "erased" and (~erased.visible).sum() == last - first + 1
    for r in records:
        for scores in (r.head[1:], r.appearance[1:]):
            assert np.all((scores >= 0) & (scores <= 1))
        assert r.found[1:].mean() > 0.5          # the model tracks this video
    # Before the made-up episode both passes saw the same frames: the same scores.
    np.testing.assert_array_equal(real.head[:first], erased.head[:first])
    # Records live in a folder of this model's own (its checkpoint checksum): another model never reads them.
    (folder,) = tmp_path.iterdir()
    meta = ort.InferenceSession(str(default_model_dir() / TRACK_FILE)).get_modelmeta().custom_metadata_map
    assert folder.name == meta[KEY_SOURCE_SHA256][:RECORDS_KEY_CHARS]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{seq.name}.npz" for seq in seqs)
    # Read back (the run resumes) equal.
    again = collect(default_model_dir(), seqs, tmp_path)
    np.testing.assert_array_equal(again[1].appearance, erased.appearance)
