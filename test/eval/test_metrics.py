"""Our metrics agree with the got10k package's own metric code on the same result files (1e-6),
and the evaluation tool writes results, a report and plots, resuming finished sequences."""

import json

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
