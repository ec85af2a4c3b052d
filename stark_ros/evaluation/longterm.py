"""Long-term tracking measures: what a tracker says about the target's presence, scored against
ground truth whose NaN rows mark frames where the target is not visible (numpy only).

* Tracking precision, recall and F-score of VOT-LT (Lukežič et al., "Now you see me: evaluating
  performance in long-term visual tracking", 2018). A frame has a *prediction* when the tracker
  reports the target present; precision is the mean IoU over the frames with a prediction (IoU 0
  where the target is absent), recall the mean IoU over the frames where the target is visible
  (IoU 0 where the tracker reports nothing), F their harmonic mean. At the operating point,
  "present" is the state the tracker publishes (not LOST); F-max sweeps a threshold over the score
  instead (a frame is predicted when its score reaches the threshold), what the score could give
  with the best single threshold. A tracker without a presence output is always present, and a
  frame without a score (NaN) passes every threshold.
* The share of absent frames reported LOST, and *false LOST*: the share of frames tracked right
  (IoU >= :data:`FOUND_IOU`) that are reported LOST, which a planner would wrongly act on.
* Per absence episode (a run of NaN rows): frames from the disappearance until the tracker first
  reports LOST, and frames from the target's return until it is first reported present with
  IoU >= :data:`FOUND_IOU` (0 = on the return frame itself; None = never).

Frames before ``first_frame`` (the initialisation frame, whose box is given) are not scored, as
the success AUC does not score them either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from stark_ros.core.boxes import iou_xywh

# A frame is tracked right when its box overlaps the ground truth this much (VOT-LT and the
# issue's REACQUIRED criterion use the same level).
FOUND_IOU = 0.5
# Score thresholds of the F-max sweep: the node's scores (sigmoid or colour similarity) lie in [0, 1].
SCORE_THRESHOLDS = np.linspace(0.0, 1.0, 101)
# The initialisation frame (index 0) has the given box: scoring starts after it.
FIRST_SCORED_FRAME = 1


@dataclass(frozen=True)
class AbsenceEpisode:
    first: int                      # first absent frame (0-based index into the sequence)
    last: int                       # last absent frame
    frames_to_lost: int | None      # from `first` until LOST is reported (0: LOST on `first`); None: never
    returned: bool                  # the target is visible again after `last`
    frames_to_reacquired: int | None  # from the return until present with IoU >= FOUND_IOU; None: never


@dataclass(frozen=True)
class LongTermMetrics:
    precision: float
    recall: float
    f_score: float
    f_max: float
    f_max_threshold: float
    absent_frames: int
    absent_reported_lost: int
    absent_lost_share: float        # NaN without absent frames
    found_frames: int               # visible frames tracked at IoU >= FOUND_IOU
    false_lost_frames: int          # of those, reported LOST
    false_lost_share: float         # NaN without found frames
    episodes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def frame_ious(pred, gt) -> np.ndarray:
    """IoU per frame; 0 where the ground truth is absent (NaN) or the prediction is not finite."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if len(pred) != len(gt):
        raise ValueError(f"{len(pred)} predicted boxes for {len(gt)} ground-truth boxes")
    visible = target_visible(gt)
    usable = visible & np.all(np.isfinite(pred), axis=1)
    ious = np.zeros(len(gt))
    if usable.any():
        ious[usable] = iou_xywh(pred[usable], gt[usable])
    return ious


def target_visible(gt) -> np.ndarray:
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    return np.all(np.isfinite(gt), axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)


def precision_recall(ious: np.ndarray, predicted: np.ndarray, visible: np.ndarray) -> tuple[float, float, float]:
    """VOT-LT tracking precision, recall and F of one sequence. ``ious`` is 0 where the target is
    absent; precision is 0 when nothing is predicted, recall NaN when the target is never visible."""
    predicted = np.asarray(predicted, dtype=bool)
    visible = np.asarray(visible, dtype=bool)
    precision = float(ious[predicted].mean()) if predicted.any() else 0.0
    recall = float(np.where(predicted, ious, 0.0)[visible].mean()) if visible.any() else float("nan")
    return precision, recall, f_score(precision, recall)


def f_score(precision: float, recall: float) -> float:
    total = precision + recall
    return float(2 * precision * recall / total) if total > 0 else 0.0


def precision_recall_curves(ious: np.ndarray, scores: np.ndarray, visible: np.ndarray,
                            thresholds: np.ndarray = SCORE_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall with "predicted" = score >= each threshold (NaN scores always predicted)."""
    scores = np.where(np.isnan(scores), np.inf, np.asarray(scores, dtype=np.float64))
    curves = [precision_recall(ious, scores >= t, visible)[:2] for t in thresholds]
    return np.array([c[0] for c in curves]), np.array([c[1] for c in curves])


def f_max(precisions: np.ndarray, recalls: np.ndarray,
          thresholds: np.ndarray = SCORE_THRESHOLDS) -> tuple[float, float]:
    """(best F over the thresholds, the threshold that gives it; the lowest one on ties)."""
    fs = np.array([f_score(p, r) for p, r in zip(precisions, recalls, strict=True)])
    best = int(np.argmax(fs))
    return float(fs[best]), float(thresholds[best])


def absence_episodes(visible: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of frames without the target."""
    absent = ~np.asarray(visible, dtype=bool)
    edges = np.diff(np.concatenate([[0], absent.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist(), strict=True))


def episode_delays(first: int, last: int, present: np.ndarray, ious: np.ndarray,
                   end: int) -> AbsenceEpisode:
    """Delays of one absence episode ``first..last``; the reacquisition is looked for from the
    return (``last + 1``) up to ``end`` (exclusive: the next episode or the sequence end)."""
    lost_at = np.flatnonzero(~present[first:last + 1])
    to_lost = int(lost_at[0]) if len(lost_at) else None
    back = last + 1
    returned = back < len(present)
    to_found = None
    if returned:
        found = np.flatnonzero(present[back:end] & (ious[back:end] >= FOUND_IOU))
        to_found = int(found[0]) if len(found) else None
    return AbsenceEpisode(first, last, to_lost, returned, to_found)


def longterm_metrics(pred, gt, present=None, scores=None, first_frame: int = FIRST_SCORED_FRAME) -> LongTermMetrics:
    """The long-term measures of one sequence. ``pred``, ``gt`` (N, 4) boxes x, y, w, h (NaN rows:
    target absent); ``present`` (N,) the tracker's reported presence (None: always present);
    ``scores`` (N,) its confidence (None or NaN: none). Frames before ``first_frame`` are not scored."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    n = len(gt)
    present = np.ones(n, bool) if present is None else np.asarray(present, dtype=bool).reshape(-1)
    scores = np.full(n, np.nan) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(present) != n or len(scores) != n:
        raise ValueError(f"{len(present)} presence flags and {len(scores)} scores for {n} frames")
    ious = frame_ious(pred, gt)
    visible = target_visible(gt)
    scored = slice(first_frame, None)
    s_ious, s_visible, s_present = ious[scored], visible[scored], present[scored]
    precision, recall, f = precision_recall(s_ious, s_present, s_visible)
    best_f, best_t = f_max(*precision_recall_curves(s_ious, scores[scored], s_visible))
    absent = ~s_visible
    found = s_visible & (s_ious >= FOUND_IOU)
    absent_lost = int((absent & ~s_present).sum())
    false_lost = int((found & ~s_present).sum())
    spans = [(a + first_frame, b + first_frame) for a, b in absence_episodes(s_visible)]
    episodes = [asdict(episode_delays(a, b, present, ious, spans[k + 1][0] if k + 1 < len(spans) else n))
                for k, (a, b) in enumerate(spans)]
    return LongTermMetrics(
        precision=precision, recall=recall, f_score=f, f_max=best_f, f_max_threshold=best_t,
        absent_frames=int(absent.sum()), absent_reported_lost=absent_lost,
        absent_lost_share=absent_lost / absent.sum() if absent.any() else float("nan"),
        found_frames=int(found.sum()), false_lost_frames=false_lost,
        false_lost_share=false_lost / found.sum() if found.any() else float("nan"),
        episodes=episodes)


def dataset_f_max(curves: list[tuple[np.ndarray, np.ndarray]],
                  thresholds: np.ndarray = SCORE_THRESHOLDS) -> tuple[float, float]:
    """VOT-LT's dataset F-max: precision and recall averaged over sequences at each threshold, then
    the best F of the averages (sequences whose target is never visible leave recall out)."""
    precisions = np.mean([c[0] for c in curves], axis=0)
    recalls = np.nanmean([c[1] for c in curves], axis=0)
    return f_max(precisions, recalls, thresholds)
