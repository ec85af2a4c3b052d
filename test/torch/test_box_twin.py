"""The torch box vocabulary (network outputs, losses) agrees with the numpy one (everything else)."""

import numpy as np
import torch

from stark_ros.core.boxes import cxcywh_to_xywh, xywh_to_cxcywh, xywh_to_xyxy
from stark_ros.model.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

SEED = 0
BOXES = 64
FRAME_PX = 640.0
MIN_SIDE_PX = 1.0


def test_torch_twin_matches_numpy_vocabulary():
    rng = np.random.default_rng(SEED)
    xywh = np.concatenate([rng.uniform(0, FRAME_PX, (BOXES, 2)), rng.uniform(MIN_SIDE_PX, FRAME_PX, (BOXES, 2))], 1)
    xyxy = xywh_to_xyxy(xywh)
    cxcywh = xywh_to_cxcywh(xywh)
    np.testing.assert_allclose(xyxy_to_cxcywh(torch.from_numpy(xyxy)).numpy(), cxcywh, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cxcywh_to_xyxy(torch.from_numpy(cxcywh)).numpy(), xyxy, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cxcywh_to_xywh(cxcywh), xywh, rtol=1e-12, atol=1e-9)
