"""``python -m stark_ros.bench train``: training pairs/s of the plain path, of the shipped recipe,
and of the shipped recipe in the other CPU precision, side by side.

Plain path: the previous default recipe (``training/configs/stark_lite_st1.yaml``: JPEG decoding,
cropping and augmentation in the loop, the whole STARK-Lite forward with the backbone's last stage
training). Fast path: the default model's recipe (``stark_lite_corr_st1.yaml``): the transformer
and heads trained on cached backbone features, in the precision its config names (``cpu_bf16``),
and once more in the other one (float32 vs bfloat16 autocast), so that the recipe's precision is
chosen by this measurement. All paths train at one batch size, the fast config's own unless
``--batch`` says otherwise. Rounds alternate between the paths and the median round counts, so
that load from other processes hits them alike; the ratios are printed from this one run.

The fast path's one-time cost, building the cache (a backbone pass per stored crop), is measured
on the benchmark's own small cache and printed beside it. The configs are the installed ones
(``share/stark_ros/training/configs``, found through :mod:`stark_ros.core.locate`).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stark_ros.core import locate

PLAIN_CONFIG = "stark_lite_st1.yaml"
FAST_CONFIG = "stark_lite_corr_st1.yaml"
# A small cache: three short training videos (built once, inside the benchmark's temporary folder).
CACHE_SEQUENCES = ("otb_deer", "otb_skiing", "dtb70_mountainbike6")
DEFAULT_PLAIN_STEPS = 2
DEFAULT_FAST_STEPS = 8
DEFAULT_ROUNDS = 3
DEFAULT_THREADS = 2
PRECISION = {True: "bfloat16 autocast", False: "float32"}


def installed_config(name: str) -> Path:
    """A training config as installed with the package (``share/stark_ros/training/configs``)."""
    return locate.share_file("training", "configs", name)


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
    parser.add_argument("--plain-config", type=Path, default=None,
                        help=f"default: the installed {PLAIN_CONFIG}")
    parser.add_argument("--fast-config", type=Path, default=None,
                        help=f"default: the installed {FAST_CONFIG} (the default model's recipe)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--batch", type=int, default=None,
                        help="pairs per step, every path (default: the fast config's batch_size)")
    parser.add_argument("--plain-steps", type=int, default=DEFAULT_PLAIN_STEPS)
    parser.add_argument("--fast-steps", type=int, default=DEFAULT_FAST_STEPS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        plain_config = args.plain_config or installed_config(PLAIN_CONFIG)
        fast_config = args.fast_config or installed_config(FAST_CONFIG)
        measured = _measure(args, plain_config, fast_config)
    except (FileNotFoundError, ValueError) as exc:  # a config or the shared data missing, a bad option
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _report(args, plain_config, fast_config, *measured)
    return 0


def _measure(args, plain_config: Path, fast_config: Path):
    """(recipe config, batch, median pairs/s per path, cache build seconds, cached crops)."""
    from stark_ros.training.config import load_config

    recipe = load_config(fast_config)
    batch = args.batch or recipe.batch_size
    common = [f"threads={args.threads}", f"batch_size={batch}", "save_every_steps=0", "log_interval=0",
              "data.validation=[]"]
    include = "[" + ", ".join(CACHE_SEQUENCES) + "]"
    fast_options = [*common, "data.feature_cache=cache",
                    f"data.sources=[{{kind: simple, root: data/train, include: {include}}}]"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = _trainer(plain_config, work / "plain", [*common, "data.num_workers=1"])
        t0 = time.perf_counter()
        fast = _trainer(fast_config, work / "fast", fast_options)
        build_s = time.perf_counter() - t0
        other = _trainer(fast_config, work / "fast", [*fast_options, f"cpu_bf16={str(not recipe.cpu_bf16).lower()}"])
        rows = fast.dataset.cache.meta["rows"]
        variants = {"plain": (plain, args.plain_steps), "fast": (fast, args.fast_steps),
                    "fast_other": (other, args.fast_steps)}
        for trainer, _ in variants.values():
            trainer.train(max_steps=1, save=False)  # warm-up: allocator, thread pool, first batches
        rates = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (trainer, steps) in variants.items():
                rates[name].append(_rate(trainer, steps))
    median = {name: statistics.median(r) for name, r in rates.items()}
    return recipe, batch, median, build_s, rows["template"] + rows["search"]


def _report(args, plain_config: Path, fast_config: Path, recipe, batch: int, median: dict, build_s: float,
            crops: int) -> None:
    import torch

    print(f"training pairs/s, STARK-Lite, batch {batch}, {torch.get_num_threads()} torch thread(s), "
          f"median of {args.rounds} alternating rounds (load average {os.getloadavg()[0]:.1f}):")
    print(f"  plain ({plain_config.name}: decode + crop + whole network): {median['plain']:.1f} pairs/s")
    print(f"  fast  ({fast_config.name}: cached features, transformer + heads, "
          f"{PRECISION[recipe.cpu_bf16]} as its config says): {median['fast']:.1f} pairs/s")
    print(f"  fast in {PRECISION[not recipe.cpu_bf16]}: {median['fast_other']:.1f} pairs/s "
          f"({median['fast_other'] / median['fast']:.2f}x the config's precision)")
    print(f"  ratio fast / plain: {median['fast'] / median['plain']:.1f}x")
    print(f"  one-time cache cost: {build_s:.0f} s for {crops} crops ({1000 * build_s / crops:.1f} ms a crop)")
