"""Reports: a markdown and a JSON table, and success / precision plots with every tracker on one
figure (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stark_ros.evaluation.metrics import IOU_THRESHOLDS, PRECISION_THRESHOLDS_PX, sequence_curves

COLUMNS = (("success_auc", "AUC"), ("precision_20", "P@20px"), ("norm_precision_02", "nP@0.2"),
           ("ao", "AO"), ("sr50", "SR0.5"), ("sr75", "SR0.75"), ("fps", "fps"))
# Long-term columns (stark_ros.evaluation.longterm), shares as percentages.
LONGTERM_COLUMNS = (("f_score", "F"), ("precision", "Pr"), ("recall", "Re"), ("f_max", "F-max"),
                    ("absent_lost_share", "absent->LOST %"), ("false_lost_share", "false LOST %"))
PERCENT_COLUMNS = ("absent_lost_share", "false_lost_share")
LONGTERM_NOTE = ("Long-term: VOT-LT tracking precision / recall / F with present = not LOST; F-max over the score "
                 "threshold (mean row: VOT-LT's dataset F-max of the mean curves); absent->LOST: share of frames "
                 "without the target reported LOST; false LOST: share of frames tracked at IoU >= 0.5 reported "
                 "LOST; per absence episode (frames, 1-based): frames until LOST after the disappearance and "
                 "until present at IoU >= 0.5 after the return ('never': not within the episode / before the "
                 "next one). Mean row: means over sequences; absent frames pooled in brackets.")


def curves(results: dict, sequences) -> tuple[np.ndarray, np.ndarray]:
    """Mean success and precision curves over sequences (each sequence weighs the same)."""
    per_sequence = [sequence_curves(results[seq.name].boxes[1:], seq.boxes[1:]) for seq in sequences]
    return tuple(np.mean([c[i] for c in per_sequence], axis=0) for i in range(2))


def write_report(scores: dict, curve_data: dict, out_dir, title: str = "Evaluation") -> dict:
    """scores: {tracker: score() output}; curve_data: {tracker: (success, precision)}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(scores, indent=2))
    lines = [f"# {title}", "", "| tracker | " + " | ".join(c for _, c in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for name, s in scores.items():
        lines.append(f"| {name} | " + " | ".join(f"{s['mean'][k]:.3f}" if k != "fps" else f"{s['mean'][k]:.1f}"
                                                for k, _ in COLUMNS) + " |")
    # Scores without presence records (a bag replay's) have no long-term part.
    longterm = {name: s for name, s in scores.items() if "longterm" in s["mean"]}
    if longterm:
        lines += ["", LONGTERM_NOTE, "", _longterm_header("tracker")]
    for name, s in longterm.items():
        lines.append(_longterm_mean_row(name, s["mean"]["longterm"]))
    for name, s in scores.items():
        lines += ["", f"## {name}", "", "| sequence | frames | " + " | ".join(c for _, c in COLUMNS) + " |",
                  "|---|---|" + "---|" * len(COLUMNS)]
        for seq, m in s["sequences"].items():
            lines.append(f"| {seq} | {m['frames']} | " + " | ".join(
                f"{m[k]:.3f}" if k != "fps" else f"{m[k]:.1f}" for k, _ in COLUMNS) + " |")
        if name in longterm:
            lines += ["", _longterm_header("sequence")]
            lines += [_longterm_row(seq, m["longterm"]) for seq, m in s["sequences"].items()]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths.update(_plots(scores, curve_data, out_dir))
    return paths


def _cell(key: str, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{100 * value:.1f}" if key in PERCENT_COLUMNS else f"{value:.3f}"


def _delay(frames: int | None) -> str:
    return "never" if frames is None else str(frames)


def _longterm_header(first: str) -> str:
    columns = [c for _, c in LONGTERM_COLUMNS] + ["episodes: to LOST", "to REACQUIRED"]
    return f"| {first} | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns)


def _longterm_row(label: str, m: dict) -> str:
    cells = [_cell(k, m[k]) for k, _ in LONGTERM_COLUMNS]
    # Frame numbers 1-based, as the datasets' READMEs count them.
    cells.append(", ".join(f"{e['first'] + 1}-{e['last'] + 1}: {_delay(e['frames_to_lost'])}"
                           for e in m["episodes"]) or "-")
    cells.append(", ".join(_delay(e["frames_to_reacquired"]) for e in m["episodes"] if e["returned"]) or "-")
    return f"| {label} | " + " | ".join(cells) + " |"


def _longterm_mean_row(label: str, m: dict) -> str:
    cells = [_cell(k, m[k]) for k, _ in LONGTERM_COLUMNS]
    cells[3] = _cell("f_max", m["dataset_f_max"])
    cells[4] += f" ({_cell('absent_lost_share', m['absent_lost_pooled'])})"
    if m["episodes"]:
        cells += [f"worst {_delay(m['worst_frames_to_lost'])}", f"worst {_delay(m['worst_frames_to_reacquired'])}"]
    else:
        cells += ["-", "-"]
    return f"| {label} | " + " | ".join(cells) + " |"


def _plots(scores: dict, curve_data: dict, out_dir: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for key, xs, xlabel, ylabel, fname, metric in (
        (0, IOU_THRESHOLDS, "overlap threshold", "success rate", "success.png", "success_auc"),
        (1, PRECISION_THRESHOLDS_PX, "location error threshold (px)", "precision", "precision.png", "precision_20"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        order = sorted(curve_data, key=lambda n: -scores[n]["mean"][metric])
        for name in order:
            ax.plot(xs, curve_data[name][key], label=f"{name} [{scores[name]['mean'][metric]:.3f}]")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        out[fname] = out_dir / fname
    return out
