"""Run single-object trackers over datasets and score them.

Trackers follow the one protocol of the package: ``initialize(frame, box)`` then
``track(frame) -> (box, score)``. Results are the usual text files, one per sequence
(``<out>/<tracker>/<seq>.txt``: ``x,y,w,h`` per frame, the first line the initial box) with the
per-frame times beside them (``<seq>_time.txt``); sequences already done are skipped, so an
interrupted run resumes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stark_ros.datasets import Sequence
from stark_ros.evaluation.metrics import sequence_metrics

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

    @property
    def fps(self) -> float:
        t = self.times[1:]
        return float(len(t) / t.sum()) if len(t) and t.sum() > 0 else math.nan


def run_sequence(tracker, seq: Sequence) -> SequenceResult:
    boxes = np.zeros((len(seq), 4))
    times = np.zeros(len(seq))
    frame = seq.frame(0)
    t0 = time.perf_counter()
    tracker.initialize(frame, seq.init_box)
    times[0] = time.perf_counter() - t0
    boxes[0] = seq.init_box
    for i in range(1, len(seq)):
        frame = seq.frame(i)
        t0 = time.perf_counter()
        box, _ = tracker.track(frame)
        times[i] = time.perf_counter() - t0
        boxes[i] = box
    return SequenceResult(boxes, times)


def result_paths(out_dir: Path, tracker_name: str, seq_name: str) -> tuple[Path, Path]:
    folder = Path(out_dir) / tracker_name
    return folder / f"{seq_name}.txt", folder / f"{seq_name}_time.txt"


def run_dataset(tracker, tracker_name: str, sequences: list[Sequence], out_dir, progress: bool = True) -> dict:
    """Run (or resume) a tracker over sequences; returns {seq name: SequenceResult}."""
    from tqdm import tqdm

    results = {}
    for seq in tqdm(sequences, desc=tracker_name, disable=not progress):
        boxes_path, times_path = result_paths(out_dir, tracker_name, seq.name)
        if boxes_path.is_file() and times_path.is_file():
            results[seq.name] = SequenceResult(np.loadtxt(boxes_path, delimiter=",", ndmin=2),
                                               np.loadtxt(times_path, ndmin=1))
            if len(results[seq.name].boxes) == len(seq):
                continue
        res = run_sequence(tracker, seq)
        boxes_path.parent.mkdir(parents=True, exist_ok=True)
        # Written to temporary names first: an interrupted run never leaves a half result behind.
        tmp_boxes, tmp_times = boxes_path.with_suffix(".tmp"), times_path.with_suffix(".tmp")
        np.savetxt(tmp_boxes, res.boxes, fmt=RESULT_FORMAT, delimiter=",")
        np.savetxt(tmp_times, res.times, fmt="%.6f")
        tmp_boxes.replace(boxes_path)
        tmp_times.replace(times_path)
        results[seq.name] = res
    return results


def score(results: dict, sequences: list[Sequence]) -> dict:
    """Per-sequence metrics and their means (frame 0, the given box, is left out)."""
    per_seq = {}
    for seq in sequences:
        res = results[seq.name]
        m = sequence_metrics(res.boxes[1:], seq.boxes[1:]).as_dict()
        m["fps"] = res.fps
        per_seq[seq.name] = m
    keys = [k for k in next(iter(per_seq.values())) if k != "frames"]
    mean = {k: float(np.nanmean([m[k] for m in per_seq.values()])) for k in keys}
    return {"sequences": per_seq, "mean": mean}
