"""Standard single-object-tracking metrics (OTB/LaSOT/GOT-10k conventions).

* success curve: share of frames whose IoU exceeds each threshold in 0:0.05:1 (21 values); AUC is
  its mean (OTB/LaSOT; the got10k toolkit's OTB experiment uses the same 21 thresholds).
* precision @ 20 px: share of frames whose centre error is at most 20 pixels.
* normalised precision @ 0.2: centre error divided by the ground-truth size (per axis), at most 0.2.
* GOT-10k AO (mean IoU), SR@0.5, SR@0.75.
Frames without ground truth (NaN rows) are left out, as every toolkit does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from stark_ros.core.boxes import centres, iou_xywh

IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS_PX = np.arange(0, 51)
PRECISION_AT_PX = 20
NORM_PRECISION_AT = 0.2
SR_THRESHOLDS = (0.5, 0.75)


@dataclass(frozen=True)
class SequenceMetrics:
    frames: int
    success_auc: float
    precision_20: float
    norm_precision_02: float
    ao: float
    sr50: float
    sr75: float

    def as_dict(self) -> dict:
        return asdict(self)


def _valid(pred, gt):
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if len(pred) != len(gt):
        raise ValueError(f"{len(pred)} predicted boxes for {len(gt)} ground-truth boxes")
    keep = np.all(np.isfinite(gt), axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    pred = np.where(np.all(np.isfinite(pred), axis=1, keepdims=True), pred, 0.0)
    return pred[keep], gt[keep]


def centre_errors(pred, gt) -> np.ndarray:
    return np.linalg.norm(centres(pred) - centres(gt), axis=1)


def success_curve(ious: np.ndarray) -> np.ndarray:
    return (ious[:, None] > IOU_THRESHOLDS[None, :]).mean(axis=0)


def precision_curve(errors: np.ndarray, thresholds=PRECISION_THRESHOLDS_PX) -> np.ndarray:
    return (errors[:, None] <= thresholds[None, :]).mean(axis=0)


def sequence_curves(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """Success and precision curves of one sequence (frames without ground truth left out)."""
    pred, gt = _valid(pred, gt)
    return success_curve(iou_xywh(pred, gt)), precision_curve(centre_errors(pred, gt))


def sequence_metrics(pred, gt) -> SequenceMetrics:
    pred, gt = _valid(pred, gt)
    if len(gt) == 0:
        raise ValueError("no frame has a ground-truth box")
    ious = iou_xywh(pred, gt)
    err = centre_errors(pred, gt)
    norm = np.linalg.norm((centres(pred) - centres(gt)) / gt[:, 2:], axis=1)
    return SequenceMetrics(
        frames=len(gt),
        success_auc=float(success_curve(ious).mean()),
        precision_20=float((err <= PRECISION_AT_PX).mean()),
        norm_precision_02=float((norm <= NORM_PRECISION_AT).mean()),
        ao=float(ious.mean()),
        sr50=float((ious > SR_THRESHOLDS[0]).mean()),
        sr75=float((ious > SR_THRESHOLDS[1]).mean()),
    )
