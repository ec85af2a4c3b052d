"""Prediction heads: the corner head (box) and the score head (target present?)."""

from __future__ import annotations

import torch
from torch import nn

# Number of conv-BN-ReLU blocks per corner branch; each halves the channels after the first.
CORNER_BRANCH_BLOCKS = 4


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


class CornerHead(nn.Module):
    """Two conv branches produce score maps for the top-left and bottom-right corners; the
    soft-argmax of each map (expected position under its softmax) is the corner.

    Output: (N, 4) boxes (x1, y1, x2, y2) normalised to the search crop."""

    def __init__(self, in_ch: int, channels: int, feat_size: int, stride: int):
        super().__init__()
        self.feat_size = feat_size
        self.img_size = feat_size * stride
        for corner in ("tl", "br"):
            widths = [in_ch] + [channels // (2 ** i) for i in range(CORNER_BRANCH_BLOCKS)]
            for i in range(CORNER_BRANCH_BLOCKS):
                setattr(self, f"conv{i + 1}_{corner}", _conv_bn_relu(widths[i], widths[i + 1]))
            setattr(self, f"conv{CORNER_BRANCH_BLOCKS + 1}_{corner}", nn.Conv2d(widths[-1], 1, 1))
        # Pixel coordinate of every cell of the map (its top-left corner, as the official head).
        idx = torch.arange(feat_size, dtype=torch.float32) * stride
        self.register_buffer("coord_x", idx.repeat(feat_size), persistent=False)
        self.register_buffer("coord_y", idx.repeat_interleave(feat_size), persistent=False)

    def _branch(self, x: torch.Tensor, corner: str) -> torch.Tensor:
        for i in range(CORNER_BRANCH_BLOCKS + 1):
            x = getattr(self, f"conv{i + 1}_{corner}")(x)
        return x

    def _soft_argmax(self, score_map: torch.Tensor):
        prob = torch.softmax(score_map.flatten(1), dim=1)
        return (prob * self.coord_x).sum(dim=1), (prob * self.coord_y).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, y1 = self._soft_argmax(self._branch(x, "tl"))
        x2, y2 = self._soft_argmax(self._branch(x, "br"))
        return torch.stack((x1, y1, x2, y2), dim=1) / self.img_size


class ScoreHead(nn.Module):
    """MLP (ReLU between layers) from the decoder output to one logit."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        dims = [dim] * num_layers + [1]
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
