"""The sequence type, the simple ``img/%08d.jpg`` + ``groundtruth.txt`` layout and the locator of
the project's ``shared/`` data folder."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stark_ros.core import locate

# Environment variable that points at the shared data folder when it is not ``../shared``.
SHARED_ENV = "STARK_ROS_SHARED"


class MissingSharedDataError(FileNotFoundError):
    """The shared data folder (sequences, reference fixtures) is not where we looked."""


def shared_dir() -> Path:
    """The shared data folder: ``$STARK_ROS_SHARED``, else ``../shared`` beside the repository
    (the source checkout this module runs from, else the current directory: an installed package
    does not know which checkout it was built from)."""
    candidates = [Path(os.environ[SHARED_ENV])] if os.environ.get(SHARED_ENV) else []
    checkout = locate.source_root()
    if checkout is not None:
        candidates.append(checkout.parent / "shared")
    candidates.append(Path.cwd().parent / "shared")
    for cand in candidates:
        if (cand / "data").is_dir():
            return cand.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise MissingSharedDataError(
        f"shared data not found (looked in: {looked}). Clone the project so that the 'shared' "
        f"folder sits beside the repository, or set {SHARED_ENV}=/path/to/shared.")


@dataclass
class Sequence:
    """One annotated video: frame paths and one (x, y, w, h) box per frame (NaN rows = target
    absent or not annotated)."""

    name: str
    frames: list[Path]
    boxes: np.ndarray
    attributes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def init_box(self) -> np.ndarray:
        return self.boxes[0]

    def frame(self, index: int) -> np.ndarray:
        return read_frame_rgb(self.frames[index])


def read_frame_rgb(path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; a clear error when it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


_SEPARATORS = re.compile(r"[,\s]+")


def read_boxes(path, columns: int = 4) -> np.ndarray:
    """Read one box per line, comma-, tab- or space-separated ("NaN" allowed)."""
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            values = [v for v in _SEPARATORS.split(line) if v]
            try:
                rows.append([float(v) for v in values[:columns]])
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not a box line: {line!r}") from exc
            if len(rows[-1]) != columns:
                raise ValueError(f"{path}:{lineno}: expected {columns} values, got {line!r}")
    return np.asarray(rows, dtype=np.float64).reshape(-1, columns)


def load_simple_sequence(seq_dir) -> Sequence:
    """``<seq>/img/*.jpg`` (sorted) + ``<seq>/groundtruth.txt``."""
    seq_dir = Path(seq_dir)
    frames = sorted((seq_dir / "img").glob("*.jpg"))
    if not frames:
        raise FileNotFoundError(f"no frames in {seq_dir / 'img'}")
    boxes = read_boxes(seq_dir / "groundtruth.txt")
    if len(boxes) < len(frames):
        raise ValueError(f"{seq_dir}: {len(boxes)} ground-truth boxes for {len(frames)} frames")
    return Sequence(name=seq_dir.name, frames=frames, boxes=boxes[: len(frames)])


def shared_sot_sequences(names=None) -> list[Sequence]:
    """The evaluation sequences in ``shared/data/sot`` (all, or those named)."""
    root = shared_dir() / "data" / "sot"
    dirs = sorted(p for p in root.iterdir() if (p / "img").is_dir())
    if names is not None:
        wanted = set(names)
        dirs = [d for d in dirs if d.name in wanted]
    return [load_simple_sequence(d) for d in dirs]
