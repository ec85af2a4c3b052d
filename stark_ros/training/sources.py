"""The data of a training config: its sources read into sequences (through the readers of
:mod:`stark_ros.datasets`), split into training and validation sequences, and made into the
training and validation datasets: pairs of crops (:class:`PairDataset`), or, with
``data.feature_cache``, pairs of cached backbone features (:class:`CachedPairDataset`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from stark_ros.datasets import Sequence, load_simple_sequence, shared_dir
from stark_ros.datasets.coco import DEFAULT_SPLIT as COCO_DEFAULT_SPLIT
from stark_ros.datasets.coco import load_coco
from stark_ros.model import StarkModel
from stark_ros.training.config import DataSource, TrainConfig
from stark_ros.training.data import PairDataset
from stark_ros.training.feature_cache import META as CACHE_META
from stark_ros.training.feature_cache import (
    CachedPairDataset,
    CacheSpec,
    FeatureCache,
    MadeAbsenceSpec,
    build_feature_cache,
    build_made_absences,
    made_absences_match,
)

LOG = logging.getLogger("stark_ros.training")
# Benchmark layouts read by stark_ros.datasets' readers (shared with the evaluation tools).
BENCHMARK_KINDS = ("got10k", "lasot", "trackingnet")


def resolve_root(root: str) -> Path:
    """Absolute roots as they are; relative ones inside the shared data folder."""
    path = Path(root).expanduser()
    return path if path.is_absolute() else shared_dir() / path


def _load_simple(root: Path) -> list[Sequence]:
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder {root} not found")
    dirs = sorted(d for d in root.iterdir() if (d / "img").is_dir())
    if not dirs:
        raise FileNotFoundError(f"{root} holds no sequence folder (<seq>/img/*.jpg + groundtruth.txt)")
    return [load_simple_sequence(d) for d in dirs]


def _load_benchmark(kind: str, root: Path, split: str) -> list[Sequence]:
    # Imported here so that runs on the simple layout never depend on the benchmark readers.
    from stark_ros import datasets

    if not root.is_dir():
        raise FileNotFoundError(f"{kind} data folder {root} not found")
    if kind == "got10k":
        return datasets.load_got10k(root, split=split)
    if kind == "trackingnet":
        # TRAIN_0 ... TRAIN_11 hold the training videos, TEST the test set.
        chunks = [d.name for d in root.iterdir() if d.name.lower().startswith(split.lower())]
        if not chunks:
            raise FileNotFoundError(f"TrackingNet: no {split}* chunk folder in {root}")
        return datasets.load_trackingnet(root, chunks=chunks)
    # LaSOT: every sequence under ROOT/<class>/ (restrict with include/exclude).
    return datasets.load_lasot(root)


def load_source(src: DataSource) -> list[Sequence]:
    root = resolve_root(src.root)
    if src.kind == "simple":
        found = _load_simple(root)
    elif src.kind == "coco":
        found = load_coco(root, COCO_DEFAULT_SPLIT if src.split == "train" else src.split)
    elif src.kind in BENCHMARK_KINDS:
        found = _load_benchmark(src.kind, root, src.split)
    else:
        raise ValueError(f"unknown data source kind {src.kind!r}")
    names = {s.name for s in found}
    unknown = sorted((set(src.include) | set(src.exclude)) - names)
    if unknown:
        LOG.warning("%s: include/exclude name sequences that are not there: %s", root, unknown)
    if src.include:
        found = [s for s in found if s.name in set(src.include)]
    found = [s for s in found if s.name not in set(src.exclude)]
    if not found:
        raise ValueError(f"data source {src.kind}:{root} has no sequence left after include/exclude")
    return found


@dataclass
class Split:
    """A config's sequences: ``train`` one list per source (held-out and, with ``data.train_only``,
    left-out sequences removed), ``validation`` the held-out ones, ``everything`` all of them."""

    train: list[list[Sequence]]
    validation: list[Sequence]
    everything: list[Sequence]


def split_sources(cfg: TrainConfig) -> Split:
    """Read every source of ``cfg.data`` and split off ``data.validation`` (and ``data.train_only``)."""
    sources = [load_source(src) for src in cfg.data.sources]
    held_out = set(cfg.data.validation)
    found = {s.name for seqs in sources for s in seqs}
    if held_out - found:
        raise ValueError(f"data.validation names sequences no source has: {sorted(held_out - found)}")
    for src, seqs in zip(cfg.data.sources, sources, strict=True):
        LOG.info("data %s:%s (weight %g): %d sequences (%d held out for validation)", src.kind, src.root,
                 src.weight, len(seqs), sum(s.name in held_out for s in seqs))
        LOG.debug("sequences: %s", ", ".join(s.name for s in seqs))
    only = set(cfg.data.train_only)
    if only - found:
        raise ValueError(f"data.train_only names sequences no source has: {sorted(only - found)}")
    if only & held_out:
        raise ValueError(f"data.train_only and data.validation share {sorted(only & held_out)}")
    train = [[s for s in seqs if s.name not in held_out and (not only or s.name in only)] for seqs in sources]
    return Split(train=train, validation=[s for seqs in sources for s in seqs if s.name in held_out],
                 everything=[s for seqs in sources for s in seqs])


def feature_cache_dir(cfg: TrainConfig) -> Path:
    """``data.feature_cache``; a relative path lies inside ``work_dir``."""
    path = Path(cfg.data.feature_cache).expanduser()
    return path if path.is_absolute() else Path(cfg.work_dir) / path


def build_datasets(cfg: TrainConfig, model: StarkModel):
    """Training dataset and validation dataset (None without ``data.validation``): pairs of crops,
    or, with ``data.feature_cache``, pairs of cached backbone features (the cache is built on
    first use from every source sequence, the validation ones included)."""
    split = split_sources(cfg)
    if cfg.data.feature_cache:
        return _cached_datasets(cfg, model, split)
    data, settings = cfg.data, model.config.tracker

    def crops(sources, weights, samples):
        return PairDataset(sources, weights, settings, samples, data.max_gap, data.aug, model.config.num_templates,
                           negative_prob=_negative_prob(cfg), negative_same_frame_prob=data.negative_same_frame_prob,
                           seed=cfg.seed)
    weights = [s.weight for s in data.sources]
    train = crops([s for s in split.train if s], [w for s, w in zip(split.train, weights, strict=True) if s],
                  data.samples_per_epoch)
    val = crops([split.validation], [1.0], data.val_samples) if split.validation else None
    return train, val


def _negative_prob(cfg: TrainConfig) -> float:
    """Stage 2 draws negatives for the score head; stage 1 (the box) never does."""
    return cfg.data.negative_prob if cfg.stage == 2 else 0.0


def _cached_datasets(cfg: TrainConfig, model: StarkModel, split: Split):
    data = cfg.data
    folder = feature_cache_dir(cfg)
    if not (folder / CACHE_META).is_file():
        LOG.info("feature cache %s: building it (backbone features of every augmented crop)", folder)
        build_feature_cache(folder, split.everything, model.backbone, model.config.tracker, data.aug,
                            CacheSpec(data.cache_template_variants, data.cache_search_variants, cfg.seed))
    if cfg.stage == 2 and data.negative_made_prob > 0:
        occluder_sources = [s for seqs in split.train for s in seqs]
        spec = MadeAbsenceSpec(data.made_absences_every, cfg.seed)
        if not made_absences_match(folder, model.backbone, model.config.tracker, data.aug, occluder_sources, spec):
            LOG.info("feature cache %s: adding made absences (the score head's negatives from the videos' "
                     "own scenes)", folder)
            build_made_absences(folder, split.everything, model.backbone, model.config.tracker, data.aug,
                                occluder_sources, spec)
    cache = FeatureCache(folder)
    cache.check_backbone(model.backbone)
    if len(data.sources) > 1:
        LOG.warning("feature cache: source weights are not applied (sequences are drawn uniformly)")

    def cached(sequences, samples):
        return CachedPairDataset(cache, [s.name for s in sequences], samples, data.max_gap,
                                 model.config.num_templates, negative_prob=_negative_prob(cfg),
                                 negative_absent_prob=data.negative_absent_prob,
                                 negative_made_prob=data.negative_made_prob, seed=cfg.seed)
    train = cached([s for seqs in split.train for s in seqs], data.samples_per_epoch)
    val = cached(split.validation, data.val_samples) if split.validation else None
    return train, val
