"""The long-term measures (VOT-LT precision / recall / F, absent -> LOST, false LOST, episode
delays) on hand-made sequences whose answers are worked out by hand, and the evaluation tool's
per-frame state records on shared/data/lt."""

import json
import math

import numpy as np
import pytest

from stark_ros.evaluation.longterm import (
    FOUND_IOU,
    SCORE_THRESHOLDS,
    absence_episodes,
    dataset_f_max,
    f_score,
    frame_ious,
    longterm_metrics,
    precision_recall,
    precision_recall_curves,
)

BOX = [10.0, 10.0, 10.0, 10.0]
HALF = [15.0, 10.0, 10.0, 10.0]      # shifted by half its width: IoU 50/150 = 1/3
FAR = [100.0, 100.0, 10.0, 10.0]     # IoU 0
GONE = [math.nan] * 4


def boxes(*rows):
    return np.array(rows, dtype=float)


def test_frame_ious_zero_where_absent_or_unknown():
    ious = frame_ious(boxes(BOX, HALF, BOX, GONE), boxes(BOX, BOX, GONE, BOX))
    np.testing.assert_allclose(ious, [1.0, 1 / 3, 0.0, 0.0])
    with pytest.raises(ValueError, match="predicted boxes"):
        frame_ious(boxes(BOX), boxes(BOX, BOX))


def test_precision_recall_by_hand():
    # Frames: visible+found, visible+half, absent, absent, visible+found.
    ious = np.array([1.0, 1 / 3, 0.0, 0.0, 1.0])
    visible = np.array([True, True, False, False, True])
    # Always present: precision over all 5 frames, recall over the 3 visible ones.
    pr, re, f = precision_recall(ious, np.ones(5, bool), visible)
    assert pr == pytest.approx((1 + 1 / 3 + 1) / 5) and re == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert f == pytest.approx(2 * pr * re / (pr + re))
    # Present exactly where visible: precision = recall.
    pr, re, _ = precision_recall(ious, visible, visible)
    assert pr == pytest.approx(re) == pytest.approx(7 / 9)
    # LOST on the found frame 4: recall loses it, precision does not count it.
    present = np.array([True, True, False, False, False])
    pr, re, _ = precision_recall(ious, present, visible)
    assert pr == pytest.approx((1 + 1 / 3) / 2) and re == pytest.approx((1 + 1 / 3) / 3)
    # Nothing predicted: precision 0, F 0.
    assert precision_recall(ious, np.zeros(5, bool), visible) == (0.0, 0.0, 0.0)
    assert f_score(0.0, 0.0) == 0.0


def test_f_max_finds_the_separating_threshold():
    ious = np.array([0.9, 0.9, 0.0, 0.0])
    visible = np.array([True, True, False, False])
    scores = np.array([0.8, 0.7, 0.3, 0.2])
    precisions, recalls = precision_recall_curves(ious, scores, visible)
    assert precisions.shape == recalls.shape == SCORE_THRESHOLDS.shape
    fs = [f_score(p, r) for p, r in zip(precisions, recalls, strict=True)]
    best = int(np.argmax(fs))
    # Any threshold in (0.3, 0.7] separates: F = 0.9; the lowest such grid value wins.
    assert fs[best] == pytest.approx(0.9) and SCORE_THRESHOLDS[best] == pytest.approx(0.31)
    # NaN scores (no confidence) pass every threshold: F-max = F of always present.
    p_nan, r_nan = precision_recall_curves(ious, np.full(4, np.nan), visible)
    assert np.allclose(p_nan, 0.45) and np.allclose(r_nan, 0.9)
    # Dataset F-max: curves averaged first. Two copies of the same sequence give the same answer.
    f, t = dataset_f_max([(precisions, recalls), (precisions, recalls)])
    assert f == pytest.approx(0.9) and t == pytest.approx(0.31)


def test_absence_episodes():
    assert absence_episodes(np.array([True, False, False, True, False])) == [(1, 2), (4, 4)]
    assert absence_episodes(np.ones(3, bool)) == []


def test_longterm_metrics_by_hand():
    # Frame 0 is the initialisation (not scored). Episode A: frames 3-5; episode B: frames 9-10.
    gt = boxes(BOX, BOX, BOX, GONE, GONE, GONE, BOX, BOX, BOX, GONE, GONE, BOX, BOX)
    pred = boxes(BOX, BOX, BOX, FAR, FAR, FAR, FAR, HALF, BOX, FAR, FAR, BOX, BOX)
    # LOST from frame 2 (a false LOST: frame 2 is tracked right) through frame 7; present again at
    # frame 8 (IoU 1: 2 frames after the return at 6); present through episode B (never LOST),
    # right again on its return frame 11.
    present = np.array([1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1], bool)
    m = longterm_metrics(pred, gt, present)
    assert m.absent_frames == 5 and m.absent_reported_lost == 3 and m.absent_lost_share == pytest.approx(0.6)
    # Found frames (IoU >= 0.5): 1, 2, 8, 11, 12; frame 2 is LOST.
    assert m.found_frames == 5 and m.false_lost_frames == 1 and m.false_lost_share == pytest.approx(0.2)
    assert [(e["first"], e["last"]) for e in m.episodes] == [(3, 5), (9, 10)]
    a, b = m.episodes
    assert a["frames_to_lost"] == 0 and a["returned"] and a["frames_to_reacquired"] == 2
    assert b["frames_to_lost"] is None and b["frames_to_reacquired"] == 0
    # Precision over the 6 predicted frames 1, 8-12 (IoUs 1, 1, 0, 0, 1, 1); recall over the 7 visible
    # frames 1, 2, 6, 7, 8, 11, 12 with LOST ones counting 0 (1, 0, 0, 0, 1, 1, 1).
    assert m.precision == pytest.approx(4 / 6) and m.recall == pytest.approx(4 / 7)
    assert m.f_score == pytest.approx(f_score(4 / 6, 4 / 7))
    # Without a presence output (always present): nothing reported LOST, nothing false.
    always = longterm_metrics(pred, gt)
    assert always.absent_reported_lost == 0 and always.false_lost_frames == 0
    assert [e["frames_to_lost"] for e in always.episodes] == [None, None]
    # Episode A's return at 6 is found only at 8 (frame 7 has IoU 1/3 < FOUND_IOU).
    assert [e["frames_to_reacquired"] for e in always.episodes] == [2, 0] and 1 / 3 < FOUND_IOU


def test_episode_to_the_end_has_no_return_and_reacquisition_stops_at_the_next_episode():
    gt = boxes(BOX, BOX, GONE, BOX, GONE, GONE)
    pred = boxes(BOX, BOX, FAR, FAR, FAR, FAR)
    m = longterm_metrics(pred, gt, np.array([1, 1, 1, 0, 0, 0], bool))
    first, last = m.episodes
    # Returned at 3 but never found before episode 2 begins at 4; LOST on 3 counts for neither episode's
    # disappearance (frame 3 is not absent); episode 2 is LOST at once and never ends.
    assert first["frames_to_lost"] is None and first["returned"] and first["frames_to_reacquired"] is None
    assert last["frames_to_lost"] == 0 and not last["returned"] and last["frames_to_reacquired"] is None


def test_sequence_without_absence():
    gt = boxes(BOX, BOX, BOX)
    m = longterm_metrics(boxes(BOX, BOX, FAR), gt, np.array([1, 1, 0], bool), np.array([math.nan, 0.9, 0.1]))
    assert math.isnan(m.absent_lost_share) and m.episodes == []
    assert m.precision == 1.0 and m.recall == pytest.approx(0.5)
    # F-max: every threshold above 0.1 drops the missed frame 2 (F 2/3); at or below it F is 1/2.
    assert m.f_max == pytest.approx(2 / 3) and m.f_max_threshold == pytest.approx(0.11)
    with pytest.raises(ValueError, match="presence flags"):
        longterm_metrics(boxes(BOX, BOX, BOX), gt, np.ones(2, bool))


def test_evaluate_records_states_and_scores_lt(shared, tmp_path):
    """shared/data/lt loads and evaluates: the static box (always present) gets every long-term measure,
    and its per-frame state file says present on every frame."""
    from stark_ros import evaluate

    args = ["--root", str(shared / "data" / "lt"), "--tracker", "static", "--sequences", "tld_pedestrian3",
            "--out", str(tmp_path), "--no-progress"]
    assert evaluate.main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    lt = report["static_box"]["sequences"]["tld_pedestrian3"]["longterm"]
    # The README: one episode, frames 53-80 (1-based); 28 absent frames, none reported LOST.
    assert lt["absent_frames"] == 28 and lt["absent_reported_lost"] == 0
    assert [(e["first"] + 1, e["last"] + 1) for e in lt["episodes"]] == [(53, 80)]
    assert lt["episodes"][0]["frames_to_lost"] is None and lt["episodes"][0]["returned"]
    states = np.loadtxt(tmp_path / "results" / "static_box" / "tld_pedestrian3_state.txt", delimiter=",")
    assert states.shape == (184, 2) and np.all(states[:, 1] == 1) and np.all(np.isnan(states[:, 0]))
    text = (tmp_path / "report.md").read_text()
    assert "absent->LOST" in text and "53-80: never" in text
