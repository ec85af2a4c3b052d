"""Our metrics agree with the got10k package's own metric code on the same result files (1e-6),
and the evaluation tool writes results, a report and plots, resuming finished sequences."""

import json
import shutil

import numpy as np
import pytest
from got10k.utils.metrics import center_error, rect_iou

from stark_ros.datasets import load_simple_sequence
from stark_ros.evaluation.metrics import (
    IOU_THRESHOLDS,
    PRECISION_THRESHOLDS_PX,
    centre_errors,
    precision_curve,
    sequence_metrics,
    success_curve,
)

GOT10K_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def result_pair(shared):
    seq = load_simple_sequence(shared / "data" / "sot" / "vot_bag")
    rng = np.random.default_rng(3)
    pred = seq.boxes + rng.normal(0, 6, seq.boxes.shape)
    pred[:, 2:] = np.abs(pred[:, 2:])
    pred[::17] = [0, 0, 5, 5]  # some total misses
    return pred, seq.boxes


def test_success_and_precision_equal_got10k(result_pair):
    pred, gt = result_pair
    # got10k's OTB experiment: 21 IoU bins, 51 centre-error bins, '>' for overlap, '<=' for error.
    ious = rect_iou(pred, gt)
    errors = center_error(pred, gt)
    got_success = np.greater(ious[:, None], np.linspace(0, 1, 21)[None, :]).mean(axis=0)
    got_precision = np.less_equal(errors[:, None], np.arange(0, 51)[None, :]).mean(axis=0)
    from stark_ros.core.boxes import iou_xywh

    ours_ious = iou_xywh(pred, gt)
    np.testing.assert_allclose(ours_ious, ious, atol=GOT10K_TOLERANCE)
    np.testing.assert_allclose(centre_errors(pred, gt), errors, atol=GOT10K_TOLERANCE)
    np.testing.assert_allclose(success_curve(ours_ious), got_success, atol=GOT10K_TOLERANCE)
    np.testing.assert_allclose(precision_curve(centre_errors(pred, gt)), got_precision, atol=GOT10K_TOLERANCE)
    m = sequence_metrics(pred, gt)
    assert m.success_auc == pytest.approx(got_success.mean(), abs=GOT10K_TOLERANCE)
    assert m.precision_20 == pytest.approx(got_precision[20], abs=GOT10K_TOLERANCE)
    assert m.ao == pytest.approx(ious.mean(), abs=GOT10K_TOLERANCE)
    assert m.sr50 == pytest.approx((ious > 0.5).mean(), abs=GOT10K_TOLERANCE)
    assert len(IOU_THRESHOLDS) == 21 and len(PRECISION_THRESHOLDS_PX) == 51


def test_nan_ground_truth_frames_are_left_out():
    gt = np.array([[0, 0, 10, 10], [np.nan] * 4, [0, 0, 10, 10]], dtype=float)
    pred = np.array([[0, 0, 10, 10], [50, 50, 5, 5], [0, 0, 10, 10]], dtype=float)
    m = sequence_metrics(pred, gt)
    assert m.frames == 2 and m.ao == 1.0 and m.precision_20 == 1.0
    with pytest.raises(ValueError, match="predicted boxes"):
        sequence_metrics(pred[:2], gt)


def test_evaluate_cli_baseline_report_and_resume(shared, tmp_path):
    from stark_ros import evaluate

    args = ["--tracker", "baseline", "--sequences", "otb_crossing", "--out", str(tmp_path), "--no-progress"]
    assert evaluate.main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    (name,) = report
    # setup.py installs OpenCV with its contrib modules, so the baseline is CSRT, not the MIL fallback.
    assert name == "opencv_csrt"
    seq_metrics = report[name]["sequences"]["otb_crossing"]
    assert 0.0 <= seq_metrics["success_auc"] <= 1.0 and seq_metrics["frames"] == 119
    for png in ("success.png", "precision.png"):
        assert (tmp_path / png).stat().st_size > 1000
    result = tmp_path / "results" / name / "otb_crossing.txt"
    boxes = np.loadtxt(result, delimiter=",")
    assert boxes.shape == (120, 4)
    stamp = result.stat().st_mtime_ns
    assert evaluate.main(args) == 0          # resumed: nothing recomputed
    assert result.stat().st_mtime_ns == stamp
    # Other settings under the same name and folder: run again, never read back as this run's.
    assert evaluate.main([*args, "--update-interval", "7"]) == 0
    assert result.stat().st_mtime_ns != stamp
    assert json.loads((result.parent / "identity.json").read_text())["update_interval"] == 7


def test_evaluate_cli_two_models_two_rows_and_no_reuse_across_models(shared, tmp_path):
    """Two models in one run get a row each; a model whose files changed (here its lost settings,
    as the score study's --apply changes them) is run again, not resumed from the other's results."""
    from stark_ros import evaluate
    from stark_ros.export.metadata import write_lost_settings
    from stark_ros.runtime import default_model_dir
    from stark_ros.tracking.lost import LostSettings

    other = tmp_path / "other_model"
    shutil.copytree(default_model_dir(), other, ignore=shutil.ignore_patterns("*.pth", "*.png", "*.json"))
    args = ["--tracker", "runtime", "--tracker", f"runtime:{other}", "--sequences", "otb_crossing", "--out",
            str(tmp_path / "eval"), "--no-progress"]
    assert evaluate.main(args) == 0
    names = list(json.loads((tmp_path / "eval" / "report.json").read_text()))
    assert len(names) == 2 and names[1] == f"{names[0]}@other_model"
    states = tmp_path / "eval" / "results" / names[1] / "otb_crossing_state.txt"
    present_before = np.loadtxt(states, delimiter=",")[1:, 1].mean()
    # LOST below the whole score range: the same name and folder, other results.
    write_lost_settings(other, LostSettings(lost_threshold=1.0, lost_frames=1, reacquire_threshold=1.0), "test")
    assert evaluate.main(args) == 0
    assert np.loadtxt(states, delimiter=",")[1:, 1].mean() < present_before
