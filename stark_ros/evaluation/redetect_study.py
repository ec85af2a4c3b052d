"""python -m stark_ros.evaluation.redetect_study: choose a model's re-detection settings on the
validation split (never on ``shared/data/lt`` or ``shared/data/sot``).

    python -m stark_ros.evaluation.redetect_study --out out/redetect_study            # measure the grid
    python -m stark_ros.evaluation.redetect_study --out out/redetect_study --apply    # + write the choice

The validation videos (:data:`stark_ros.datasets.splits.TRAIN_VALIDATION`) with their real absences
and the made-up ones of :mod:`stark_ros.datasets.absences` hold targets that come back where they
left; re-detection is for those that come back *elsewhere*, so each video also yields one
``elsewhere`` episode: the target erased for the episode (as ``erased``), and from its end on the
whole frame moved by :data:`ELSEWHERE_SHIFT` target sizes (a camera that panned while the target was
out of view), so that the target returns beyond its local search region. Every candidate setting runs
the default model over all of them; the measures are the long-term ones of the evaluation
(:mod:`stark_ros.evaluation.longterm`) and the frames/s, measured side by side with re-detection off.

Rule: among the settings whose frames/s stays at least :data:`MIN_SPEED_SHARE` of re-detection off's
on the same frames, the one with the highest mean F-score; ties go to the smaller budget.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stark_ros.datasets import Sequence
from stark_ros.datasets.absences import episode_span, erase
from stark_ros.datasets.splits import TRAIN_VALIDATION
from stark_ros.evaluation.longterm import longterm_metrics
from stark_ros.evaluation.runner import identity_matches, write_identity
from stark_ros.tracking.redetect import NO_REDETECTION, RedetectSettings

LOG = logging.getLogger("stark_ros.evaluation.redetect_study")
# The frame moves this many target sizes (sqrt(w*h)) at the end of an `elsewhere` episode: past the
# local search region's half side (2.5 sizes at search factor 5) with room to spare.
ELSEWHERE_SHIFT = 4.0
# Frames after the episode an `elsewhere` video keeps (the measure is how soon it is found again).
FRAMES_AFTER = 60
# The speed rule: re-detection may cost at most this share of the frames/s without it. 30 frames/s
# (the floor) of the 53 the model runs at on 2 CPU threads.
MIN_SPEED_SHARE = 30 / 53
# The budget: 4 crops every 2nd frame, 2 per LOST frame on average (a sweep of a 320 x 240 frame around
# a 33 px target, 9 tiles, takes 6 frames); at about 12 ms a crop on 2 CPU threads it keeps one target
# above 30 frames/s while it is LOST on a quarter of the frames.
BUDGET = (4, 2)
# The grid: candidate_threshold x candidate_head_threshold, confirm_frames 3 (with the sweep, found
# within 10 frames of a return).
CONFIRM_FRAMES = (3,)
CANDIDATE_THRESHOLDS = (0.5, 0.8)
HEAD_THRESHOLDS = (0.0,)
# The made-up kinds run: the target back elsewhere, and another object where it was (a look-alike
# for re-detection to resist); `erased` and `away` bring the target back where it left, which the
# local search finds.
STUDY_KINDS = ("occluded",)
# Beside the results in --out: the model and settings they were measured with.
IDENTITY_FILE = "redetect_study_identity.json"


@dataclass
class ElsewhereSequence(Sequence):
    """A validation video whose target is erased for an episode and comes back ``shift`` pixels away."""

    base: Sequence | None = None
    first: int = 0
    last: int = 0
    shift: tuple[float, float] = (0.0, 0.0)

    def frame(self, index: int) -> np.ndarray:
        frame = self.base.frame(index)
        if self.first <= index <= self.last:
            box = self.base.boxes[index]
            return erase(frame, box) if np.all(np.isfinite(box)) else frame
        if index > self.last:
            height, width = frame.shape[:2]
            move = np.float64([[1, 0, self.shift[0]], [0, 1, self.shift[1]]])
            return cv2.warpAffine(frame, move, (width, height), borderMode=cv2.BORDER_REPLICATE)
        return frame


def elsewhere(seq: Sequence) -> ElsewhereSequence:
    """``seq`` with an `elsewhere` episode: the frame moves towards the side with the most room for
    the target, by :data:`ELSEWHERE_SHIFT` target sizes (less where the frame has no room)."""
    first, last = episode_span(len(seq))
    end = min(len(seq), last + 1 + FRAMES_AFTER)
    box = seq.boxes[last + 1] if last + 1 < len(seq) and np.all(np.isfinite(seq.boxes[last + 1])) else seq.boxes[0]
    x, y, w, h = (float(v) for v in box)
    width, height = seq.frame(0).shape[1::-1]
    distance = ELSEWHERE_SHIFT * float(np.sqrt(w * h))
    room = {(1, 0): width - (x + w), (-1, 0): x, (0, 1): height - (y + h), (0, -1): y}
    (dx, dy), space = max(room.items(), key=lambda kv: kv[1])
    step = min(distance, max(0.0, space))
    shift = (dx * step, dy * step)
    boxes = seq.boxes[:end].copy()
    boxes[first:last + 1] = np.nan
    boxes[last + 1:, 0] += shift[0]
    boxes[last + 1:, 1] += shift[1]
    return ElsewhereSequence(name=f"{seq.name}+elsewhere", frames=seq.frames[:end], boxes=boxes,
                             attributes={"video": seq.name, "kind": "elsewhere"}, base=seq, first=first,
                             last=last, shift=shift)


def validation_sequences(names=TRAIN_VALIDATION) -> list[Sequence]:
    """The made-up absences of every validation video (:data:`STUDY_KINDS` and ``elsewhere``) and the
    videos with real ones (NaN rows); videos without an absence say nothing about re-detection beyond
    their false LOST frames, which the made-up ones hold too."""
    from stark_ros.evaluation.score_study import validation_sequences as with_absences

    out = []
    for seq in with_absences(names, STUDY_KINDS):
        if seq.attributes.get("kind") == "real":
            out.append(elsewhere(seq))
            if np.all(np.isfinite(seq.boxes)):
                continue
        out.append(seq)
    return out


def grid() -> list[RedetectSettings]:
    return [RedetectSettings(crops_per_frame=BUDGET[0], every_frames=BUDGET[1], confirm_frames=n,
                             candidate_threshold=t, candidate_head_threshold=h)
            for n in CONFIRM_FRAMES for t in CANDIDATE_THRESHOLDS for h in HEAD_THRESHOLDS]


def run(rt, seq: Sequence) -> tuple[dict, float, int]:
    """(long-term measures with ``ever_lost``, seconds tracking, frames) of one sequence under
    ``rt``'s settings."""
    from stark_ros.tracking.lost import TargetState

    n = len(seq)
    boxes, present = np.tile(seq.boxes[0], (n, 1)), np.ones(n, bool)
    rt.clear()
    rt.add_target(seq.frame(0), seq.boxes[0], "study")
    seconds = 0.0
    for i in range(1, n):
        frame = seq.frame(i)
        t0 = time.perf_counter()
        (r,) = rt.update(frame)
        seconds += time.perf_counter() - t0
        boxes[i], present[i] = r.box, r.state is not TargetState.LOST
    return {**longterm_metrics(boxes, seq.boxes, present).as_dict(), "ever_lost": bool((~present).any())}, \
        seconds, n - 1


def summary(per_seq: list[dict], seconds: float, frames: int) -> dict:
    episodes = [e for m in per_seq for e in m["episodes"] if e["returned"]]
    delays = [e["frames_to_reacquired"] for e in episodes]
    return {"f_score": float(np.mean([m["f_score"] for m in per_seq])),
            "precision": float(np.mean([m["precision"] for m in per_seq])),
            "recall": float(np.nanmean([m["recall"] for m in per_seq])),
            "episodes": len(episodes), "never_reacquired": sum(d is None for d in delays),
            "reacquired_within_10": sum(d is not None and d <= 10 for d in delays),
            "fps": frames / seconds if seconds else float("nan")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.evaluation.redetect_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: the installed default model)")
    parser.add_argument("--sequences", nargs="*", default=list(TRAIN_VALIDATION))
    parser.add_argument("--out", default="out/redetect_study")
    parser.add_argument("--apply", action="store_true", help="write the chosen settings into the model's metadata")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from stark_ros.runtime import StarkRuntime, resolve_model

    model = resolve_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sequences = validation_sequences(args.sequences)
    rt = StarkRuntime(model)
    results_path = out / "redetect_study.json"
    # What the results depend on besides the grid: the model's weights and its confidence and lost
    # settings. Results of another model in --out are measured again, never read back as this one's.
    identity = {"source_sha256": rt.info.source_sha256, "tracker_settings": rt.info.settings.to_dict(),
                "lost_settings": rt.info.lost.to_dict() if rt.info.lost else None,
                "sequences": list(args.sequences)}
    identity_path = out / IDENTITY_FILE
    same_model = identity_matches(identity_path, identity)
    results = json.loads(results_path.read_text()) if results_path.is_file() and same_model else {}
    write_identity(identity_path, identity)
    off_key = json.dumps(NO_REDETECTION.to_dict(), sort_keys=True)
    for settings in [NO_REDETECTION, *grid()]:
        key = json.dumps(settings.to_dict(), sort_keys=True)
        if key in results:
            continue
        rt.set_redetect_settings(settings)
        per_seq, seconds, frames, off_seconds = [], 0.0, 0, 0.0
        for k, seq in enumerate(sequences):
            off = results[off_key]["sequences"][k] if settings.enabled else None
            if off is not None and not off["ever_lost"]:
                # Re-detection acts only while LOST: a sequence never LOST without it runs the same with it.
                per_seq.append(off)
                continue
            m, s, f = run(rt, seq)
            per_seq.append({"sequence": seq.name, **m, "seconds": s, "frames": f})
            seconds += s
            frames += f
            off_seconds += off["seconds"] if off is not None else s
        row = {"settings": settings.to_dict(), **summary(per_seq, seconds, frames),
               "speed_share": off_seconds / seconds if seconds else 1.0, "sequences": per_seq}
        results[key] = row
        results_path.write_text(json.dumps(results, indent=1))
        print(f"{settings}: F {row['f_score']:.3f} Pr {row['precision']:.3f} Re {row['recall']:.3f} "
              f"reacquired<=10 {row['reacquired_within_10']}/{row['episodes']} never {row['never_reacquired']} "
              f"speed share {row['speed_share']:.2f}", flush=True)
    rows = [r for r in results.values() if r["settings"]["crops_per_frame"] > 0]
    fast = [r for r in rows if r["speed_share"] >= MIN_SPEED_SHARE] or rows
    best = max(fast, key=lambda r: (round(r["f_score"], 3), -r["settings"]["crops_per_frame"]
                                    / r["settings"]["every_frames"]))
    chosen = RedetectSettings.from_dict(best["settings"])
    print(f"chosen: {chosen} (F {best['f_score']:.3f}; off: {results[off_key]['f_score']:.3f})")
    if args.apply:
        import shutil

        from stark_ros.export.metadata import write_redetect_settings

        evidence = Path(model) / results_path.name
        if not evidence.exists() or not evidence.samefile(results_path):
            shutil.copy(results_path, evidence)   # the evidence beside the model

        source = (f"re-detection study on {len(args.sequences)} validation videos of shared/data/train with "
                  f"made-up absences ({', '.join((*STUDY_KINDS, 'elsewhere'))}) and real ones")
        for path in write_redetect_settings(model, chosen, source):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

