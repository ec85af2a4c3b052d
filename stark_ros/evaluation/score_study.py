"""Choose a model's presence confidence and its LOST / REACQUIRED hysteresis on realistic absences.

A planner stops or searches on LOST and resumes on REACQUIRED, so the confidence behind them has to
mean *presence*: low when the target is gone from the scene the tracker looks at, high while it is
tracked. The study measures that on the validation videos of ``shared/data/train``
(:data:`stark_ros.datasets.splits.TRAIN_VALIDATION`, never trained on; never ``shared/data/lt`` or
``sot``, which are for reporting): each video as it is (its real NaN rows) and with made-up
absences in its own scene (:mod:`stark_ros.datasets.absences`: the target erased, covered by
another object, the camera looking beside it).

1. **Record** (one tracking pass per video, the model's own settings, never LOST): per frame the
   tracked box, the score head's sigmoid and the colour similarity of the box to the first one
   (:mod:`stark_ros.tracking.appearance`). With the search rule "follow the network's box, same search
   size", the LOST state changes neither the box nor the search, so one pass serves every
   confidence and every hysteresis (the dynamic template, refreshed every ``update_interval``
   frames, is the one exception: not while LOST; the default model refreshes it every 200 frames,
   which only the four longest validation videos reach).
2. **Compare** confidences (:data:`CONFIDENCES`: the score head, appearance, their product,
   minimum, mean, and a logistic combination whose weights are fitted leaving the scored video
   out), each judged as it is or relative to the target's own first scores
   (:data:`REFERENCE_FRAMES`, ``LostSettings.reference_frames``), under every hysteresis of the
   grid (:func:`hysteresis_grid`: lost threshold and frames, reacquire threshold and frames),
   replaying the lost logic's own rule (:func:`replay_states`, checked against
   :class:`stark_ros.tracking.lost.LostMonitor` by the tests).
   Measured per setting: *false LOST* (share of frames tracked at IoU >= 0.5 reported LOST; mean
   over videos and worst video) and the share of absent frames reported LOST.
3. **Choose**: among the settings within :data:`MAX_FALSE_LOST_MEAN` / :data:`MAX_FALSE_LOST_VIDEO`,
   the most absent frames reported LOST (then the fewer false LOST, then the shorter delays); the
   model gets the best candidate whose score the tracking policy can give
   (:mod:`stark_ros.tracking.confidence`: the score head, appearance, their product, minimum or
   mean; the logistic combination is measured to say what it would add).

    python -m stark_ros.evaluation.score_study --model models/default --out models/default --apply

``--apply`` writes the chosen score source and thresholds into the model's metadata, where the
runtime (and so the node) reads its defaults; the records are kept in ``--records`` (default
``OUT/score_study_records``), in a folder per model (named by the checkpoint checksum in its
metadata), so that a second run on the same model only analyses and another model never reads them.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from stark_ros.datasets import Sequence, shared_dir
from stark_ros.datasets.absences import KINDS, realistic_absences
from stark_ros.datasets.cuts import load_cut_sequence
from stark_ros.datasets.splits import TRAIN_VALIDATION
from stark_ros.evaluation.longterm import FOUND_IOU, frame_ious, target_visible
from stark_ros.runtime import RuntimeOptions, StarkRuntime
from stark_ros.tracking.confidence import CONFIDENCES, confidence
from stark_ros.tracking.lost import NEVER_LOST, LostMonitor, LostSettings
from stark_ros.tracking.policy import sigmoid
from stark_ros.tracking.settings import SCORE_FROM_APPEARANCE, SCORE_FROM_HEAD, SCORE_SOURCES

LOG = logging.getLogger(__name__)

# The aim (issue 21): false LOST on frames tracked right, mean over videos and worst video; and the
# share of absent frames to report LOST.
MAX_FALSE_LOST_MEAN = 0.02
MAX_FALSE_LOST_VIDEO = 0.05
MIN_ABSENT_LOST = 0.90
# The search rule while LOST under which one tracking pass serves every hysteresis (see the module
# docstring); the re-detection of a LOST target is the tracking policy's, not chosen here.
SEARCH_RULE = {"follow_while_lost": True, "max_search_growth": 1.0}
# The hysteresis grid: thresholds every 0.02; frames to LOST (at 30 frames/s, 1 frame to 1/4 s);
# how far above the lost threshold the reacquire threshold sits; frames to REACQUIRED.
LOST_THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.02), 2)
LOST_FRAMES = (1, 2, 3, 5, 8)
REACQUIRE_MARGINS = (0.0, 0.05, 0.1, 0.2)
REACQUIRE_FRAMES = (1, 2, 3, 5)
# The candidates whose confidence histograms the study draws (beside the chosen one).
PLOTTED = (SCORE_FROM_HEAD, SCORE_FROM_APPEARANCE)
# Judging scores relative to the target's first ones (LostSettings.reference_frames): 0 = absolute.
REFERENCE_FRAMES = (0, 5, 10, 20)
# Logistic combination: Newton steps and the ridge that keeps them finite on separable data.
LOGISTIC_STEPS = 25
LOGISTIC_RIDGE = 1e-3
# Sigmoids are clipped this far from 0 and 1 before taking their logit.
LOGIT_EPS = 1e-6


@dataclass
class Records:
    """One validation sequence's tracking pass: per frame (frame 0 = initialisation, not scored)."""

    name: str
    video: str
    kind: str
    ious: np.ndarray        # IoU of the tracked box with the truth (0 where the target is absent)
    visible: np.ndarray     # the target is in the frame (ground truth not NaN)
    head: np.ndarray        # score head sigmoid
    appearance: np.ndarray  # colour similarity of the tracked box to the first one

    @property
    def found(self) -> np.ndarray:
        return self.visible & (self.ious >= FOUND_IOU)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, name=self.name, video=self.video, kind=self.kind, ious=self.ious, visible=self.visible,
                 head=self.head, appearance=self.appearance)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Records:
        with np.load(path) as d:
            return cls(str(d["name"]), str(d["video"]), str(d["kind"]), d["ious"], d["visible"].astype(bool),
                       d["head"], d["appearance"])


class _LogitTap:
    """The engine with its score logits kept: the study reads the score head's logit on the frames
    the model tracks with its own score source (a pass-through around the real engine)."""

    def __init__(self, engine):
        self.engine = engine
        self.logits = None

    def encode_templates(self, images, masks):
        return self.engine.encode_templates(images, masks)

    def predict(self, templates_by_slot, images, masks):
        boxes, logits = self.engine.predict(templates_by_slot, images, masks)
        self.logits = logits
        return boxes, logits


def record(rt: StarkRuntime, seq: Sequence) -> Records:
    """Track ``seq`` with ``rt`` (never LOST) and keep both scores of every frame."""
    if rt.uses_appearance_score is False:
        raise ValueError("the study runs the model with score_source appearance (both scores then exist)")
    tap = _LogitTap(rt.engine)
    rt.engine = tap
    try:
        rt.clear()
        rt.add_target(seq.frame(0), seq.boxes[0], "study")
        n = len(seq)
        boxes, head, appearance = np.tile(seq.boxes[0], (n, 1)), np.full(n, np.nan), np.full(n, np.nan)
        for i in range(1, n):
            (r,) = rt.update(seq.frame(i))
            boxes[i], appearance[i] = r.box, r.score
            head[i] = sigmoid(float(tap.logits[0, 0]))
    finally:
        rt.engine = tap.engine
    return Records(seq.name, seq.attributes.get("video", seq.name), seq.attributes.get("kind", "real"),
                   frame_ious(boxes, seq.boxes), target_visible(seq.boxes), head, appearance)


def validation_sequences(names=TRAIN_VALIDATION, kinds=KINDS) -> list[Sequence]:
    root = shared_dir() / "data" / "train"
    return realistic_absences([load_cut_sequence(root / name) for name in names], kinds)


# Characters of the model's checkpoint checksum that name its records folder.
RECORDS_KEY_CHARS = 16


def collect(model_dir, sequences: list[Sequence], records_dir) -> list[Records]:
    """Records of every sequence; those already in ``records_dir`` for this model (the folder named
    by its checkpoint checksum) are read back (a run resumes)."""
    rt = StarkRuntime(model_dir, RuntimeOptions(providers=("CPUExecutionProvider",)), NEVER_LOST,
                      score_source=SCORE_FROM_APPEARANCE)
    if not rt.has_score_head:
        raise ValueError(f"{model_dir}: this model has no score head; there is nothing to study")
    records_dir = Path(records_dir) / rt.info.source_sha256[:RECORDS_KEY_CHARS]
    records_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for seq in sequences:
        path = records_dir / f"{seq.name}.npz"
        if not path.is_file():
            LOG.info("recording %s (%d frames)", seq.name, len(seq))
            record(rt, seq).save(path)
        out.append(Records.load(path))
    return out


# ----------------------------------------------------------------------------------- confidences
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p / (1 - p))


def logistic_features(head: np.ndarray, appearance: np.ndarray) -> np.ndarray:
    return np.stack([_logit(head), appearance, np.ones_like(head)], axis=1)


def fit_logistic(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Weights of P(present) = sigmoid(features @ w) by Newton's method (ridge-regularised), classes
    weighed equally (present frames far outnumber absent ones)."""
    w = np.zeros(features.shape[1])
    weights = np.where(labels, 0.5 / max(1, labels.sum()), 0.5 / max(1, (~labels).sum()))
    for _ in range(LOGISTIC_STEPS):
        p = 1 / (1 + np.exp(-features @ w))
        grad = features.T @ (weights * (p - labels)) + LOGISTIC_RIDGE * w
        hess = (features * (weights * p * (1 - p))[:, None]).T @ features + LOGISTIC_RIDGE * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


# The study-only confidence: fitted per video, it has no fixed form the policy could compute.
LOGISTIC = "logistic"


def confidence_scores(records: list[Records], source: str) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Per sequence, the confidence of every frame; for the logistic combination, each video's
    scores come from weights fitted on the other videos (returned: the weights fitted on all)."""
    if source != LOGISTIC:
        return [confidence(source, r.head, r.appearance) for r in records], None

    def labelled(rs):
        feats, labels = [], []
        for r in rs:
            keep = r.found | ~r.visible
            keep[0] = False
            feats.append(logistic_features(r.head[keep], r.appearance[keep]))
            labels.append(r.found[keep])
        return np.concatenate(feats), np.concatenate(labels)

    out = []
    for r in records:
        w = fit_logistic(*labelled([o for o in records if o.video != r.video]))
        out.append(1 / (1 + np.exp(-logistic_features(r.head, r.appearance) @ w)))
    return out, fit_logistic(*labelled(records))


# ----------------------------------------------------------------------------------- hysteresis
@dataclass(frozen=True)
class Grid:
    lost_threshold: np.ndarray
    lost_frames: np.ndarray
    reacquire_threshold: np.ndarray
    reacquire_frames: np.ndarray

    def __len__(self) -> int:
        return len(self.lost_threshold)

    def subset(self, rows: np.ndarray) -> Grid:
        return Grid(self.lost_threshold[rows], self.lost_frames[rows], self.reacquire_threshold[rows],
                    self.reacquire_frames[rows])

    def settings(self, k: int) -> LostSettings:
        return LostSettings(lost_threshold=float(self.lost_threshold[k]), lost_frames=int(self.lost_frames[k]),
                            reacquire_threshold=float(self.reacquire_threshold[k]),
                            reacquire_frames=int(self.reacquire_frames[k]), **SEARCH_RULE)


def hysteresis_grid() -> Grid:
    rows = [(t, lf, min(1.0, round(t + m, 2)), rf) for t in LOST_THRESHOLDS for lf in LOST_FRAMES
            for m in REACQUIRE_MARGINS for rf in REACQUIRE_FRAMES]
    cols = list(zip(*sorted(set(rows)), strict=True))
    return Grid(np.array(cols[0]), np.array(cols[1]), np.array(cols[2]), np.array(cols[3]))


def replay_states(scores: np.ndarray, grid: Grid) -> np.ndarray:
    """(len(grid), N) bool: the target reported present on each frame under each setting; the rule
    of :meth:`stark_ros.tracking.lost.LostMonitor.observe` (states only) for many settings at once.
    Frame 0 (initialisation) is present."""
    c = len(grid)
    lost = np.zeros(c, bool)
    below = np.zeros(c, np.int64)       # frames_since_confident while tracking
    streak = np.zeros(c, np.int64)      # reacquire_streak while lost
    present = np.ones((c, len(scores)), bool)
    for i in range(1, len(scores)):
        s = scores[i]
        if np.isnan(s):
            present[:, i] = ~lost
            continue
        up = s > grid.reacquire_threshold
        grown = np.where(up, streak + 1, np.maximum(streak - 1, 0))
        reacquired = lost & up & (grown >= grid.reacquire_frames)
        confident = s >= grid.lost_threshold
        below_now = np.where(confident, 0, below + 1)
        goes_lost = ~lost & ~confident & (below_now >= grid.lost_frames)
        streak = np.where(lost & ~reacquired, grown, 0)
        below = np.where(lost, 0, below_now)
        lost = np.where(lost, ~reacquired, goes_lost)
        present[:, i] = ~lost
    return present


@dataclass
class Measured:
    """Per hysteresis setting of one confidence (arrays over the grid)."""

    false_lost_mean: np.ndarray     # mean over videos of the false-LOST share
    false_lost_worst: np.ndarray    # worst video
    absent_lost: np.ndarray         # share of all absent frames reported LOST
    absent_lost_by_kind: dict       # kind -> share
    frames_to_lost: np.ndarray      # mean over episodes (an episode never LOST counts its length)
    frames_to_found: np.ndarray     # mean over returns: frames until present at IoU >= 0.5 (never: the rest)


def measure(records: list[Records], scores: list[np.ndarray], grid: Grid) -> Measured:
    videos = sorted({r.video for r in records})
    found_by_video = {v: np.zeros(len(grid)) for v in videos}
    false_by_video = {v: np.zeros(len(grid)) for v in videos}
    kinds = sorted({r.kind for r in records})
    absent_by_kind = {k: [0, np.zeros(len(grid))] for k in kinds}
    to_lost, to_found = [], []
    for r, s in zip(records, scores, strict=True):
        present = replay_states(s, grid)
        found, absent = r.found.copy(), ~r.visible
        found[0] = absent[0] = False
        found_by_video[r.video] += found.sum()
        false_by_video[r.video] += (~present[:, found]).sum(axis=1)
        absent_by_kind[r.kind][0] += absent.sum()
        absent_by_kind[r.kind][1] += (~present[:, absent]).sum(axis=1)
        edges = np.diff(np.concatenate([[0], absent.astype(np.int8), [0]]))
        for first, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            lost_in = ~present[:, first:end]
            to_lost.append(np.where(lost_in.any(axis=1), lost_in.argmax(axis=1), end - first))
            if end < len(s):
                back = present[:, end:] & r.found[end:]
                to_found.append(np.where(back.any(axis=1), back.argmax(axis=1), len(s) - end))
    shares = np.array([false_by_video[v] / max(1, found_by_video[v][0]) for v in videos])
    absent_total = sum(v[0] for v in absent_by_kind.values())
    return Measured(
        false_lost_mean=shares.mean(axis=0), false_lost_worst=shares.max(axis=0),
        absent_lost=sum(v[1] for v in absent_by_kind.values()) / max(1, absent_total),
        absent_lost_by_kind={k: v[1] / max(1, v[0]) for k, v in absent_by_kind.items()},
        frames_to_lost=np.mean(to_lost, axis=0) if to_lost else np.zeros(len(grid)),
        frames_to_found=np.mean(to_found, axis=0) if to_found else np.zeros(len(grid)))


def choose(m: Measured) -> tuple[int, bool]:
    """(index of the chosen setting, whether it meets the false-LOST aim): the most absent frames
    reported LOST within the aim, then the fewest false LOST, then the shortest delays; with no
    setting within the aim, the one with the least false LOST over the aim."""
    feasible = (m.false_lost_mean <= MAX_FALSE_LOST_MEAN) & (m.false_lost_worst <= MAX_FALSE_LOST_VIDEO)
    if feasible.any():
        order = np.lexsort((m.frames_to_found, m.frames_to_lost, m.false_lost_mean, -m.absent_lost))
        return int(next(k for k in order if feasible[k])), True
    excess = (np.maximum(0, m.false_lost_mean - MAX_FALSE_LOST_MEAN)
              + np.maximum(0, m.false_lost_worst - MAX_FALSE_LOST_VIDEO))
    return int(np.lexsort((-m.absent_lost, excess))[0]), False


def roc_auc(present: np.ndarray, absent: np.ndarray) -> float:
    """Probability that a present frame scores above an absent one (ties count half)."""
    both = np.concatenate([present, absent])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):
        tied = both == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    n_p, n_a = len(present), len(absent)
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_a))


def frame_separation(records: list[Records], scores: list[np.ndarray]) -> dict:
    """ROC AUC of the confidence between frames tracked right and absent frames (per kind too)."""
    present = np.concatenate([s[1:][r.found[1:]] for r, s in zip(records, scores, strict=True)])
    out = {}
    for kind in [None, *sorted({r.kind for r in records})]:
        absent = [s[1:][~r.visible[1:]] for r, s in zip(records, scores, strict=True) if kind in (None, r.kind)]
        absent = np.concatenate(absent) if absent else np.zeros(0)
        if len(absent):
            out["all" if kind is None else kind] = roc_auc(present, absent)
    return out


def relative_scores(scores: np.ndarray, reference_frames: int, lost_threshold: float) -> np.ndarray:
    """What the lost logic judges with ``reference_frames`` (:meth:`LostMonitor.judged`: the score
    relative to the target's first ones judged present, which depends on the lost threshold); NaN
    frames stay NaN."""
    settings = LostSettings(lost_threshold=lost_threshold, reacquire_threshold=1.0,
                            reference_frames=reference_frames)
    monitor = LostMonitor(settings, np.zeros(4))
    return np.array([s if np.isnan(s) else monitor.judged(float(s)) for s in scores])


def judged_scores(raw: list[np.ndarray], reference_frames: int, lost_threshold: float) -> list[np.ndarray]:
    return [relative_scores(x, reference_frames, lost_threshold) for x in raw] if reference_frames else raw


def measure_judged(records: list[Records], raw: list[np.ndarray], grid: Grid, reference_frames: int) -> Measured:
    """:func:`measure` of every setting on the scores the lost logic judges; with a reference they
    depend on the setting's lost threshold, so each threshold's part of the grid is measured apart."""
    if not reference_frames:
        return measure(records, raw, grid)
    out = Measured(*(np.zeros(len(grid)) for _ in range(3)), {}, np.zeros(len(grid)), np.zeros(len(grid)))
    for threshold in np.unique(grid.lost_threshold):
        rows = np.flatnonzero(grid.lost_threshold == threshold)
        part = measure(records, judged_scores(raw, reference_frames, float(threshold)), grid.subset(rows))
        for name in ("false_lost_mean", "false_lost_worst", "absent_lost", "frames_to_lost", "frames_to_found"):
            getattr(out, name)[rows] = getattr(part, name)
        for kind, shares in part.absent_lost_by_kind.items():
            out.absent_lost_by_kind.setdefault(kind, np.zeros(len(grid)))[rows] = shares
    return out


def study(records: list[Records], sources=(*CONFIDENCES, LOGISTIC)) -> dict:
    """Per confidence and reference (``"<source>"`` for absolute scores, ``"<source>/ref<K>"``
    relative to the first K): the setting chosen on the grid and what it measures."""
    grid = hysteresis_grid()
    results = {}
    for source in sources:
        raw, weights = confidence_scores(records, source)
        for frames in REFERENCE_FRAMES:
            m = measure_judged(records, raw, grid, frames)
            k, meets = choose(m)
            chosen = replace(grid.settings(k), reference_frames=frames)
            results[candidate_name(source, frames)] = {
                "score_source": source, "reference_frames": frames,
                # Of the scores judged under the chosen setting.
                "roc_auc": frame_separation(records, judged_scores(raw, frames, chosen.lost_threshold)),
                "chosen": chosen.to_dict(), "meets_false_lost_aim": meets,
                "false_lost_mean": float(m.false_lost_mean[k]),
                "false_lost_worst_video": float(m.false_lost_worst[k]),
                "absent_lost": float(m.absent_lost[k]),
                "absent_lost_by_kind": {kind: float(v[k]) for kind, v in m.absent_lost_by_kind.items()},
                "mean_frames_to_lost": float(m.frames_to_lost[k]),
                "mean_frames_to_found": float(m.frames_to_found[k]),
                "logistic_weights": None if weights is None else weights.tolist()}
    return results


def candidate_name(source: str, reference_frames: int) -> str:
    return f"{source}/ref{reference_frames}" if reference_frames else source


def best_candidate(results: dict, deployable) -> str:
    """The deployable candidate meeting the false-LOST aim with the most absent frames reported LOST."""
    candidates = [name for name, r in results.items() if r["score_source"] in deployable]
    return max(candidates, key=lambda n: (results[n]["meets_false_lost_aim"], results[n]["absent_lost"],
                                          -results[n]["false_lost_mean"]))


def plot(records: list[Records], results: dict, names, out: Path) -> Path:
    """Histograms of the judged confidence on frames tracked right and on absent frames, one panel
    per candidate of ``names``, with its chosen lost threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, name in zip(axes[0], names, strict=True):
        r = results[name]
        raw, _ = confidence_scores(records, r["score_source"])
        scores = judged_scores(raw, r["reference_frames"], r["chosen"]["lost_threshold"])
        found = np.concatenate([x[1:][rec.found[1:]] for rec, x in zip(records, scores, strict=True)])
        absent = np.concatenate([x[1:][~rec.visible[1:]] for rec, x in zip(records, scores, strict=True)])
        ax.hist(found, bins=bins, alpha=0.6, density=True, label=f"tracked at IoU >= 0.5 ({len(found)} frames)")
        ax.hist(absent, bins=bins, alpha=0.6, density=True, label=f"target absent ({len(absent)} frames)")
        ax.axvline(r["chosen"]["lost_threshold"], color="k", linestyle="--",
                   label=f"lost_threshold {r['chosen']['lost_threshold']:.2f}")
        ax.set_xlabel(f"{name}: judged confidence")
        ax.set_ylabel("density")
        ax.set_title(f"{name}: false LOST {100 * r['false_lost_mean']:.1f}%, "
                     f"absent->LOST {100 * r['absent_lost']:.0f}%", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.evaluation.score_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (template.onnx + track.onnx)")
    parser.add_argument("--out", required=True, help="folder for score_study.json")
    parser.add_argument("--records", help="per-sequence records, one folder per model (resumable; default: "
                        "OUT/score_study_records)")
    parser.add_argument("--sequences", nargs="*", default=list(TRAIN_VALIDATION),
                        help="videos of shared/data/train to study (default: the validation split)")
    parser.add_argument("--apply", action="store_true",
                        help="write the chosen score source and thresholds into the model's metadata")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    records_dir = Path(args.records) if args.records else Path(args.out) / "score_study_records"
    records = collect(args.model, validation_sequences(args.sequences), records_dir)
    results = study(records)
    # Every confidence the tracking policy can give (all but the logistic combination).
    chosen = best_candidate(results, SCORE_SOURCES)
    summary = {
        "chosen": chosen, "chosen_score_source": results[chosen]["score_source"],
        "lost_settings": results[chosen]["chosen"],
        "sequences": [r.name for r in records],
        "frames": {"found": int(sum(r.found[1:].sum() for r in records)),
                   "absent": int(sum((~r.visible[1:]).sum() for r in records))},
        "aim": {"false_lost_mean": MAX_FALSE_LOST_MEAN, "false_lost_worst_video": MAX_FALSE_LOST_VIDEO,
                "absent_lost": MIN_ABSENT_LOST},
        "by_source": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "score_study.json").write_text(json.dumps(summary, indent=2))
    plot(records, results, tuple(dict.fromkeys((*PLOTTED, chosen))), out / "score_histograms.png")
    for name, r in results.items():
        mark = "  <- chosen" if name == chosen else ""
        auc = r["roc_auc"].get("all", float("nan"))
        print(f"{name:19s} ROC AUC {auc:.3f}  false LOST {100 * r['false_lost_mean']:.1f}% "
              f"(worst video {100 * r['false_lost_worst_video']:.1f}%)  absent->LOST {100 * r['absent_lost']:.1f}% "
              f"{ {k: round(100 * v, 1) for k, v in r['absent_lost_by_kind'].items()} }  to LOST "
              f"{r['mean_frames_to_lost']:.1f}  to found {r['mean_frames_to_found']:.1f}  {r['chosen']}{mark}")
    if args.apply:
        # The exporter's metadata writer needs only onnx (no torch).
        from stark_ros.export.metadata import write_lost_settings

        source = (f"score study on {len(TRAIN_VALIDATION)} validation videos of shared/data/train with "
                  f"realistic absences ({', '.join(KINDS)})")
        lost = LostSettings.from_dict(results[chosen]["chosen"])
        for path in write_lost_settings(args.model, lost, source, score_source=results[chosen]["score_source"]):
            print(f"wrote the thresholds into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
