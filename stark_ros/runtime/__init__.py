"""STARK on ONNX Runtime: numpy + OpenCV + onnxruntime only (no torch, no ROS)."""

from stark_ros.runtime.engine import OrtEngine
from stark_ros.runtime.models import default_model_dir, resolve_model
from stark_ros.runtime.session import DEFAULT_PROVIDERS, ModelLoadError, RuntimeOptions
from stark_ros.runtime.tracker import StarkRuntime
from stark_ros.tracking.lost import LostSettings, TargetState, TrackEventType
from stark_ros.tracking.policy import TargetResult

__all__ = [
    "DEFAULT_PROVIDERS",
    "LostSettings",
    "ModelLoadError",
    "OrtEngine",
    "RuntimeOptions",
    "StarkRuntime",
    "TargetResult",
    "TargetState",
    "TrackEventType",
    "default_model_dir",
    "resolve_model",
]
