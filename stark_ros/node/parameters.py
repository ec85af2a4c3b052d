"""The tracker node's parameters, without ROS: one :class:`Parameter` entry per parameter (name,
default, description, range, whether it can change at runtime), the lost-target overrides, the
checks a new value must pass in every lifecycle state, and the runtime the parameters describe
(:func:`load_runtime`). ``config/tracker.yaml`` documents the same defaults (a test compares them);
the node turns each entry into a ROS declaration.

Adding a parameter is one entry in :data:`PARAMETERS` (and its line in ``config/tracker.yaml``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from stark_ros.core.images import DEFAULT_MAX_IMAGE_PIXELS
from stark_ros.runtime import RuntimeOptions, StarkRuntime, resolve_model
from stark_ros.tracking.lost import LostSettings
from stark_ros.tracking.redetect import RedetectSettings

LOG = logging.getLogger(__name__)

# Lost-target parameters: a negative threshold or 0 frames means "the model's own" (the thresholds
# its score study wrote into its metadata; generic LostSettings() for a model without a study).
FROM_MODEL_THRESHOLD = -1.0
FROM_MODEL_FRAMES = 0
# Re-detection's crop budget: negative means the model's own (0 is a real choice: off).
FROM_MODEL_CROPS = -1
# Service calls DDS keeps per service (rclpy's default of 10 lost 37 of 50 concurrent calls); the
# package's clients keep as many responses (stark_ros.interface.SERVICE_QUEUE_DEPTH, the same
# number: this module stays free of rclpy, a ROS test compares the two).
DEFAULT_SERVICE_QUEUE_DEPTH = 1000
# image_transport: how the node takes camera frames (launch/tracker.launch.py offers the same words).
IMAGE_TRANSPORTS = RAW_TRANSPORT, COMPRESSED_TRANSPORT = ("raw", "compressed")


@dataclass(frozen=True)
class Parameter:
    name: str
    default: Any
    description: str
    read_only: bool = True               # False: changeable at runtime (validated in every state)
    range: tuple | None = None           # (from, to), inclusive; floats or ints after the default's type
    choices: tuple | None = None         # the values a string parameter may take (ROS does not check these)

    def check(self, value) -> str | None:
        """Why ``value`` is refused, or None (the range check ROS applies too, for any caller)."""
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            return f"{self.name} must lie in [{self.range[0]}, {self.range[1]}], got {value}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        return None


PARAMETERS: dict[str, Parameter] = {p.name: p for p in (
    Parameter("model", "", "Folder with template.onnx + track.onnx; empty = the default model installed with "
              "the package."),
    Parameter("providers", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
              "ONNX Runtime execution providers in order of preference; the node reports the ones really in use."),
    Parameter("precision", "fp32", "Network arithmetic on a GPU: fp32 (exact float32, the CPU's boxes; TensorRT "
              "left out), tf32 (TF32 MatMul/Conv, CUDA or TensorRT), fp16 (TensorRT FP16 engines, or the model's "
              "float16 graphs on CUDA). The CPU computes float32 whatever is asked."),
    Parameter("trt_engine_cache_dir", "", "TensorRT engine cache folder (empty = ~/.cache/stark_ros)."),
    Parameter("intra_op_threads", 0, "ONNX Runtime CPU threads (0 = one per core).", range=(0, 256)),
    Parameter("image_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage "
              "on `<image>/compressed`, where <image> is the image topic as remapped (image_transport's convention).",
              choices=IMAGE_TRANSPORTS),
    Parameter("auto_activate", True, "Configure and activate on start (plain-node mode); false waits for a "
              "lifecycle manager."),
    Parameter("queue_size", 2, "Frames waiting for the worker; older ones are dropped (and counted).",
              range=(1, 100)),
    Parameter("frame_buffer_size", 30, "Recent frames kept for target requests stamped on an older frame.",
              range=(1, 1000)),
    Parameter("frame_buffer_max_mb", 512, "Megabytes of decoded frames the buffer keeps at most (older frames go "
              "first; the newest is always kept).", range=(1, 1 << 20)),
    Parameter("stamp_tolerance", 0.001, "Seconds between a request's stamp and a frame's stamp that still match.",
              read_only=False, range=(0.0, 1.0)),
    Parameter("request_timeout", 1.0, "Seconds a request stamped after the newest frame waits for that frame.",
              read_only=False, range=(0.0, 60.0)),
    Parameter("max_targets", 16, "Targets tracked at once; more are rejected.", read_only=False, range=(1, 256)),
    Parameter("max_pending_requests", 32, "Requests (starts and cancels, topic and services) waiting for the "
              "worker at once; more are answered 'busy' at once.", range=(1, 10000)),
    Parameter("service_queue_depth", DEFAULT_SERVICE_QUEUE_DEPTH, "Calls DDS keeps per service until the node takes "
              "them; a deeper burst is lost before the node sees it (clients need as deep a queue).",
              range=(1, 100000)),
    Parameter("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "Images with more pixels are skipped before decoding "
              "(checked from the header).", range=(1, 1 << 30)),
    Parameter("lost_threshold", FROM_MODEL_THRESHOLD, "Score below which a frame counts as not confident; "
              "negative = the model's own (from its score study).", read_only=False,
              range=(FROM_MODEL_THRESHOLD, 1.0)),
    Parameter("lost_frames", FROM_MODEL_FRAMES, "Consecutive unconfident frames before a target is LOST; 0 = the "
              "model's own.", read_only=False, range=(FROM_MODEL_FRAMES, 1000)),
    Parameter("reacquire_threshold", FROM_MODEL_THRESHOLD, "Score above which a LOST target counts towards "
              "REACQUIRED; negative = the model's own.", read_only=False, range=(FROM_MODEL_THRESHOLD, 1.0)),
    Parameter("reacquire_frames", FROM_MODEL_FRAMES, "Consecutive confident frames before a LOST target is "
              "REACQUIRED; 0 = the model's own.", read_only=False, range=(FROM_MODEL_FRAMES, 1000)),
    Parameter("redetect_crops_per_frame", FROM_MODEL_CROPS, "Re-detection while LOST: extra search crops per "
              "frame, shared by all LOST targets (0 = off); negative = the model's own.",
              range=(FROM_MODEL_CROPS, 1000)),
    Parameter("redetect_every_frames", FROM_MODEL_FRAMES, "Re-detection: tiles are cut on every this-many-th "
              "frame with a LOST target; 0 = the model's own.", range=(FROM_MODEL_FRAMES, 1000)),
    Parameter("redetect_confirm_frames", FROM_MODEL_FRAMES, "Re-detection: frames in a row a candidate must hold "
              "before it is REACQUIRED; 0 = the model's own.", range=(FROM_MODEL_FRAMES, 1000)),
    Parameter("redetect_candidate_threshold", FROM_MODEL_THRESHOLD, "Re-detection: confidence (judged like the "
              "lost thresholds) a candidate needs; negative = the model's own.",
              range=(FROM_MODEL_THRESHOLD, 1.0)),
    Parameter("update_interval", 0, "Frames between dynamic-template updates (0 = the model's default).",
              range=(0, 100000)),
    Parameter("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.1, 60.0)),
    Parameter("image_timeout", 2.0, "Seconds without a frame after which /diagnostics says 'waiting for images' "
              "(level WARN).", read_only=False, range=(0.1, 3600.0)),
    Parameter("publish_detections", True, "Also publish vision_msgs/Detection2DArray on `detections` (where "
              "vision_msgs is installed)."),
)}
LOST_PARAMETERS = ("lost_threshold", "lost_frames", "reacquire_threshold", "reacquire_frames")
# Re-detection parameters (read at configure): "redetect_" + a RedetectSettings field.
REDETECT_PREFIX = "redetect_"
REDETECT_PARAMETERS = tuple(name for name in PARAMETERS if name.startswith(REDETECT_PREFIX))


def defaults() -> dict[str, Any]:
    return {name: p.default for name, p in PARAMETERS.items()}


def lost_overrides(values: dict) -> dict:
    """The lost-target parameters that override the model's own (those not left at 'the model's')."""
    return {k: v for k, v in values.items() if k in LOST_PARAMETERS
            and not (v < 0 if isinstance(v, float) else v == FROM_MODEL_FRAMES)}


def lost_settings(model_lost: LostSettings | None, values: dict) -> LostSettings:
    """The model's lost settings (the generic ones for a model without) with the parameters'
    overrides; ValueError for a combination LostSettings refuses."""
    return replace(model_lost or LostSettings(), **lost_overrides(values))


def redetect_overrides(values: dict) -> dict:
    """The re-detection parameters that override the model's own, as RedetectSettings fields."""
    return {k[len(REDETECT_PREFIX):]: v for k, v in values.items() if k in REDETECT_PARAMETERS
            and not (v < 0 if isinstance(v, float) or k == "redetect_crops_per_frame" else v == FROM_MODEL_FRAMES)}


def redetect_settings(model_redetect: RedetectSettings, values: dict) -> RedetectSettings:
    """The model's re-detection settings with the parameters' overrides."""
    return replace(model_redetect, **redetect_overrides(values))


def check_changes(changes: dict, values: dict, model_lost: LostSettings | None) -> str | None:
    """Why parameter ``changes`` are refused (``values``: every lost parameter after them), or None."""
    for name, value in changes.items():
        parameter = PARAMETERS.get(name)
        problem = parameter.check(value) if parameter is not None else None
        if problem is not None:
            return problem
    if any(name in LOST_PARAMETERS for name in changes):
        try:
            lost_settings(model_lost, values)
        except ValueError as exc:
            return str(exc)
    return None


def load_runtime(value: Callable[[str], Any]) -> StarkRuntime:
    """The runtime the parameters (``value(name)``) describe, the model's lost-target settings with
    the parameters' overrides; ModelLoadError or ValueError when it cannot be built."""
    cache_dir = value("trt_engine_cache_dir")
    options = RuntimeOptions(providers=tuple(value("providers")), precision=value("precision"),
                             intra_op_threads=value("intra_op_threads"),
                             **({"trt_engine_cache_dir": cache_dir} if cache_dir else {}))
    runtime = StarkRuntime(resolve_model(value("model")), options, update_interval=value("update_interval") or None)
    # The model's own thresholds (the runtime has logged them and where they came from), with what
    # the parameters override: logged here only when there is something to add.
    overrides = lost_overrides({k: value(k) for k in LOST_PARAMETERS})
    if overrides:
        runtime.set_lost_settings(lost_settings(runtime.lost_settings, overrides))
        LOG.info(f"lost-target settings overridden by parameters {overrides}: {runtime.lost_settings}")
    chosen = redetect_overrides({k: value(k) for k in REDETECT_PARAMETERS})
    runtime.set_redetect_settings(redetect_settings(runtime.redetect_settings, chosen))
    origin = (f"the model's ({runtime.info.redetect_source})" if runtime.info.redetect is not None
              else "generic (none in the model's metadata)")
    LOG.info(f"re-detection while LOST: {runtime.redetect_settings}; {origin}"
             + (f", overridden by parameters {chosen}" if chosen else ""))
    return runtime
