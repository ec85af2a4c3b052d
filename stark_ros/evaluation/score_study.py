"""Measure how well a model's score tells present from absent, and choose its lost thresholds.

Scores are collected on the validation videos of ``shared/data/train``
(:data:`stark_ros.datasets.splits.TRAIN_VALIDATION`, never trained on; their target-centred cuts
put back into whole frames by :mod:`stark_ros.datasets.cuts`), with the lost logic off:
- PRESENT: frames where the tracked box overlaps the ground truth (IoU >= 0.5);
- ABSENT: frames of those videos where the target is really gone (NaN ground truth: hidden,
  out of view), and frames of another video (its stored cuts, real imagery edge to edge) shown to
  the tracker after its initialisation (real clutter, no target).
Each score source the model can give is measured (the score head's sigmoid, the colour appearance
of the tracked box) by ROC AUC and best balanced accuracy; the better one is chosen.
``lost_threshold`` is its best balanced-accuracy threshold; ``reacquire_threshold`` sits above, at
the score only a small share of absent frames exceed, so a reacquisition is rarely a false one.
Then the same videos are tracked with those thresholds and the lost logic on, once per search rule
of :data:`SEARCH_RULES` (where a LOST target is looked for); the rule with the best tracking AUC is
chosen, which is what a false LOST costs where the target stays in view.

    python -m stark_ros.evaluation.score_study --model models/default --out models/default --apply

``--apply`` writes the chosen source and thresholds into the model's metadata, where the runtime
(and so the node) reads its defaults.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stark_ros.core.boxes import iou_xywh
from stark_ros.datasets import Sequence, load_simple_sequence, shared_dir
from stark_ros.datasets.cuts import load_cut_sequence
from stark_ros.datasets.splits import TRAIN_VALIDATION
from stark_ros.evaluation.metrics import sequence_metrics
from stark_ros.runtime import LostSettings, RuntimeOptions, StarkRuntime
from stark_ros.tracking.lost import NEVER_LOST, TrackEventType
from stark_ros.tracking.settings import SCORE_FROM_APPEARANCE, SCORE_FROM_HEAD, SCORE_SOURCES

FOUND_IOU = 0.5            # a frame "has the target" when the tracked box overlaps the truth this much
ABSENT_FRAMES = 30         # frames of another video shown after each initialisation
FALSE_REACQUIRE_RATE = 0.02  # share of target-free frames allowed above the reacquire threshold
THRESHOLD_GRID = np.linspace(0.01, 0.99, 99)
# Frame hysteresis written with the thresholds: LOST after this many frames below the lost
# threshold, REACQUIRED after this many above the reacquire threshold (at 30 frames/s: 1/6 s
# and 1/10 s, short against a real disappearance, long against a flicker).
LOST_FRAMES = 5
REACQUIRE_FRAMES = 3
# Where a LOST target is searched for, the candidates the study compares by tracking AUC on the
# validation videos with the lost logic on (the thresholds say when a target is lost; this says
# what a false LOST costs and whether a real return is found again).
SEARCH_RULES = {
    "hold the last confident box, grow the search": {},
    "follow the network's box, grow the search": {"follow_while_lost": True},
    "follow the network's box, same search size": {"follow_while_lost": True, "max_search_growth": 1.0},
}
SCORE_LABELS = {SCORE_FROM_HEAD: "score (sigmoid of the score head)",
                SCORE_FROM_APPEARANCE: "score (colour similarity of the tracked box to the first box)"}


@dataclass
class SourceStudy:
    score_source: str
    present: list
    absent: list
    absent_hidden: int        # of the absent frames: those where the target is really gone in its own video
    roc_auc: float
    balanced_accuracy: float
    lost_threshold: float
    reacquire_threshold: float

    def summary(self) -> dict:
        d = asdict(self)
        d["present"] = {"count": len(self.present), "median": float(np.median(self.present))}
        d["absent"] = {"count": len(self.absent), "median": float(np.median(self.absent))}
        return d


@dataclass
class ScoreStudy:
    sources: dict = field(default_factory=dict)   # score source -> SourceStudy
    chosen: str = SCORE_FROM_HEAD
    sequences: list = field(default_factory=list)
    # Search rule name -> {"auc": validation tracking AUC with the lost logic on, "lost_events": n}.
    search_rules: dict = field(default_factory=dict)
    chosen_rule: str = next(iter(SEARCH_RULES))

    @property
    def best(self) -> SourceStudy:
        return self.sources[self.chosen]

    def lost_settings(self, rule: str | None = None) -> LostSettings:
        return LostSettings(lost_threshold=self.best.lost_threshold, lost_frames=LOST_FRAMES,
                            reacquire_threshold=self.best.reacquire_threshold, reacquire_frames=REACQUIRE_FRAMES,
                            **SEARCH_RULES[rule or self.chosen_rule])

    def summary(self) -> dict:
        return {"chosen_score_source": self.chosen, "sequences": self.sequences,
                "lost_settings": self.lost_settings().to_dict(),
                # The chosen source's figures at the top level (what the model card quotes).
                "lost_threshold": self.best.lost_threshold, "reacquire_threshold": self.best.reacquire_threshold,
                "balanced_accuracy": self.best.balanced_accuracy, "roc_auc": self.best.roc_auc,
                "search_while_lost": self.chosen_rule, "search_rules": self.search_rules,
                "by_source": {k: v.summary() for k, v in self.sources.items()}}


def open_model(model_dir, score_source: str | None = None, options: RuntimeOptions | None = None) -> StarkRuntime:
    """The model as the study runs it: never LOST, so every frame's score counts."""
    rt = StarkRuntime(model_dir, options or RuntimeOptions(providers=("CPUExecutionProvider",)), NEVER_LOST,
                      score_source=score_source)
    if not rt.has_score_head:
        raise ValueError(f"{model_dir}: this model has no score head; there is nothing to study")
    return rt


def collect_scores(rt: StarkRuntime, sequences: list[Sequence], clutter: list[Sequence] | None = None):
    """(present scores, absent scores, how many of the absent ones are hidden-target frames).
    ``clutter``: the videos shown for target-free frames (default: ``sequences``); for cuts pasted
    on a canvas, the stored cuts themselves, which are real imagery edge to edge (the canvas'
    blank border would make absence trivially easy to tell)."""
    clutter = clutter or sequences
    present, absent, hidden = [], [], 0
    for k, seq in enumerate(sequences):
        rt.clear()
        rt.add_target(seq.frame(0), seq.boxes[0], "t")
        for i in range(1, len(seq)):
            (r,) = rt.update(seq.frame(i))
            if not np.all(np.isfinite(seq.boxes[i])):
                absent.append(r.score)
                hidden += 1
            elif iou_xywh(r.box, seq.boxes[i]) >= FOUND_IOU:
                present.append(r.score)
        # The same template, now in another video: whatever the tracker finds there is not the target.
        other = clutter[(k + 1) % len(clutter)]
        rt.clear()
        rt.add_target(seq.frame(0), seq.boxes[0], "t")
        for i in range(min(ABSENT_FRAMES, len(other))):
            (r,) = rt.update(other.frame(i))
            absent.append(r.score)
    return np.asarray(present), np.asarray(absent), hidden


def roc_auc(present: np.ndarray, absent: np.ndarray) -> float:
    """Probability that a present frame scores above an absent one (ties count half)."""
    scores = np.concatenate([present, absent])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # Average ranks over ties.
    for value in np.unique(scores):
        tied = scores == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    n_p, n_a = len(present), len(absent)
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_a))


def choose_thresholds(present: np.ndarray, absent: np.ndarray) -> tuple[float, float, float]:
    accuracy = [0.5 * ((present >= t).mean() + (absent < t).mean()) for t in THRESHOLD_GRID]
    best = int(np.argmax(accuracy))
    lost = float(THRESHOLD_GRID[best])
    reacquire = max(lost, float(np.quantile(absent, 1.0 - FALSE_REACQUIRE_RATE)))
    return round(lost, 2), round(min(reacquire, 0.99), 2), float(accuracy[best])


def study_source(model_dir, source: str, sequences: list[Sequence], clutter=None) -> SourceStudy:
    present, absent, hidden = collect_scores(open_model(model_dir, source), sequences, clutter)
    lost, reacquire, acc = choose_thresholds(present, absent)
    return SourceStudy(source, present.tolist(), absent.tolist(), hidden, roc_auc(present, absent), acc, lost,
                       reacquire)


def plot(study: ScoreStudy, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(study.sources), figsize=(6 * len(study.sources), 4), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, s in zip(axes[0], study.sources.values(), strict=True):
        ax.hist(s.present, bins=bins, alpha=0.6, density=True, label=f"target present ({len(s.present)} frames)")
        ax.hist(s.absent, bins=bins, alpha=0.6, density=True, label=f"target absent ({len(s.absent)} frames)")
        ax.axvline(s.lost_threshold, color="k", linestyle="--", label=f"lost_threshold {s.lost_threshold:.2f}")
        ax.axvline(s.reacquire_threshold, color="r", linestyle=":",
                   label=f"reacquire_threshold {s.reacquire_threshold:.2f}")
        ax.set_xlabel(SCORE_LABELS.get(s.score_source, "score"))
        ax.set_ylabel("density")
        chosen = " (chosen)" if s.score_source == study.chosen else ""
        ax.set_title(f"{s.score_source}{chosen}: ROC AUC {s.roc_auc:.3f}, bal. acc. {s.balanced_accuracy:.3f}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def validation_sequences(names=TRAIN_VALIDATION) -> list[Sequence]:
    root = shared_dir() / "data" / "train"
    return [load_cut_sequence(root / name) for name in names]


def track_with_lost_logic(model_dir, score_source: str, lost: LostSettings, sequences: list[Sequence]) -> dict:
    """Mean success AUC over ``sequences`` with the lost logic on, and the LOST events it raised."""
    rt = StarkRuntime(model_dir, RuntimeOptions(providers=("CPUExecutionProvider",)), lost, score_source=score_source)
    aucs, lost_events = [], 0
    for seq in sequences:
        rt.clear()
        rt.add_target(seq.frame(0), seq.init_box, target_id="study")
        boxes = [seq.init_box]
        for i in range(1, len(seq)):
            (result,) = rt.update(seq.frame(i))
            boxes.append(result.box)
            lost_events += result.event is TrackEventType.LOST
        aucs.append(sequence_metrics(np.asarray(boxes)[1:], seq.boxes[1:]).success_auc)
    return {"auc": float(np.mean(aucs)), "lost_events": int(lost_events)}


def run(model_dir, sequences: list[Sequence], out_dir, sources=SCORE_SOURCES, clutter=None) -> ScoreStudy:
    study = ScoreStudy(sequences=[s.name for s in sequences])
    for source in sources:
        study.sources[source] = study_source(model_dir, source, sequences, clutter)
    study.chosen = max(study.sources.values(), key=lambda s: s.roc_auc).score_source
    for rule in SEARCH_RULES:
        study.search_rules[rule] = track_with_lost_logic(model_dir, study.chosen, study.lost_settings(rule), sequences)
    # The first rule wins ties: it is the one that never reports a box the score doubts.
    study.chosen_rule = max(SEARCH_RULES, key=lambda r: study.search_rules[r]["auc"])
    out_dir = Path(out_dir)
    plot(study, out_dir / "score_histograms.png")
    (out_dir / "score_study.json").write_text(json.dumps(study.summary(), indent=2))
    return study


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.evaluation.score_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (template.onnx + track.onnx)")
    parser.add_argument("--out", required=True, help="folder for score_histograms.png and score_study.json")
    parser.add_argument("--sequences", nargs="*", default=list(TRAIN_VALIDATION),
                        help="videos of shared/data/train to study (default: the validation split)")
    parser.add_argument("--sources", nargs="*", default=list(SCORE_SOURCES), choices=SCORE_SOURCES)
    parser.add_argument("--apply", action="store_true",
                        help="write the chosen score source and thresholds into the model's metadata")
    args = parser.parse_args(argv)
    root = shared_dir() / "data" / "train"
    clutter = [load_simple_sequence(root / name) for name in args.sequences]
    study = run(args.model, validation_sequences(args.sequences), args.out, args.sources, clutter)
    print(json.dumps({k: v for k, v in study.summary().items() if k != "by_source"}, indent=2))
    for s in study.sources.values():
        print(f"{s.score_source}: ROC AUC {s.roc_auc:.3f}, balanced accuracy {s.balanced_accuracy:.3f} "
              f"({len(s.present)} present, {len(s.absent)} absent frames, {s.absent_hidden} of them hidden-target)")
    for rule, figures in study.search_rules.items():
        mark = "  <- chosen" if rule == study.chosen_rule else ""
        print(f"while LOST, {rule}: tracking AUC {figures['auc']:.3f} with the lost logic on, "
              f"{figures['lost_events']} LOST events{mark}")
    if args.apply:
        # The exporter's metadata writer needs only onnx (no torch).
        from stark_ros.export.metadata import write_lost_settings

        source = f"score study on {len(study.sequences)} validation videos of shared/data/train"
        for path in write_lost_settings(args.model, study.lost_settings(), source, score_source=study.chosen):
            print(f"wrote the thresholds into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
