"""``python -m stark_ros.bench train``: training pairs/s of the plain path and of the fast path, side by side.

Plain path: the previous default recipe (``training/configs/stark_lite_st1.yaml``: JPEG decoding,
cropping and augmentation in the loop, the whole STARK-Lite forward with the backbone's last stage
training). Fast path: the frozen-backbone recipe (``stark_lite_frozen_st1.yaml``): the same model,
the transformer and heads trained on cached backbone features. Optionally the fast path under
bfloat16 autocast as well. Rounds alternate between the paths and the median round counts, so
that load from other processes hits them alike; the ratio is printed from this one run.

The fast path's one-time cost, building the cache (a backbone pass per stored crop), is measured
on the benchmark's own small cache and printed beside it.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
PLAIN_CONFIG = REPO_CONFIGS / "stark_lite_st1.yaml"
FAST_CONFIG = REPO_CONFIGS / "stark_lite_frozen_st1.yaml"
# A small cache: three short training videos (built once, inside the benchmark's temporary folder).
CACHE_SEQUENCES = ("otb_deer", "otb_skiing", "dtb70_mountainbike6")
DEFAULT_PLAIN_STEPS = 2
DEFAULT_FAST_STEPS = 8
DEFAULT_ROUNDS = 3
DEFAULT_THREADS = 2
DEFAULT_BATCH = 16


def _trainer(config: Path, work: Path, options: list[str]):
    from stark_ros.training.config import load_config
    from stark_ros.training.trainer import Trainer

    cfg = load_config(config, [f"work_dir={work}", "resume=false", *options])
    return Trainer(cfg, progress=False)


def _rate(trainer, steps: int) -> float:
    t0 = time.perf_counter()
    trainer.train(max_steps=steps, save=False)
    return steps * trainer.samples_per_step / (time.perf_counter() - t0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.bench train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain-config", type=Path, default=PLAIN_CONFIG)
    parser.add_argument("--fast-config", type=Path, default=FAST_CONFIG)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="pairs per step, both paths")
    parser.add_argument("--plain-steps", type=int, default=DEFAULT_PLAIN_STEPS)
    parser.add_argument("--fast-steps", type=int, default=DEFAULT_FAST_STEPS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--precision", action="store_true",
                        help="also time the fast path with the other CPU precision than its config's (float32 vs "
                             "bfloat16 autocast)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    common = [f"threads={args.threads}", f"batch_size={args.batch}", "save_every_steps=0", "log_interval=0",
              "data.validation=[]"]
    include = "[" + ", ".join(CACHE_SEQUENCES) + "]"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = _trainer(args.plain_config, work / "plain", [*common, "data.num_workers=1"])
        t0 = time.perf_counter()
        fast_options = [*common, "data.feature_cache=cache",
                        f"data.sources=[{{kind: simple, root: data/train, include: {include}}}]"]
        fast = _trainer(args.fast_config, work / "fast", fast_options)
        build_s = time.perf_counter() - t0
        rows = fast.dataset.cache.meta["rows"]
        crops = rows["template"] + rows["search"]
        variants = {"plain": (plain, args.plain_steps), "fast": (fast, args.fast_steps)}
        recipe_bf16 = fast.cfg.cpu_bf16
        if args.precision:
            variants["fast_other"] = (_trainer(args.fast_config, work / "fast",
                                               [*fast_options, f"cpu_bf16={str(not recipe_bf16).lower()}"]),
                                      args.fast_steps)
        for trainer, _ in variants.values():
            trainer.train(max_steps=1, save=False)  # warm-up: allocator, thread pool, first batches
        rates = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (trainer, steps) in variants.items():
                rates[name].append(_rate(trainer, steps))
    median = {name: statistics.median(r) for name, r in rates.items()}
    print(f"training pairs/s, STARK-Lite, batch {args.batch}, {torch.get_num_threads()} torch thread(s), "
          f"median of {args.rounds} alternating rounds (load average {os.getloadavg()[0]:.1f}):")
    print(f"  plain ({args.plain_config.name}: decode + crop + whole network): {median['plain']:.1f} pairs/s")
    print(f"  fast  ({args.fast_config.name}: cached features, transformer + heads): {median['fast']:.1f} pairs/s")
    precision = {True: "bfloat16 autocast", False: "float32"}
    print(f"  (fast path in {precision[recipe_bf16]}, as its config says)")
    if "fast_other" in median:
        print(f"  fast in {precision[not recipe_bf16]}: {median['fast_other']:.1f} pairs/s "
              f"({median['fast_other'] / median['fast']:.2f}x the config's precision)")
    print(f"  ratio fast / plain: {median['fast'] / median['plain']:.1f}x")
    print(f"  one-time cache cost: {build_s:.0f} s for {crops} crops ({1000 * build_s / crops:.1f} ms a crop)")
    return 0

