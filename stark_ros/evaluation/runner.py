"""Run single-object trackers over datasets and score them.

Trackers follow the one protocol of the package: ``initialize(frame, box)`` then
``track(frame) -> (box, score)``; a tracker that publishes a state (the STARK trackers: their
``last_result``) also says per frame whether it reports the target present or LOST, and one that
does not (CSRT, the static box) counts as always present. Results are the usual text files, one per
sequence (``<out>/<tracker>/<seq>.txt``: ``x,y,w,h`` per frame, the first line the initial box) with
the per-frame times (``<seq>_time.txt``) and the per-frame score and presence (``<seq>_state.txt``:
``score,present``, 1 = present, 0 = LOST) beside them; sequences already done are skipped, so an
interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stark_ros.datasets import Sequence
from stark_ros.evaluation.longterm import (
    dataset_f_max,
    frame_ious,
    longterm_metrics,
    precision_recall_curves,
    target_visible,
)
from stark_ros.evaluation.metrics import sequence_metrics
from stark_ros.tracking.lost import TargetState

LOG = logging.getLogger(__name__)
RESULT_FORMAT = "%.4f"


class OpenCVBaseline:
    """A tracker that needs no weights, from OpenCV: CSRT when OpenCV's contrib modules are
    installed (opencv-contrib-python-headless), otherwise MIL, which every OpenCV build has."""

    def __init__(self, kind: str | None = None):
        makers = {"csrt": getattr(cv2, "TrackerCSRT_create", None) or getattr(getattr(cv2, "legacy", None),
                                                                                "TrackerCSRT_create", None),
                  "mil": getattr(cv2, "TrackerMIL_create", None)}
        if kind is None:
            kind = "csrt" if makers["csrt"] is not None else "mil"
        if makers.get(kind) is None:
            raise RuntimeError(f"OpenCV {cv2.__version__} has no {kind.upper()} tracker here "
                               f"(CSRT needs opencv-contrib-python-headless)")
        self.kind = kind
        self.name = f"opencv_{kind}"
        self._make = makers[kind]
        self._tracker = None
        self._box = None

    def initialize(self, frame, box) -> None:
        self._tracker = self._make()
        self._box = np.asarray(box, dtype=np.float64)
        self._tracker.init(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), tuple(round(v) for v in box))

    def track(self, frame):
        ok, box = self._tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if ok:
            self._box = np.asarray(box, dtype=np.float64)
        return self._box.copy(), math.nan if not ok else 1.0


@dataclass
class SequenceResult:
    boxes: np.ndarray
    times: np.ndarray
    scores: np.ndarray       # the tracker's confidence per frame (NaN: none; frame 0: NaN)
    present: np.ndarray      # bool per frame: the tracker reports the target present (not LOST)

    @property
    def fps(self) -> float:
        t = self.times[1:]
        return float(len(t) / t.sum()) if len(t) and t.sum() > 0 else math.nan


def reports_present(tracker) -> bool:
    """Whether the tracker's last frame reported the target present: not LOST for a tracker that
    publishes a state (``last_result.state``), always for one that does not."""
    result = getattr(tracker, "last_result", None)
    return getattr(result, "state", TargetState.TRACKING) is not TargetState.LOST


def run_sequence(tracker, seq: Sequence) -> SequenceResult:
    boxes = np.zeros((len(seq), 4))
    times = np.zeros(len(seq))
    scores = np.full(len(seq), np.nan)
    present = np.ones(len(seq), dtype=bool)
    frame = seq.frame(0)
    t0 = time.perf_counter()
    tracker.initialize(frame, seq.init_box)
    times[0] = time.perf_counter() - t0
    boxes[0] = seq.init_box
    for i in range(1, len(seq)):
        frame = seq.frame(i)
        t0 = time.perf_counter()
        box, scores[i] = tracker.track(frame)
        times[i] = time.perf_counter() - t0
        boxes[i] = box
        present[i] = reports_present(tracker)
    return SequenceResult(boxes, times, scores, present)


def result_paths(out_dir: Path, tracker_name: str, seq_name: str) -> tuple[Path, Path, Path]:
    """Boxes, times and states of one sequence."""
    folder = Path(out_dir) / tracker_name
    return folder / f"{seq_name}.txt", folder / f"{seq_name}_time.txt", folder / f"{seq_name}_state.txt"


def _load_result(paths: tuple[Path, Path, Path]) -> SequenceResult | None:
    if not all(p.is_file() for p in paths):
        return None
    states = np.loadtxt(paths[2], delimiter=",", ndmin=2)
    return SequenceResult(np.loadtxt(paths[0], delimiter=",", ndmin=2), np.loadtxt(paths[1], ndmin=1),
                          states[:, 0], states[:, 1] > 0)


# Per tracker results folder: what produced its results (a run resumes only on equal identities).
IDENTITY_FILE = "identity.json"


def identity_matches(path: Path, identity) -> bool:
    """Whether ``path`` holds ``identity``, compared as JSON gives it back (tuples come back as lists)."""
    return path.is_file() and json.loads(path.read_text()) == json.loads(json.dumps(identity))


def write_identity(path: Path, identity) -> None:
    path.write_text(json.dumps(identity, indent=1))


def run_dataset(tracker, tracker_name: str, sequences: list[Sequence], out_dir, progress: bool = True,
                identity: dict | None = None) -> dict:
    """Run (or resume) a tracker over sequences; returns {seq name: SequenceResult}. ``identity``
    (JSON-able: the model files' checksum, the settings, the dataset) is stored beside the results:
    results of another identity under the same name are recomputed, never reused."""
    from tqdm import tqdm

    folder = Path(out_dir) / tracker_name
    identity_path = folder / IDENTITY_FILE
    reuse = identity_matches(identity_path, identity)
    if folder.is_dir() and not reuse:
        # Results of another identity (or of none recorded): none of them may be read as this run's.
        LOG.warning("%s: the results in %s came from another model or settings; running it again", tracker_name,
                    folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_identity(identity_path, identity)
    results = {}
    for seq in tqdm(sequences, desc=tracker_name, disable=not progress):
        paths = result_paths(out_dir, tracker_name, seq.name)
        done = _load_result(paths) if reuse else None
        if done is not None and len(done.boxes) == len(seq):
            results[seq.name] = done
            continue
        res = run_sequence(tracker, seq)
        # Written to temporary names first: an interrupted run never leaves a half result behind.
        contents = ((res.boxes, RESULT_FORMAT, ","), (res.times, "%.6f", " "),
                    (np.stack([res.scores, res.present], axis=1), ("%.6f", "%d"), ","))
        for path, (values, fmt, delimiter) in zip(paths, contents, strict=True):
            tmp = path.with_name(path.name + ".tmp")
            np.savetxt(tmp, values, fmt=fmt, delimiter=delimiter)
            tmp.replace(path)
        results[seq.name] = res
    return results


def score(results: dict, sequences: list[Sequence]) -> dict:
    """Per-sequence metrics and their means (frame 0, the given box, is left out): the short-term
    ones (:mod:`~stark_ros.evaluation.metrics`, frames without the target left out) and the
    long-term ones (:mod:`~stark_ros.evaluation.longterm`) under ``"longterm"``."""
    per_seq, lt_curves = {}, []
    for seq in sequences:
        res = results[seq.name]
        m = sequence_metrics(res.boxes[1:], seq.boxes[1:]).as_dict()
        m["fps"] = res.fps
        m["longterm"] = longterm_metrics(res.boxes, seq.boxes, res.present, res.scores).as_dict()
        lt_curves.append(precision_recall_curves(frame_ious(res.boxes[1:], seq.boxes[1:]), res.scores[1:],
                                                 target_visible(seq.boxes[1:])))
        per_seq[seq.name] = m
    keys = [k for k in next(iter(per_seq.values())) if k not in ("frames", "longterm")]
    mean = {k: float(np.nanmean([m[k] for m in per_seq.values()])) for k in keys}
    mean["longterm"] = mean_longterm([m["longterm"] for m in per_seq.values()], lt_curves)
    return {"sequences": per_seq, "mean": mean}


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _worst(delays) -> int | None:
    """The longest delay over episodes; None when some episode never got there (or there is none)."""
    delays = list(delays)
    return None if not delays or any(d is None for d in delays) else max(delays)


def mean_longterm(per_seq: list[dict], curves: list) -> dict:
    """Means over sequences (each weighs the same, as for AUC), the pooled shares over all frames,
    VOT-LT's dataset F-max, and the worst episode delays."""
    mean = {k: _nanmean([m[k] for m in per_seq])
            for k in ("precision", "recall", "f_score", "f_max", "absent_lost_share", "false_lost_share")}
    for total, part in (("absent_frames", "absent_reported_lost"), ("found_frames", "false_lost_frames")):
        mean[total] = int(sum(m[total] for m in per_seq))
        mean[part] = int(sum(m[part] for m in per_seq))
    mean["absent_lost_pooled"] = (mean["absent_reported_lost"] / mean["absent_frames"]
                                  if mean["absent_frames"] else float("nan"))
    mean["false_lost_pooled"] = (mean["false_lost_frames"] / mean["found_frames"]
                                 if mean["found_frames"] else float("nan"))
    mean["dataset_f_max"], mean["dataset_f_max_threshold"] = dataset_f_max(curves)
    episodes = [e for m in per_seq for e in m["episodes"]]
    mean["episodes"] = len(episodes)
    mean["worst_frames_to_lost"] = _worst(e["frames_to_lost"] for e in episodes)
    mean["worst_frames_to_reacquired"] = _worst(e["frames_to_reacquired"] for e in episodes if e["returned"])
    return mean
