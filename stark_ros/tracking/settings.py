"""Inference settings of a STARK tracker: how crops are cut and normalised and when the dynamic
template is refreshed. Shared by the PyTorch reference tracker, the exporter (which writes them
into the ONNX metadata) and the ONNX runtime (which reads them back from there)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Official dynamic-template update intervals (frames) per benchmark.
UPDATE_INTERVALS = {"lasot": 200, "got10k": 200, "trackingnet": 25, "vot": 10}
DEFAULT_UPDATE_BENCHMARK = "lasot"
# The dynamic template is refreshed only when the score (sigmoid of the logit) exceeds this.
DEFAULT_UPDATE_THRESHOLD = 0.5
# Tracked boxes keep at least this many pixels inside the frame and this minimum size.
DEFAULT_CLIP_MARGIN = 10.0
# Where a target's score comes from: the network's score head, the colour similarity of the tracked
# box to the first one (stark_ros.tracking.appearance), or a combination of both
# (stark_ros.tracking.confidence). Models without a score head have no score either way.
SCORE_FROM_HEAD, SCORE_FROM_APPEARANCE, SCORE_FROM_PRODUCT, SCORE_FROM_MIN, SCORE_FROM_MEAN = SCORE_SOURCES = (
    "score_head", "appearance", "product", "min", "mean")


def settings_from_dict(cls, values: dict, what: str):
    """``cls(**values)`` for a settings dataclass read from a model's metadata, refusing names it does
    not have (a file written by another version says so instead of losing a setting silently)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return cls(**values)


def check_shares(settings, names) -> None:
    """Each of ``names`` of ``settings`` is a share in [0, 1] (NaN is none)."""
    for name in names:
        value = getattr(settings, name)
        if not 0.0 <= value <= 1.0 or math.isnan(value):
            raise ValueError(f"{name} must lie in [0, 1], got {value}")


@dataclass(frozen=True)
class TrackerSettings:
    template_factor: float = 2.0
    template_size: int = 128
    search_factor: float = 5.0
    search_size: int = 320
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Number of dynamic templates (1 for STARK-ST, 0 for STARK-S, which has no score head).
    num_dynamic_templates: int = 1
    update_interval: int = UPDATE_INTERVALS[DEFAULT_UPDATE_BENCHMARK]
    update_threshold: float = DEFAULT_UPDATE_THRESHOLD
    clip_margin: float = DEFAULT_CLIP_MARGIN
    # Share of the network's new box size taken each frame (the centre is always the network's):
    # 1 = official STARK (no smoothing); below 1 damps size noise of a model trained on little
    # data, as SiamFC damps its scale. Chosen per model on the validation split.
    size_update_rate: float = 1.0
    score_source: str = SCORE_FROM_HEAD
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if not 0.0 < self.size_update_rate <= 1.0:
            raise ValueError(f"size_update_rate must lie in (0, 1], got {self.size_update_rate}")
        if self.score_source not in SCORE_SOURCES:
            raise ValueError(f"score_source must be one of {SCORE_SOURCES}, got {self.score_source!r}")

    @property
    def has_score_head(self) -> bool:
        return self.num_dynamic_templates > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrackerSettings:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        return cls(**kwargs)


# The settings a caller may choose over the model's: the tracking rules around the network. The
# others (crop factors and sizes, normalisation, template slots) are what the network was trained
# and exported with. Name -> type an override is taken as.
OVERRIDABLE = {"update_interval": int, "update_threshold": float, "size_update_rate": float, "score_source": str}


def with_overrides(settings: TrackerSettings, **overrides) -> TrackerSettings:
    """``settings`` (the model's) with the overrides that are not None: a caller's choice beats the
    model's. Raises ``TypeError`` for a name not in :data:`OVERRIDABLE`."""
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise TypeError(f"cannot override {unknown}: only {list(OVERRIDABLE)}")
    given = {k: OVERRIDABLE[k](v) for k, v in overrides.items() if v is not None}
    return replace(settings, **given) if given else settings
