#!/usr/bin/env python3
"""Train STARK: ``python training/train.py CONFIG [--cfg-options key=value ...]``.

One process here; ``training/dist_train.sh CONFIG GPUS`` runs this script under torchrun (DDP).
Checkpoints go to WORK_DIR/NAME/ (``latest.pth`` after every epoch, ``final.pth`` at the end);
an interrupted run (Ctrl-C, SIGTERM, a crash) continues from ``latest.pth`` when started again
with the same config. ``--benchmark N`` measures samples/s instead of training.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from stark_ros.datasets import MissingSharedDataError
from stark_ros.model import CheckpointError
from stark_ros.training.config import load_config
from stark_ros.training.trainer import LOG, Trainer

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def benchmark(cfg, steps: int) -> None:
    """Samples/s of the data pipeline alone and of whole training steps (after one warm-up step)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(cfg, resume=False, work_dir=tmp)
        trainer = Trainer(cfg, progress=False)
        batches = iter(trainer.loader())
        t0 = time.perf_counter()
        count = 0
        for _ in range(min(steps, len(trainer.epoch_indices(0)) // cfg.batch_size)):
            count += len(next(batches)["label"])
        data_rate = count / (time.perf_counter() - t0)
        del batches
        trainer.train(max_steps=1, save=False)
        t0 = time.perf_counter()
        trainer.train(max_steps=steps, save=False)
        train_rate = steps * trainer.samples_per_step / (time.perf_counter() - t0)
    print(f"benchmark {cfg.name} (model {trainer.model.config.variant}, stage {cfg.stage}, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} torch thread(s), {cfg.data.num_workers} data worker(s), {trainer.device}):")
    print(f"  data pipeline alone: {data_rate:.1f} samples/s")
    print(f"  training steps:      {train_rate:.2f} samples/s ({steps} steps after one warm-up step)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config, e.g. training/configs/stark_lite_st1.yaml")
    parser.add_argument("--cfg-options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. epochs=10 optim.lr=5e-5 load_from=runs/x/final.pth")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop (and save latest.pth) after this many optimiser steps")
    parser.add_argument("--benchmark", type=int, default=None, metavar="STEPS",
                        help="measure training samples/s over STEPS steps; writes no checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (log lines only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        cfg = load_config(args.config, args.cfg_options)
        if args.benchmark is not None:
            benchmark(cfg, args.benchmark)
            return 0
        trainer = Trainer(cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, MissingSharedDataError, CheckpointError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if trainer.rank == 0:
        trainer.work_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(trainer.work_dir / "train.log")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        LOG.addHandler(handler)
    trainer.train(max_steps=args.max_steps)
    if trainer.rank == 0:
        done = trainer.epoch >= cfg.epochs
        where = Path(trainer.work_dir) / ("final.pth" if done else "latest.pth")
        LOG.info("%s at epoch %d/%d: %s", "finished" if done else "stopped", trainer.epoch, cfg.epochs, where)
    if trainer.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
