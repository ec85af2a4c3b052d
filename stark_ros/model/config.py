"""Model configuration: one ``@dataclass`` and named presets (S50, ST50, ST101, LITE).

Checkpoints written by this package carry ``ModelConfig.to_dict()``, so they describe themselves.
Kept free of torch so tools can read a config without importing the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from stark_ros.tracking.settings import TrackerSettings

BACKBONES = ("resnet50", "resnet101", "efficientnet_lite0")
# Output stride of every backbone's feature map (ResNet up to layer3; EfficientNet stage 5).
BACKBONE_STRIDE = 16
# How the search tokens meet the template (ModelConfig.matching).
MATCHING_ATTENTION = "attention"
MATCHING_CORRELATION = "correlation"
MATCHINGS = (MATCHING_ATTENTION, MATCHING_CORRELATION)


@dataclass(frozen=True)
class ModelConfig:
    variant: str = "ST50"
    backbone: str = "resnet50"
    hidden_dim: int = 256
    num_heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    ffn_dim: int = 2048
    dropout: float = 0.1
    # Dropout on the attention weights; None: ``dropout`` (official). The (tokens x tokens) maps
    # make it the costliest op of a CPU training step, so the CPU recipes turn it off.
    attention_dropout: float | None = None
    # An untrained matching prior for the corner head (STARK-Lite): per search token, its best
    # cosine similarity to the initial template's target tokens (the central half of the template
    # crop), as one more input channel. A transformer learned from few videos localises objects it
    # has seen; this similarity map carries over to objects it has not. Official STARK: off.
    similarity_prior: bool = False
    # "attention" (official): template and search tokens go through the encoder together, so the
    # transformer learns both what the target looks like and how to find it. "correlation": each
    # search token is replaced by its cosine similarities to every template token (pixel-wise
    # correlation of the bottleneck features), and the transformer and heads see only those
    # similarities. They carry no appearance to memorise, so what is learned is matching, which
    # transfers to objects never seen in training; a small training set cannot teach the
    # "attention" form that (see models/default/README.md).
    matching: str = MATCHING_ATTENTION
    num_queries: int = 1
    # Channels of the first corner-head conv; each later conv halves it (256 -> 128 -> 64 -> 32).
    head_channels: int = 256
    score_head: bool = True
    score_head_layers: int = 3
    pos_temperature: float = 10000.0
    tracker: TrackerSettings = field(default_factory=TrackerSettings)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {BACKBONES}")
        if self.matching not in MATCHINGS:
            raise ValueError(f"unknown matching {self.matching!r}; expected one of {MATCHINGS}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}")
        if self.score_head != self.tracker.has_score_head:
            raise ValueError("score_head and tracker.num_dynamic_templates disagree: a model has a "
                             "score head exactly when it uses a dynamic template")

    @property
    def template_feat_size(self) -> int:
        return self.tracker.template_size // BACKBONE_STRIDE

    @property
    def search_feat_size(self) -> int:
        return self.tracker.search_size // BACKBONE_STRIDE

    @property
    def num_templates(self) -> int:
        return 1 + self.tracker.num_dynamic_templates

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tracker"] = self.tracker.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        kwargs = dict(d)
        if isinstance(kwargs.get("tracker"), dict):
            kwargs["tracker"] = TrackerSettings.from_dict(kwargs["tracker"])
        return cls(**kwargs)


_S_TRACKER = TrackerSettings(num_dynamic_templates=0)

PRESETS: dict[str, ModelConfig] = {
    "S50": ModelConfig(variant="S50", backbone="resnet50", score_head=False, tracker=_S_TRACKER),
    "ST50": ModelConfig(variant="ST50", backbone="resnet50"),
    "ST101": ModelConfig(variant="ST101", backbone="resnet101"),
    # STARK-Lite: the ST architecture on EfficientNet-Lite0 with a small transformer, sized so the
    # ONNX runtime tracks one target at >= 30 frames/s on a 2-core laptop CPU.
    # Search crops of 256 px (16x16 tokens) instead of 320 keep the context factor of 5 at 60% of
    # the backbone cost.
    "LITE": ModelConfig(variant="LITE", backbone="efficientnet_lite0", hidden_dim=128, num_heads=4,
                        enc_layers=2, dec_layers=2, ffn_dim=512, head_channels=128,
                        tracker=TrackerSettings(search_size=256)),
}


def get_preset(name: str, **overrides) -> ModelConfig:
    try:
        cfg = PRESETS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}") from None
    return replace(cfg, **overrides) if overrides else cfg
