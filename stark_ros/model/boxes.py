"""The box vocabulary for tensors: the torch twin of :mod:`stark_ros.core.boxes` (same layouts),
for the box head's output and the training losses, where boxes stay on the autograd graph."""

from __future__ import annotations

import torch

from stark_ros.core.boxes import HALF


def xyxy_to_cxcywh(box: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = box.unbind(-1)
    return torch.stack(((x1 + x2) * HALF, (y1 + y2) * HALF, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = box.unbind(-1)
    return torch.stack((cx - HALF * w, cy - HALF * h, cx + HALF * w, cy + HALF * h), dim=-1)
