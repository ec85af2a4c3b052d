"""COCO still images as one-frame "sequences" for tracker training (official STARK mixes COCO
into its training data: template and search crops are then cut from the same picture).

Layout (as distributed): ``ROOT/annotations/instances_<split>.json`` and the pictures in
``ROOT/images/<split>/`` or ``ROOT/<split>/``. Crowd annotations are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stark_ros.datasets.base import Sequence

DEFAULT_SPLIT = "train2017"


def _image_dir(root: Path, split: str) -> Path:
    for cand in (root / "images" / split, root / split):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"COCO: no image folder for split {split!r} under {root} "
                            f"(looked for images/{split}/ and {split}/)")


def load_coco(root, split: str = DEFAULT_SPLIT) -> list[Sequence]:
    """One :class:`Sequence` of one frame per non-crowd object annotation, box (x, y, w, h)."""
    root = Path(root)
    ann_file = root / "annotations" / f"instances_{split}.json"
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO: annotation file {ann_file} not found")
    try:
        data = json.loads(ann_file.read_text())
        images = {int(im["id"]): im["file_name"] for im in data["images"]}
        annotations = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"COCO: {ann_file} is not a COCO instances file ({exc})") from None
    image_dir = _image_dir(root, split)
    sequences = []
    for i, ann in enumerate(annotations):
        try:
            if ann.get("iscrowd", 0):
                continue
            image_id = int(ann["image_id"])
            box = np.asarray(ann["bbox"], dtype=np.float64).reshape(1, 4)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"COCO: {ann_file}: annotation #{i} is malformed ({exc})") from None
        if image_id not in images:
            raise ValueError(f"COCO: {ann_file}: annotation #{i} names unknown image {image_id}")
        sequences.append(Sequence(name=f"coco_{image_id}_{ann.get('id', i)}",
                                  frames=[image_dir / images[image_id]], boxes=box,
                                  attributes={"category_id": ann.get("category_id")}))
    return sequences
