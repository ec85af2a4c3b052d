"""What training minimises and what validation measures.

Stage 1: GIoU x ``giou_weight`` + L1 x ``l1_weight`` on the corner head's x1y1x2y2 box. Stage 2:
binary cross-entropy of the score logit (plus, with ``stage2_modules``, the box loss on positive
samples x ``stage2_box_weight``). Validation: the mean IoU of the predicted boxes on positive
samples, and the score's accuracy where the model has a score head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stark_ros.model import StarkModel
from stark_ros.model.boxes import cxcywh_to_xyxy
from stark_ros.training.config import TrainConfig
from stark_ros.training.data import EpochSampledDataset, collate

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


def forward_batch(net, batch: dict) -> dict:
    """The model on a collated batch of crops or of cached backbone features."""
    if "search_feat" in batch:
        return net(batch["template_feats"], batch["template_masks"], batch["search_feat"], batch["search_mask"],
                   from_features=True)
    return net(batch["template_images"], batch["template_masks"], batch["search_image"], batch["search_mask"])


def compute_losses(out: dict, batch: dict, cfg: TrainConfig) -> dict:
    """The stage's losses of one batch: ``loss`` (what is minimised) and its parts, for the logs."""
    if cfg.stage == 2:
        losses = score_losses(out["pred_logits"], batch["label"])
        positive = batch["label"] > 0
        if cfg.stage2_modules and cfg.stage2_box_weight > 0 and bool(positive.any()):
            box = box_losses(out["pred_boxes"][positive, 0], batch["box_xyxy"][positive], cfg.optim.giou_weight,
                             cfg.optim.l1_weight)
            losses["loss"] = losses["loss"] + cfg.stage2_box_weight * box.pop("loss")
            losses.update(box)
        return losses
    return box_losses(out["pred_boxes"][:, 0], batch["box_xyxy"], cfg.optim.giou_weight, cfg.optim.l1_weight)


@torch.no_grad()
def evaluate_pairs(model: StarkModel, dataset: EpochSampledDataset, indices, batch_size: int = 8) -> dict:
    """Mean IoU of the predicted boxes on positive samples (and score accuracy, with a score head).
    Leaves the model in eval mode (the trainer sets the training modes it needs)."""
    model.eval()
    ious, correct = [], []
    indices = list(indices)
    for start in range(0, len(indices), batch_size):
        batch = collate([dataset[i] for i in indices[start:start + batch_size]])
        out = forward_batch(model, batch)
        positive = batch["label"] > 0
        _, iou = giou_and_iou(cxcywh_to_xyxy(out["pred_boxes"][:, 0]), batch["box_xyxy"])
        ious.append(iou[positive])
        if out["pred_logits"] is not None:
            correct.append(((out["pred_logits"].reshape(-1) > 0).float() == batch["label"]).float())
    result = {"iou": float(torch.cat(ious).mean()) if ious else math.nan}
    if correct:
        result["accuracy"] = float(torch.cat(correct).mean())
    return result
