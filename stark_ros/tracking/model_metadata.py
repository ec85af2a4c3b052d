"""The contract between the ONNX exporter and the runtime: file names, tensor names and the
metadata (``metadata_props``) every exported graph carries. One place, read by both sides."""

from __future__ import annotations

import json
from dataclasses import dataclass

from stark_ros.tracking.lost import LostSettings
from stark_ros.tracking.redetect import RedetectSettings
from stark_ros.tracking.settings import TrackerSettings

TEMPLATE_FILE = "template.onnx"
TRACK_FILE = "track.onnx"
# The float16 twin of a graph (float32 inputs and outputs, float16 inside), for GPUs that run it.
FP16_SUFFIX = ".fp16.onnx"


def fp16_file(graph_file: str) -> str:
    """``template.onnx`` -> ``template.fp16.onnx``."""
    return graph_file.removesuffix(".onnx") + FP16_SUFFIX

# Metadata keys (values are strings; structured values are JSON).
KEY_FORMAT = "stark_ros.format"
KEY_GRAPH = "stark_ros.graph"              # "template" or "track"
KEY_VARIANT = "stark_ros.variant"
KEY_SETTINGS = "stark_ros.tracker_settings"  # TrackerSettings.to_dict() as JSON
KEY_MODEL_CONFIG = "stark_ros.model_config"  # ModelConfig.to_dict() as JSON (informational)
KEY_EXPORTER_VERSION = "stark_ros.exporter_version"
KEY_SOURCE_SHA256 = "stark_ros.source_sha256"
# Optional: the lost-target thresholds chosen for this model's score by its score study
# (LostSettings.to_dict() as JSON), and where they came from. Absent: no tuned thresholds.
KEY_LOST_SETTINGS = "stark_ros.lost_settings"
KEY_LOST_SETTINGS_SOURCE = "stark_ros.lost_settings_source"
# Optional: the re-detection settings while LOST chosen for this model (RedetectSettings.to_dict()
# as JSON), and where they came from. Absent: the generic RedetectSettings().
KEY_REDETECT_SETTINGS = "stark_ros.redetect_settings"
KEY_REDETECT_SETTINGS_SOURCE = "stark_ros.redetect_settings_source"
FORMAT_VERSION = "1"
GRAPH_TEMPLATE = "template"
GRAPH_TRACK = "track"
REQUIRED_KEYS = (KEY_FORMAT, KEY_GRAPH, KEY_VARIANT, KEY_SETTINGS, KEY_EXPORTER_VERSION, KEY_SOURCE_SHA256)

# Tensor names. Crops are normalised float32 NCHW; masks float32, 1.0 = padding (no bool tensors,
# which TensorRT rejects). Tokens are batch-first: (batch, tokens, channels).
IN_IMAGE = "image"
IN_MASK = "mask"
OUT_FEAT = "feat"
OUT_FEAT_MASK = "feat_mask"
OUT_POS = "pos"
TEMPLATE_INPUT_PREFIXES = ("template_", "dtemplate_")  # initial template, dynamic template
IN_SEARCH_IMAGE = "search_image"
IN_SEARCH_MASK = "search_mask"
OUT_BOXES = "boxes"          # (batch, 4) cx, cy, w, h normalised to the search crop
OUT_SCORE_LOGIT = "score_logit"  # (batch, 1); only for models with a score head


def token_input_names(prefix: str) -> tuple[str, str, str]:
    return prefix + OUT_FEAT, prefix + OUT_FEAT_MASK, prefix + OUT_POS


@dataclass(frozen=True)
class ModelInfo:
    variant: str
    settings: TrackerSettings
    exporter_version: str
    source_sha256: str
    # The model's own lost-target thresholds (None: it has no score study).
    lost: LostSettings | None = None
    lost_source: str = ""
    # The model's own re-detection settings (None: the generic ones).
    redetect: RedetectSettings | None = None
    redetect_source: str = ""

    @classmethod
    def from_metadata(cls, meta: dict, source: str) -> ModelInfo:
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise ValueError(f"{source}: not a stark_ros model: metadata lacks {missing} "
                             f"(export models with `python -m stark_ros.export`)")
        try:
            settings = TrackerSettings.from_dict(json.loads(meta[KEY_SETTINGS]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{source}: unreadable {KEY_SETTINGS} metadata: {exc}") from None
        lost = _optional(meta, KEY_LOST_SETTINGS, LostSettings, source)
        redetect = _optional(meta, KEY_REDETECT_SETTINGS, RedetectSettings, source)
        return cls(variant=meta[KEY_VARIANT], settings=settings,
                   exporter_version=meta[KEY_EXPORTER_VERSION], source_sha256=meta[KEY_SOURCE_SHA256],
                   lost=lost, lost_source=meta.get(KEY_LOST_SETTINGS_SOURCE, ""),
                   redetect=redetect, redetect_source=meta.get(KEY_REDETECT_SETTINGS_SOURCE, ""))


def _optional(meta: dict, key: str, kind, source: str):
    """``kind.from_dict`` of the JSON under ``key``; None where the model has none."""
    if key not in meta:
        return None
    try:
        return kind.from_dict(json.loads(meta[key]))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}: unreadable {key} metadata: {exc}") from None
