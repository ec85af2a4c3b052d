"""Data sources of a training config -> sequences, through the readers of :mod:`stark_ros.datasets`."""

from __future__ import annotations

import logging
from pathlib import Path

from stark_ros.datasets import Sequence, load_simple_sequence, shared_dir
from stark_ros.datasets.coco import DEFAULT_SPLIT as COCO_DEFAULT_SPLIT
from stark_ros.datasets.coco import load_coco
from stark_ros.training.config import DataSource

LOG = logging.getLogger("stark_ros.training")
# Benchmark layouts read by stark_ros.datasets' readers (shared with the evaluation tools).
BENCHMARK_KINDS = ("got10k", "lasot", "trackingnet")


def resolve_root(root: str) -> Path:
    """Absolute roots as they are; relative ones inside the shared data folder."""
    path = Path(root).expanduser()
    return path if path.is_absolute() else shared_dir() / path


def _load_simple(root: Path) -> list[Sequence]:
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder {root} not found")
    dirs = sorted(d for d in root.iterdir() if (d / "img").is_dir())
    if not dirs:
        raise FileNotFoundError(f"{root} holds no sequence folder (<seq>/img/*.jpg + groundtruth.txt)")
    return [load_simple_sequence(d) for d in dirs]


def _load_benchmark(kind: str, root: Path, split: str) -> list[Sequence]:
    # Imported here so that runs on the simple layout never depend on the benchmark readers.
    from stark_ros import datasets

    if not root.is_dir():
        raise FileNotFoundError(f"{kind} data folder {root} not found")
    if kind == "got10k":
        return datasets.load_got10k(root, split=split)
    if kind == "trackingnet":
        # TRAIN_0 ... TRAIN_11 hold the training videos, TEST the test set.
        chunks = [d.name for d in root.iterdir() if d.name.lower().startswith(split.lower())]
        if not chunks:
            raise FileNotFoundError(f"TrackingNet: no {split}* chunk folder in {root}")
        return datasets.load_trackingnet(root, chunks=chunks)
    # LaSOT: every sequence under ROOT/<class>/ (restrict with include/exclude).
    return datasets.load_lasot(root)


def load_source(src: DataSource) -> list[Sequence]:
    root = resolve_root(src.root)
    if src.kind == "simple":
        found = _load_simple(root)
    elif src.kind == "coco":
        found = load_coco(root, COCO_DEFAULT_SPLIT if src.split == "train" else src.split)
    elif src.kind in BENCHMARK_KINDS:
        found = _load_benchmark(src.kind, root, src.split)
    else:
        raise ValueError(f"unknown data source kind {src.kind!r}")
    names = {s.name for s in found}
    unknown = sorted((set(src.include) | set(src.exclude)) - names)
    if unknown:
        LOG.warning("%s: include/exclude name sequences that are not there: %s", root, unknown)
    if src.include:
        found = [s for s in found if s.name in set(src.include)]
    found = [s for s in found if s.name not in set(src.exclude)]
    if not found:
        raise ValueError(f"data source {src.kind}:{root} has no sequence left after include/exclude")
    return found
