"""The PyTorch engine of the tracking policy (:class:`stark_ros.tracking.policy.Engine`): a
:class:`StarkModel` evaluated eagerly, in eval mode and without gradients. No crops, no decisions:
those are the policy's, so this engine and the ONNX Runtime one differ only in how the network is run."""

from __future__ import annotations

import numpy as np
import torch

from stark_ros.model.stark import StarkModel

# A token of this engine: the backbone's token dict of one crop (feat (L, 1, C), mask (1, L), pos (L, 1, C)).
Token = dict
# Axis of the batch in each part of a token dict (tokens are sequence-first, masks batch-first).
TOKEN_BATCH_AXES = {"feat": 1, "mask": 0, "pos": 1}


class TorchEngine:
    def __init__(self, model: StarkModel):
        self.model = model.eval()

    def encode_templates(self, images: np.ndarray, masks: np.ndarray) -> list[Token]:
        with torch.no_grad():
            tokens = self.model.forward_backbone(torch.from_numpy(images), torch.from_numpy(masks))
        return [{key: value.narrow(TOKEN_BATCH_AXES[key], i, 1) for key, value in tokens.items()}
                for i in range(len(images))]

    def predict(self, templates_by_slot: list[list[Token]], images: np.ndarray,
                masks: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        templates = [{key: torch.cat([t[key] for t in tokens], dim=axis) for key, axis in TOKEN_BATCH_AXES.items()}
                     for tokens in templates_by_slot]
        with torch.no_grad():
            search = self.model.forward_backbone(torch.from_numpy(images), torch.from_numpy(masks))
            out = self.model.forward_head(templates, search)
        logits = out["pred_logits"]
        # pred_logits (N, Q, 1) -> (N, Q); pred_boxes is already (N, Q, 4).
        return out["pred_boxes"].numpy(), None if logits is None else logits[..., 0].numpy()
