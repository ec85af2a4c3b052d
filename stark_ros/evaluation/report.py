"""Reports: a markdown and a JSON table, and success / precision plots with every tracker on one
figure (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stark_ros.evaluation.metrics import IOU_THRESHOLDS, PRECISION_THRESHOLDS_PX, sequence_curves

COLUMNS = (("success_auc", "AUC"), ("precision_20", "P@20px"), ("norm_precision_02", "nP@0.2"),
           ("ao", "AO"), ("sr50", "SR0.5"), ("sr75", "SR0.75"), ("fps", "fps"))


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
    for name, s in scores.items():
        lines += ["", f"## {name}", "", "| sequence | frames | " + " | ".join(c for _, c in COLUMNS) + " |",
                  "|---|---|" + "---|" * len(COLUMNS)]
        for seq, m in s["sequences"].items():
            lines.append(f"| {seq} | {m['frames']} | " + " | ".join(
                f"{m[k]:.3f}" if k != "fps" else f"{m[k]:.1f}" for k, _ in COLUMNS) + " |")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths.update(_plots(scores, curve_data, out_dir))
    return paths


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
