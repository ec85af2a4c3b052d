"""Choose the lost-target thresholds from a model's measured score distributions.

Scores are collected on frames WITH the target (normal tracking on annotated sequences, frames
where the tracked box overlaps the ground truth) and WITHOUT it (after initialisation, the tracker
is shown frames of other sequences: real clutter, no target). ``lost_threshold`` is the score that
best separates the two (balanced accuracy); ``reacquire_threshold`` sits above it, at the score
that only a small share of target-free frames exceed, so a reacquisition is rarely a false one.

    python -m stark_ros.evaluation.score_study --model models/default --out models/default
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stark_ros.core.geometry import iou_xywh
from stark_ros.core.params import SCORE_FROM_APPEARANCE, SCORE_FROM_HEAD
from stark_ros.datasets import Sequence, load_simple_sequence, shared_dir
from stark_ros.runtime import LostSettings, RuntimeOptions, StarkRuntime

FOUND_IOU = 0.5            # a frame "has the target" when the tracked box overlaps the truth this much
ABSENT_FRAMES = 30         # target-free frames shown after each initialisation
FALSE_REACQUIRE_RATE = 0.02  # share of target-free frames allowed above the reacquire threshold
THRESHOLD_GRID = np.linspace(0.01, 0.99, 99)
NEVER_LOST = LostSettings(lost_threshold=0.0, reacquire_threshold=0.0)
SCORE_LABELS = {SCORE_FROM_HEAD: "score (sigmoid of the score head)",
                SCORE_FROM_APPEARANCE: "score (colour similarity of the tracked box to the first box)"}


@dataclass
class ScoreStudy:
    present: list
    absent: list
    lost_threshold: float
    reacquire_threshold: float
    balanced_accuracy: float
    # TrackerSettings.score_source of the model studied.
    score_source: str = SCORE_FROM_HEAD

    def summary(self) -> dict:
        d = asdict(self)
        d["present"] = {"count": len(self.present), "median": float(np.median(self.present))}
        d["absent"] = {"count": len(self.absent), "median": float(np.median(self.absent))}
        return d


def open_model(model_dir, options: RuntimeOptions | None = None) -> StarkRuntime:
    """The model as the study runs it: never LOST, so every frame's score counts."""
    rt = StarkRuntime(model_dir, options or RuntimeOptions(providers=("CPUExecutionProvider",)), NEVER_LOST)
    if not rt.has_score_head:
        raise ValueError(f"{model_dir}: this model has no score head; there is nothing to study")
    return rt


def collect_scores(rt: StarkRuntime, sequences: list[Sequence]):
    present, absent = [], []
    for k, seq in enumerate(sequences):
        rt.clear()
        rt.add_target(seq.frame(0), seq.boxes[0], "t")
        for i in range(1, len(seq)):
            (r,) = rt.update(seq.frame(i))
            if np.all(np.isfinite(seq.boxes[i])) and iou_xywh(r.box, seq.boxes[i]) >= FOUND_IOU:
                present.append(r.score)
        # The same template, now in other videos: whatever the tracker finds there is not the target.
        other = sequences[(k + 1) % len(sequences)]
        rt.clear()
        rt.add_target(seq.frame(0), seq.boxes[0], "t")
        for i in range(min(ABSENT_FRAMES, len(other))):
            (r,) = rt.update(other.frame(i))
            absent.append(r.score)
    return np.asarray(present), np.asarray(absent)


def choose_thresholds(present: np.ndarray, absent: np.ndarray) -> tuple[float, float, float]:
    accuracy = [0.5 * ((present >= t).mean() + (absent < t).mean()) for t in THRESHOLD_GRID]
    best = int(np.argmax(accuracy))
    lost = float(THRESHOLD_GRID[best])
    reacquire = max(lost, float(np.quantile(absent, 1.0 - FALSE_REACQUIRE_RATE)))
    return round(lost, 2), round(min(reacquire, 0.99), 2), float(accuracy[best])


def plot(study: ScoreStudy, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    ax.hist(study.present, bins=bins, alpha=0.6, density=True, label=f"target present ({len(study.present)} frames)")
    ax.hist(study.absent, bins=bins, alpha=0.6, density=True, label=f"target absent ({len(study.absent)} frames)")
    ax.axvline(study.lost_threshold, color="k", linestyle="--", label=f"lost_threshold {study.lost_threshold:.2f}")
    ax.axvline(study.reacquire_threshold, color="r", linestyle=":",
               label=f"reacquire_threshold {study.reacquire_threshold:.2f}")
    ax.set_xlabel(SCORE_LABELS.get(study.score_source, "score"))
    ax.set_ylabel("density")
    ax.set_title("Score distributions of the model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def run(model_dir, sequences: list[Sequence], out_dir) -> ScoreStudy:
    rt = open_model(model_dir)
    present, absent = collect_scores(rt, sequences)
    lost, reacquire, acc = choose_thresholds(present, absent)
    study = ScoreStudy(present.tolist(), absent.tolist(), lost, reacquire, acc, rt.settings.score_source)
    out_dir = Path(out_dir)
    plot(study, out_dir / "score_histograms.png")
    (out_dir / "score_study.json").write_text(json.dumps(study.summary(), indent=2))
    return study


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.evaluation.score_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (template.onnx + track.onnx)")
    parser.add_argument("--out", required=True, help="folder for score_histograms.png and score_study.json")
    parser.add_argument("--data", default="train", choices=["train", "sot"],
                        help="shared/data/train (default: the thresholds never see the evaluation set) or sot")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N sequences (0: all)")
    args = parser.parse_args(argv)
    root = shared_dir() / "data" / args.data
    sequences = [load_simple_sequence(d) for d in sorted(root.iterdir()) if (d / "img").is_dir()]
    study = run(args.model, sequences[: args.limit or None], args.out)
    print(json.dumps(study.summary(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
