"""The PyTorch reference tracker: the official STARK inference rules on top of :class:`StarkModel`.

Crops, box mapping and clipping come from :mod:`stark_ros.core.geometry`, the same code the ONNX
runtime uses, so the two trackers differ only in how the network is evaluated.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stark_ros.core.geometry import clip_box, crop_around, map_box_back, normalize_patch, validate_box
from stark_ros.core.params import TrackerSettings
from stark_ros.model.stark import StarkModel


class ReferenceTracker:
    """``initialize(frame, box)`` then ``track(frame) -> (box, score)`` per frame (frames RGB uint8,
    boxes x, y, w, h). Score is the sigmoid confidence, NaN for models without a score head."""

    def __init__(self, model: StarkModel, settings: TrackerSettings | None = None):
        self.model = model.eval()
        self.settings = settings or model.config.tracker
        self.state: np.ndarray | None = None
        self.frame_id = 0
        self._templates: list[dict] = []

    def _tokens(self, frame: np.ndarray, box, factor: float, size: int) -> tuple[dict, float]:
        crop = crop_around(frame, box, factor, size)
        img = torch.from_numpy(normalize_patch(crop.patch, self.settings.mean, self.settings.std))
        mask = torch.from_numpy(crop.pad_mask[None])
        with torch.no_grad():
            return self.model.forward_backbone(img, mask), crop.resize_factor

    def initialize(self, frame: np.ndarray, box) -> None:
        box = validate_box(box, frame.shape)
        s = self.settings
        template, _ = self._tokens(frame, box, s.template_factor, s.template_size)
        # The dynamic templates start as copies of the initial one.
        self._templates = [template] * (1 + s.num_dynamic_templates)
        self.state = box
        self.frame_id = 0

    def track(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        if self.state is None:
            raise RuntimeError("track() called before initialize()")
        s = self.settings
        height, width = frame.shape[:2]
        self.frame_id += 1
        search, resize_factor = self._tokens(frame, self.state, s.search_factor, s.search_size)
        with torch.no_grad():
            out = self.model.forward_head(self._templates, search)
        pred = out["pred_boxes"].reshape(-1, 4).mean(dim=0).numpy()
        box = map_box_back(pred, self.state, resize_factor, s.search_size)
        self.state = clip_box(box, height, width, s.clip_margin)
        score = math.nan
        if out["pred_logits"] is not None:
            score = float(torch.sigmoid(out["pred_logits"].reshape(-1)[0]))
            if self.frame_id % s.update_interval == 0 and score > s.update_threshold:
                self._templates[1], _ = self._tokens(frame, self.state, s.template_factor, s.template_size)
        return self.state.copy(), score
