"""The box vocabulary (numpy): the one place boxes change layout. Its torch twin for network
outputs and losses is :mod:`stark_ros.model.boxes`.

Layouts, on the last axis (any leading shape):
* ``xywh``: top-left corner + size, float frame pixels: the package's boxes at every public boundary;
* ``cxcywh``: centre + size: messages (``BoundingBox2D``) and the network's box head;
* ``xyxy``: top-left + bottom-right corners: intersections, clipping and the training targets.
"""

from __future__ import annotations

import numpy as np

# The centre of a side of length s starts at s / 2 from its first edge.
HALF = 0.5


def _boxes(box) -> np.ndarray:
    return np.asarray(box, dtype=np.float64)


def xywh_to_xyxy(box) -> np.ndarray:
    b = _boxes(box)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def xyxy_to_xywh(box) -> np.ndarray:
    b = _boxes(box)
    return np.concatenate([b[..., :2], b[..., 2:4] - b[..., :2]], axis=-1)


def xywh_to_cxcywh(box) -> np.ndarray:
    b = _boxes(box)
    return np.concatenate([b[..., :2] + HALF * b[..., 2:4], b[..., 2:4]], axis=-1)


def cxcywh_to_xywh(box) -> np.ndarray:
    b = _boxes(box)
    return np.concatenate([b[..., :2] - HALF * b[..., 2:4], b[..., 2:4]], axis=-1)


def centres(box) -> np.ndarray:
    """The (cx, cy) centre of xywh boxes."""
    return xywh_to_cxcywh(box)[..., :2]
