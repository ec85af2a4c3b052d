"""Two reference points for every evaluation: a box that never moves, and an untrained matcher.

``StaticBox`` reports the initial box on every frame: the floor a tracker has to clear.

``FeatureMatcher`` is a diagnostic tracker made of the STARK-Lite backbone's ImageNet features and
no training at all, SiamFC-style: the target's cells of the template crop's stride-16 features
are cross-correlated, by cosine similarity, over the search crop's features at three scales; a
cosine window favours small motion and a penalty small scale changes. A trained model that does
not beat it has learned less than the backbone already knew. It needs torch (the evaluation
imports it only when this tracker is asked for).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from stark_ros.core.boxes import centres, cxcywh_to_xywh, scale_about_centre
from stark_ros.core.geometry import crop_around, normalize_patch
from stark_ros.tracking.settings import IMAGENET_MEAN, IMAGENET_STD

STATIC_NAME = "static_box"
MATCHER_NAME = "feature_matcher_lite0"
# Backbone stride; template crop: 2 x the target's side at 128 px, so the target covers the
# central 4 x 4 cells; search crop: 5 x the side at 320 px, the same pixels per target.
STRIDE = 16
TEMPLATE_FACTOR, TEMPLATE_SIZE = 2.0, 128
SEARCH_FACTOR, SEARCH_SIZE = 5.0, 320
TARGET_CELLS = 4
# SiamFC's tracking constants (Bertinetto et al. 2016): scale steps, the penalty on a scale
# change, the damping of the size update, the cosine window's weight, response upsampling.
SCALE_STEP = 1.0375
SCALES = (SCALE_STEP ** -1, 1.0, SCALE_STEP)
SCALE_PENALTY = 0.9745
SCALE_LR = 0.59
WINDOW_INFLUENCE = 0.176
UPSAMPLE = 8
MIN_SIDE = 4.0


class StaticBox:
    """The box given at initialisation, on every frame (score NaN: it never knows)."""

    name = STATIC_NAME

    def __init__(self):
        self._box = None

    def initialize(self, frame, box) -> None:
        self._box = np.asarray(box, dtype=np.float64).copy()

    def track(self, frame):
        return self._box.copy(), math.nan


class FeatureMatcher:
    """Untrained cosine matcher on EfficientNet-Lite0 ImageNet features (see the module docstring)."""

    name = MATCHER_NAME

    def __init__(self, threads: int | None = None):
        import torch

        from stark_ros.model.backbone import EfficientNetLite0Stride16, load_lite0_imagenet_weights

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.backbone = EfficientNetLite0Stride16().eval()
        load_lite0_imagenet_weights(self.backbone)
        cells = SEARCH_SIZE // STRIDE - TARGET_CELLS + 1
        response = cells * UPSAMPLE
        hann = np.hanning(response)
        self.window = np.outer(hann, hann) / np.outer(hann, hann).sum()
        self.kernel = None
        self.box = None

    def _features(self, patches: list[np.ndarray]):
        torch = self._torch
        batch = np.concatenate([normalize_patch(p, IMAGENET_MEAN, IMAGENET_STD) for p in patches])
        with torch.no_grad():
            return self.backbone(torch.from_numpy(batch))

    def initialize(self, frame, box) -> None:
        torch = self._torch
        self.box = np.asarray(box, dtype=np.float64).copy()
        feat = self._features([crop_around(frame, self.box, TEMPLATE_FACTOR, TEMPLATE_SIZE).patch])
        start = (TEMPLATE_SIZE // STRIDE - TARGET_CELLS) // 2
        kernel = feat[:, :, start:start + TARGET_CELLS, start:start + TARGET_CELLS]
        self.kernel = kernel / torch.linalg.vector_norm(kernel).clamp_min(1e-12)

    def track(self, frame):
        torch = self._torch
        crops = [crop_around(frame, scale_about_centre(self.box, s), SEARCH_FACTOR, SEARCH_SIZE) for s in SCALES]
        feat = self._features([c.patch for c in crops])
        # Cosine similarity of the kernel with every window: correlation over the window's norm.
        corr = torch.nn.functional.conv2d(feat, self.kernel)[:, 0]
        norms = torch.nn.functional.conv2d(feat.square().sum(1, keepdim=True),
                                           torch.ones(1, 1, TARGET_CELLS, TARGET_CELLS)).sqrt()[:, 0]
        cosine = (corr / norms.clamp_min(1e-12)).numpy()
        best_score, best = -np.inf, None
        for i, s in enumerate(SCALES):
            up = cv2.resize(cosine[i], None, fx=UPSAMPLE, fy=UPSAMPLE, interpolation=cv2.INTER_CUBIC)
            up = up - up.min()
            up = up / max(up.sum(), 1e-12)
            response = (1 - WINDOW_INFLUENCE) * up + WINDOW_INFLUENCE * self.window
            if s != 1.0:
                response = response * SCALE_PENALTY
            peak = np.unravel_index(int(np.argmax(response)), response.shape)
            if response[peak] > best_score:
                best_score, best = float(response[peak]), (i, peak, float(cosine[i].max()))
        i, (py, px), cos_peak = best
        s = SCALES[i]
        centre_cell = (len(self.window) - 1) / 2
        # Response cell -> crop pixels (stride) -> frame pixels (the crop's resize factor).
        dx = (px - centre_cell) / UPSAMPLE * STRIDE / crops[i].resize_factor
        dy = (py - centre_cell) / UPSAMPLE * STRIDE / crops[i].resize_factor
        scale = 1 + SCALE_LR * (s - 1)
        w, h = self.box[2:]
        nw, nh = max(MIN_SIDE, w * scale), max(MIN_SIDE, h * scale)
        height, width = frame.shape[:2]
        # The centre moves to the response's peak, kept inside the frame.
        cx, cy = np.clip(centres(self.box) + np.array([dx, dy]), 0.0, (float(width), float(height)))
        self.box = cxcywh_to_xywh((cx, cy, nw, nh))
        return self.box.copy(), cos_peak
