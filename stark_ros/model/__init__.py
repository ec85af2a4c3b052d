"""STARK networks in pure PyTorch (no ROS, no ONNX Runtime)."""

from stark_ros.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    mmtracking_to_ours,
    ours_to_mmtracking,
    ours_to_official,
    save_checkpoint,
)
from stark_ros.model.config import PRESETS, ModelConfig, get_preset
from stark_ros.model.engine import TorchEngine
from stark_ros.model.stark import StarkModel, build_model
from stark_ros.model.tracker import ReferenceTracker

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ModelConfig",
    "ReferenceTracker",
    "StarkModel",
    "TorchEngine",
    "build_model",
    "get_preset",
    "load_checkpoint",
    "mmtracking_to_ours",
    "ours_to_mmtracking",
    "ours_to_official",
    "save_checkpoint",
]
