"""Readers for the standard single-object-tracking benchmark layouts.

Every reader returns ``list[Sequence]`` with (x, y, w, h) boxes, one per frame; frames without an
annotation are NaN rows (e.g. GOT-10k test, target absent in LaSOT is kept as annotated).

| reader | layout |
|---|---|
| ``load_otb(root)`` | ``<Seq>/img/%04d.jpg``, ``<Seq>/groundtruth_rect[.N].txt`` (several targets: ``Seq.N``) |
| ``load_lasot(root)`` | ``<class>/<class>-<n>/img/%08d.jpg``, ``.../groundtruth.txt`` |
| ``load_got10k(root, split)`` | ``<split>/<seq>/%08d.jpg``, ``<split>/<seq>/groundtruth.txt`` |
| ``load_trackingnet(root)`` | ``<chunk>/frames/<seq>/<i>.jpg`` (0-based), ``<chunk>/anno/<seq>.txt`` |
| ``load_vot(root)`` | ``<seq>/color/*.jpg`` or ``<seq>/*.jpg``, ``<seq>/groundtruth.txt`` (4 or 8 values) |
| ``load_uav123(root)`` | ``data_seq/UAV123/<seq>/%06d.jpg``, ``anno/UAV123/<seq>.txt`` |
| ``load_simple(root)`` | ``<seq>/img/%08d.jpg`` + ``<seq>/groundtruth.txt`` (``shared/data``) |

VOT polygons become their axis-aligned min/max box, the common convention of Python toolkits.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from stark_ros.datasets.base import Sequence, load_simple_sequence, read_boxes
from stark_ros.datasets.cuts import load_cuts

LOG = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VOT_POLYGON_VALUES = 8


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _numbered_images(folder: Path) -> list[Path]:
    """Images named by a frame number, in numeric order (TrackingNet: 0.jpg, 1.jpg, ... 10.jpg)."""
    return sorted(_images(folder), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))


def _check_root(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} not found")
    return root


def _sequence(name: str, frames: list[Path], boxes: np.ndarray, where: Path) -> Sequence:
    if not frames:
        raise FileNotFoundError(f"{where}: no images")
    if len(boxes) < len(frames):
        # Annotated only at the start (GOT-10k test, VOT-style first-frame files): pad with NaN.
        pad = np.full((len(frames) - len(boxes), 4), np.nan)
        boxes = np.concatenate([boxes, pad]) if len(boxes) else pad
    return Sequence(name=name, frames=frames, boxes=boxes[: len(frames)])


def polygons_to_boxes(values: np.ndarray) -> np.ndarray:
    """(N, 8) polygons x1,y1,...,x4,y4 -> (N, 4) axis-aligned min/max boxes; (N, 4) passes through."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[1] == 4:
        return values
    xs, ys = values[:, 0::2], values[:, 1::2]
    x0, y0 = xs.min(axis=1), ys.min(axis=1)
    return np.stack([x0, y0, xs.max(axis=1) - x0, ys.max(axis=1) - y0], axis=1)


def _read_vot_boxes(path: Path) -> np.ndarray:
    rows = []
    for line in path.read_text().splitlines():
        values = [v for v in re.split(r"[,\s]+", line.strip()) if v]
        if not values:
            continue
        if len(values) not in (4, VOT_POLYGON_VALUES):
            raise ValueError(f"{path}: expected 4 or 8 values per line, got {line!r}")
        nums = [float(v) for v in values]
        rows.append(nums if len(nums) == VOT_POLYGON_VALUES else nums + [np.nan] * 4)
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, VOT_POLYGON_VALUES)
    rect = np.isnan(arr[:, 4])
    out = polygons_to_boxes(np.nan_to_num(arr))
    out[rect] = arr[rect, :4]
    return out


def load_simple(root) -> list[Sequence]:
    root = _check_root(root)
    return [load_simple_sequence(d) for d in sorted(root.iterdir()) if (d / "img").is_dir()]


def load_otb(root) -> list[Sequence]:
    root = _check_root(root)
    out = []
    for seq_dir in sorted(d for d in root.iterdir() if (d / "img").is_dir()):
        frames = _images(seq_dir / "img")
        gts = sorted(seq_dir.glob("groundtruth_rect*.txt"))
        if not gts:
            raise FileNotFoundError(f"{seq_dir}: no groundtruth_rect.txt")
        for gt in gts:
            suffix = gt.name[len("groundtruth_rect"):-len(".txt")]
            out.append(_sequence(seq_dir.name + suffix, frames, read_boxes(gt), seq_dir))
    return out


def load_lasot(root, split_file=None) -> list[Sequence]:
    root = _check_root(root)
    wanted = None
    if split_file is not None:
        wanted = {line.strip() for line in Path(split_file).read_text().splitlines() if line.strip()}
    out = []
    for cls in sorted(d for d in root.iterdir() if d.is_dir()):
        for seq_dir in sorted(d for d in cls.iterdir() if (d / "img").is_dir()):
            if wanted is not None and seq_dir.name not in wanted:
                continue
            out.append(_sequence(seq_dir.name, _images(seq_dir / "img"), read_boxes(seq_dir / "groundtruth.txt"),
                                 seq_dir))
    return out


def load_got10k(root, split: str = "val") -> list[Sequence]:
    root = _check_root(root)
    base = root / split if (root / split).is_dir() else root
    listed = base / "list.txt"
    names = ([n.strip() for n in listed.read_text().splitlines() if n.strip()] if listed.is_file()
             else sorted(d.name for d in base.iterdir() if d.is_dir()))
    return [_sequence(n, _images(base / n), read_boxes(base / n / "groundtruth.txt"), base / n) for n in names]


def load_trackingnet(root, chunks=None) -> list[Sequence]:
    root = _check_root(root)
    chunk_dirs = sorted(d for d in root.iterdir() if (d / "frames").is_dir())
    if chunks is not None:
        chunk_dirs = [d for d in chunk_dirs if d.name in set(chunks)]
    out = []
    for chunk in chunk_dirs:
        for seq_dir in sorted(d for d in (chunk / "frames").iterdir() if d.is_dir()):
            anno = chunk / "anno" / f"{seq_dir.name}.txt"
            out.append(_sequence(seq_dir.name, _numbered_images(seq_dir), read_boxes(anno), seq_dir))
    return out


def load_vot(root) -> list[Sequence]:
    root = _check_root(root)
    out = []
    for seq_dir in sorted(d for d in root.iterdir() if (d / "groundtruth.txt").is_file()):
        img_dir = seq_dir / "color" if (seq_dir / "color").is_dir() else seq_dir
        out.append(_sequence(seq_dir.name, _images(img_dir), _read_vot_boxes(seq_dir / "groundtruth.txt"), seq_dir))
    return out


def load_uav123(root, subset: str = "UAV123") -> list[Sequence]:
    root = _check_root(root)
    data, anno = root / "data_seq" / subset, root / "anno" / subset
    out = []
    for ann in sorted(anno.glob("*.txt")):
        seq_dir = data / ann.stem
        if not seq_dir.is_dir():
            # Parts of one video (bird1_1, ...) take frame ranges that only the MATLAB toolkit's
            # configSeqs lists; guessing them would misalign boxes and frames.
            LOG.warning("UAV123 %s: no folder of its own (a part of a longer video); skipped", ann.stem)
            continue
        out.append(_sequence(ann.stem, _images(seq_dir), read_boxes(ann), seq_dir))
    return out


READERS = {"simple": load_simple, "cuts": load_cuts, "otb": load_otb, "lasot": load_lasot, "got10k": load_got10k,
           "trackingnet": load_trackingnet, "vot": load_vot, "uav123": load_uav123}


def load_dataset(kind: str, root) -> list[Sequence]:
    try:
        reader = READERS[kind]
    except KeyError:
        raise ValueError(f"unknown dataset layout {kind!r}; known: {sorted(READERS)}") from None
    return reader(root)
