"""STARK's training losses: GIoU + L1 on the box (stage 1), binary cross-entropy on the score (stage 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stark_ros.model.boxes import cxcywh_to_xyxy

# Keeps the divisions finite for degenerate (zero-area) boxes early in training.
GIOU_EPS = 1e-7


def giou_and_iou(pred_xyxy: torch.Tensor, gt_xyxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-box GIoU and IoU of matched (N, 4) x1y1x2y2 boxes. A predicted box whose corners are
    swapped has zero area (IoU 0); GIoU still tells it which way to move."""
    area_p = (pred_xyxy[:, 2] - pred_xyxy[:, 0]).clamp(min=0) * (pred_xyxy[:, 3] - pred_xyxy[:, 1]).clamp(min=0)
    area_g = (gt_xyxy[:, 2] - gt_xyxy[:, 0]).clamp(min=0) * (gt_xyxy[:, 3] - gt_xyxy[:, 1]).clamp(min=0)
    inter = (torch.min(pred_xyxy[:, 2:], gt_xyxy[:, 2:]) - torch.max(pred_xyxy[:, :2], gt_xyxy[:, :2])).clamp(min=0)
    inter = inter.prod(dim=1)
    union = area_p + area_g - inter
    iou = inter / (union + GIOU_EPS)
    hull = (torch.max(pred_xyxy[:, 2:], gt_xyxy[:, 2:]) - torch.min(pred_xyxy[:, :2], gt_xyxy[:, :2])).clamp(min=0)
    hull = hull.prod(dim=1)
    return iou - (hull - union) / (hull + GIOU_EPS), iou


def box_losses(pred_cxcywh: torch.Tensor, gt_xyxy: torch.Tensor, giou_weight: float, l1_weight: float) -> dict:
    """Stage 1: ``giou_weight`` x (1 - GIoU) + ``l1_weight`` x L1, means over the batch."""
    pred = cxcywh_to_xyxy(pred_cxcywh.float())
    if not torch.isfinite(pred).all():
        raise FloatingPointError("the network predicted non-finite boxes (learning rate too high?)")
    giou, iou = giou_and_iou(pred, gt_xyxy)
    giou_loss = (1 - giou).mean()
    l1 = F.l1_loss(pred, gt_xyxy)
    loss = giou_weight * giou_loss + l1_weight * l1
    return {"loss": loss, "giou": giou_loss.detach(), "l1": l1.detach(), "iou": iou.mean().detach()}


def score_losses(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Stage 2: BCE of the score logit against 1 (target in the search crop) / 0 (not)."""
    logits = logits.float().reshape(-1)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    acc = ((logits > 0).float() == labels).float().mean()
    return {"loss": loss, "bce": loss.detach(), "accuracy": acc.detach()}
