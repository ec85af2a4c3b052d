"""The box vocabulary (numpy), as DETR's ``box_ops`` is for its boxes: the one place boxes change
layout, move, are resized, flipped, drawn, compared by overlap and laid into messages. Its torch
twin for network outputs and losses is :mod:`stark_ros.model.boxes`.

Layouts, on the last axis (any leading shape):
* ``xywh``: top-left corner + size, float frame pixels: the package's boxes at every public boundary
  (and the layout every verb below takes and returns);
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


# ------------------------------------------------------------------------------------------ verbs
def centre_at(box, centre) -> np.ndarray:
    """``box`` moved so that its centre is ``centre`` (cx, cy); its size kept."""
    b = _boxes(box)
    return cxcywh_to_xywh(np.concatenate([np.broadcast_to(_boxes(centre), b[..., :2].shape), b[..., 2:4]], axis=-1))


def scale_about_centre(box, factor) -> np.ndarray:
    """``box`` with its sides multiplied by ``factor``, its centre kept."""
    b = _boxes(box)
    f = np.asarray(factor, dtype=np.float64)
    # Each corner moves in by (1 - factor) / 2 of the side: written so (the appearance score's core
    # of a box has always been cut this way, and the default model's scores stay bit for bit).
    return np.concatenate([b[..., :2] + b[..., 2:4] * (1 - f) * HALF, b[..., 2:4] * f], axis=-1)


def flip_horizontal(box, width) -> np.ndarray:
    """``box`` in an image of ``width`` pixels mirrored left to right."""
    b = _boxes(box)
    return np.concatenate([width - b[..., :1] - b[..., 2:3], b[..., 1:]], axis=-1)


def pixel_corners(box) -> tuple[tuple[int, int], tuple[int, int]]:
    """One box's ((x1, y1), (x2, y2)) in whole pixels, for drawing (``cv2.rectangle``): the rounded
    corner and the rounded corner plus the rounded size, so a box keeps its drawn size wherever it is."""
    x, y, w, h = (round(float(v)) for v in _boxes(box).reshape(4))
    return (x, y), (x + w, y + h)


# ---------------------------------------------------------------------------------------- overlap
def iou_xywh(a, b) -> np.ndarray:
    """Intersection over union of (x, y, w, h) boxes, broadcasting over leading axes."""
    a = xywh_to_xyxy(a)
    b = xywh_to_xyxy(b)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# --------------------------------------------------------------------------------------- messages
# ``BoundingBox2D`` (laid out like vision_msgs/BoundingBox2D: centre.position + size) holds a box as
# centre + size. The one mapping of its fields, ROS-free: the node's interface fills rclpy messages
# with it (stark_ros.interface.box_to_msg), the bag tools rosbags ones (stark_ros.bag.io).
def box_to_msg_values(box) -> tuple[float, float, float, float]:
    """One (x, y, w, h) box -> the ``BoundingBox2D`` values (center.position.x, center.position.y,
    size_x, size_y)."""
    cx, cy, w, h = (float(v) for v in xywh_to_cxcywh(_boxes(box).reshape(4)))
    return cx, cy, w, h


def msg_to_box(msg) -> np.ndarray:
    """A ``BoundingBox2D`` (an rclpy or a rosbags message, or anything laid out like it) -> (x, y, w, h)."""
    return cxcywh_to_xywh((msg.center.position.x, msg.center.position.y, msg.size_x, msg.size_y))
