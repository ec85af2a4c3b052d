"""The training loop: one process, or DDP under torchrun; resumable; self-describing checkpoints.

What it trains and how (network, frozen parts, optimiser, precision) is the recipe's
(:mod:`.recipe`), what it minimises the objective's (:mod:`.objective`), what it reads the data
sources' (:mod:`.sources`). This module runs them: one loop over optimiser steps with one exit.

Sample ``i`` of epoch ``e`` is a pure function of (seed, e, i) (see :mod:`.data`); optimiser step
``k`` of an epoch uses samples ``[k*N, (k+1)*N)`` with N = batch x accumulate x processes, rank r
taking its own contiguous slices. So a resumed run, or one process with gradient accumulation,
sees exactly the batches of the uninterrupted / multi-process run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
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

from stark_ros.model import save_checkpoint
from stark_ros.training.config import TrainConfig, config_to_dict
from stark_ros.training.data import VALIDATION_EPOCH, collate
from stark_ros.training.objective import compute_losses, evaluate_pairs, forward_batch
from stark_ros.training.recipe import (
    amp_enabled,
    autocast,
    build_optimizer,
    build_training_model,
    lr_milestones,
    set_train_mode,
    set_trainable,
)
from stark_ros.training.sources import build_datasets

LOG = logging.getLogger("stark_ros.training")
LATEST = "latest.pth"
FINAL = "final.pth"
# The epoch that scored best on the validation split (data.validation).
BEST = "best.pth"
# Per-step statistics kept in memory for the caller (older ones are dropped).
STEP_LOG_LIMIT = 100_000
# Statistics averaged over an epoch and written to the log, in this order.
SUMMARY_KEYS = ("loss", "iou", "giou", "l1", "bce", "accuracy", "grad_norm", "lr", "samples_per_s")
LOG_KEYS = ("loss", "iou", "giou", "l1", "bce", "accuracy", "lr", "samples_per_s")
BAR_KEYS = ("loss", "iou", "accuracy")


@dataclasses.dataclass
class _Epoch:
    """The epoch in progress within one :meth:`Trainer.train` call."""

    batches: object
    bar: object
    stats: list = dataclasses.field(default_factory=list)


class Trainer:
    """Build everything a config describes, resume when a checkpoint is there, and train."""

    def __init__(self, cfg: TrainConfig, progress: bool = True):
        self.cfg = cfg
        self.progress = progress
        self.distributed, self.rank, self.world, self.device = _join_processes()
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
        self.use_amp = amp_enabled(self.device, cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.epoch_summaries: list[dict] = []
        self.step_log: deque = deque(maxlen=STEP_LOG_LIMIT)
        self._stop = StopRequest(self.distributed, self.device)
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

    # -------------------------------------------------------------------------------- the loop
    def train(self, max_steps: int | None = None, save: bool = True, progress: bool | None = None) -> list[dict]:
        """Train to the configured epoch count, or stop after ``max_steps`` optimiser steps (tests,
        benchmarks) or on SIGINT/SIGTERM, saving ``latest.pth`` where it stopped (``final.pth`` too
        once every epoch is done). Returns the per-step statistics of this call. ``progress``
        overrides the constructor's choice of a tqdm bar."""
        if progress is not None:
            self.progress = progress
        writer = self._writer() if save else None
        first_entry = len(self.step_log)
        steps, stop, epoch = 0, False, None
        set_train_mode(self.model, self.cfg)
        with self._stop:
            while self.epoch < self.cfg.epochs and not stop:
                if epoch is None:
                    epoch = self._start_epoch()
                t0 = time.perf_counter()
                stats = self._step([next(epoch.batches) for _ in range(self.cfg.accumulate)])
                self._record(stats, epoch, writer, seconds=time.perf_counter() - t0)
                steps += 1
                stop = self._stop.agreed() or (max_steps is not None and steps >= max_steps)
                if self.step_in_epoch == self.steps_per_epoch:
                    self._end_epoch(epoch, writer, save)  # saves latest.pth
                    epoch = None
                elif save and (stop or self._periodic_save_due()):
                    self.save()
        self._finish(epoch, writer, save)
        return list(self.step_log)[first_entry:]

    def _periodic_save_due(self) -> bool:
        return bool(self.cfg.save_every_steps) and self.global_step % self.cfg.save_every_steps == 0

    def _finish(self, epoch: _Epoch | None, writer, save: bool) -> None:
        """After the loop: the bar of an epoch left unfinished closed, ``final.pth`` once every epoch
        is done, the TensorBoard writer closed."""
        if epoch is not None:
            epoch.bar.close()
        if save and self.epoch >= self.cfg.epochs:
            self.save(FINAL)
        if writer is not None:
            writer.close()

    def _start_epoch(self) -> _Epoch:
        from tqdm import tqdm

        bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, dynamic_ncols=True,
                   desc=f"{self.cfg.name} epoch {self.epoch + 1}/{self.cfg.epochs}",
                   disable=not self.progress or self.rank != 0)
        return _Epoch(batches=iter(self.loader()), bar=bar)

    def _record(self, stats: dict, epoch: _Epoch, writer, seconds: float) -> None:
        """Count the step that produced ``stats`` and show it (step log, bar, TensorBoard, log)."""
        self.step_in_epoch += 1
        self.global_step += 1
        stats.update(epoch=self.epoch, step=self.global_step, lr=self.optimizer.param_groups[0]["lr"],
                     samples_per_s=self.samples_per_step / max(1e-9, seconds))
        self.step_log.append(stats)
        epoch.stats.append(stats)
        epoch.bar.update(1)
        epoch.bar.set_postfix({k: f"{stats[k]:.3f}" for k in BAR_KEYS if k in stats})
        self._log_step(writer, stats)

    def _step(self, micro_batches: list[dict]) -> dict:
        """One optimiser step over ``accumulate`` micro-batches; returns the step's mean losses."""
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict = defaultdict(float)
        n = len(micro_batches)
        for i, batch in enumerate(micro_batches):
            batch = _to(batch, self.device)
            last = i == n - 1
            sync = contextlib.nullcontext() if last or not self.distributed else self.net.no_sync()
            with sync:
                with autocast(self.device, self.cfg):
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

    def _end_epoch(self, epoch: _Epoch, writer, save: bool) -> None:
        """Close the epoch: validate, step the learning rate, log, save ``latest.pth`` (and
        ``best.pth`` when it scored best on the validation split)."""
        epoch.bar.close()
        summary = {"epoch": self.epoch + 1, **_mean_stats(epoch.stats), **self._validate()}
        self.epoch_summaries.append(summary)
        self.epoch += 1
        self.step_in_epoch = 0
        self.scheduler.step()
        self._log_epoch(writer, summary)
        if save:
            self.save()
            if self._is_best(summary):
                LOG.info("epoch %d is the best on the validation split so far (%s %.4f): %s", self.epoch,
                         self.best_metric, summary[self.best_metric], self.work_dir / BEST)
                self.save(BEST)

    def _validate(self) -> dict:
        """``val_iou`` (and ``val_accuracy``) on the fixed validation pairs; rank 0 only, {} without them."""
        if self.val_dataset is None or self.rank != 0:
            return {}
        self.val_dataset.set_epoch(VALIDATION_EPOCH)
        val = evaluate_pairs(self.model, self.val_dataset, range(len(self.val_dataset)))
        set_train_mode(self.model, self.cfg)
        return {f"val_{k}": v for k, v in val.items()}

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

    # -------------------------------------------------------------------------------- data
    def epoch_indices(self, start_step: int) -> list[int]:
        """This rank's sample indices from optimiser step ``start_step`` to the end of the epoch."""
        b, a, w = self.cfg.batch_size, self.cfg.accumulate, self.world
        indices = []
        for step in range(start_step, self.steps_per_epoch):
            for micro in range(a):
                first = ((step * a + micro) * w + self.rank) * b
                indices.extend(range(first, first + b))
        return indices

    def loader(self) -> DataLoader:
        """The batches of this rank from the current step to the end of the current epoch."""
        self.dataset.set_epoch(self.epoch)
        workers = self.cfg.data.num_workers
        # Its own generator: making the iterator must not draw from the global RNG (dropout's),
        # or a resumed run would drift from the uninterrupted one.
        generator = torch.Generator().manual_seed(self.cfg.seed + self.epoch)
        return DataLoader(Subset(self.dataset, self.epoch_indices(self.step_in_epoch)),
                          batch_size=self.cfg.batch_size, shuffle=False, num_workers=workers,
                          collate_fn=collate,
                          generator=generator, pin_memory=self.device.type == "cuda",
                          prefetch_factor=2 if workers else None)

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
        self.scheduler.milestones = lr_milestones(self.cfg)
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

    def _log_epoch(self, writer, summary: dict) -> None:
        if self.rank != 0:
            return
        LOG.info("epoch %d/%d: %s", self.epoch, self.cfg.epochs,
                 ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k != "epoch"))
        if writer is not None:
            for k, v in summary.items():
                if k != "epoch":
                    writer.add_scalar(f"epoch/{k}", v, self.epoch)

    def _log_step(self, writer, stats: dict) -> None:
        if writer is not None:
            for k, v in stats.items():
                if k not in ("epoch", "step"):
                    writer.add_scalar(f"train/{k}", v, self.global_step)
        if self.rank == 0 and self.cfg.log_interval and self.global_step % self.cfg.log_interval == 0:
            LOG.info("epoch %d step %d/%d: %s", self.epoch + 1, self.step_in_epoch, self.steps_per_epoch,
                     ", ".join(f"{k} {stats[k]:.4f}" for k in LOG_KEYS if k in stats))


class StopRequest:
    """SIGINT / SIGTERM while training (a context manager around the loop) ask for a stop after the
    current step; under DDP every rank stops at the same step when any rank was asked."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, distributed: bool, device: torch.device):
        self.distributed = distributed
        self.device = device
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        # Signal handlers can only be set from the main thread (a trainer in another thread keeps its caller's).
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._request) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _request(self, signum, _frame) -> None:
        LOG.warning("signal %d: saving a checkpoint after this step, then stopping (start again to resume)", signum)
        self.requested = True

    def agreed(self) -> bool:
        """Whether to stop now: this process was asked (any rank was, under DDP)."""
        if not self.distributed:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _join_processes() -> tuple[bool, int, int, torch.device]:
    """(distributed, rank, world size, device): torchrun's process group when WORLD_SIZE > 1, and
    this rank's GPU where there is one."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if torch.cuda.is_available():
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return distributed, rank, world, device


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


def _mean_stats(stats: list[dict]) -> dict:
    keys = [k for k in SUMMARY_KEYS if stats and k in stats[0]]
    return {k: float(np.mean([s[k] for s in stats])) for k in keys}


def _to(batch: dict, device) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, list):
            out[k] = [t.to(device, non_blocking=True) for t in v]
        else:
            out[k] = v.to(device, non_blocking=True)
    return out
