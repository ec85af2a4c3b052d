"""``python -m stark_ros.bench model``: PyTorch eager frames/s of one tracking step per STARK variant.

One tracking step is what the tracker runs per frame once its templates are encoded: the search
crop's backbone pass (stage 1) and the transformer + heads (stage 2). Templates are encoded once,
outside the timing. Crops, box mapping and the ONNX Runtime comparison belong to
``python -m stark_ros.bench runtime``.

Speed does not depend on the weights, so each variant is a seeded random network (the LITE
backbone is not loaded from ImageNet weights either). Thread counts alternate round by round and
the median round counts, so that load from other processes on a shared machine hits them alike;
the load average printed with the table says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

SEED = 0
DEFAULT_VARIANTS = ("S50", "ST50", "ST101", "LITE")
DEFAULT_THREADS = (1, 2)
DEFAULT_STEPS = 3
DEFAULT_ROUNDS = 3
# Untimed steps per variant and thread count first: allocator, thread pool and oneDNN caches warm up.
WARMUP_STEPS = 1
MS_PER_S = 1000.0


def _inputs(size: int, batch: int = 1):
    import torch

    gen = torch.Generator().manual_seed(SEED)
    img = torch.randn(batch, 3, size, size, generator=gen)
    # No padding: the common case, and the cost does not depend on the mask's values.
    mask = torch.zeros(batch, size, size)
    return img, mask


def _parameters_m(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def bench_variant(variant: str, threads: tuple[int, ...], steps: int, rounds: int) -> dict:
    """Median seconds per tracking step (and per stage) of ``variant`` for each thread count."""
    import torch

    previous_threads = torch.get_num_threads()
    try:
        return _bench_variant(variant, threads, steps, rounds)
    finally:
        torch.set_num_threads(previous_threads)


def _bench_variant(variant: str, threads: tuple[int, ...], steps: int, rounds: int) -> dict:
    import torch

    from stark_ros.model import build_model, get_preset

    torch.manual_seed(SEED)
    config = get_preset(variant)
    model = build_model(config).eval()
    s = config.tracker
    t_img, t_mask = _inputs(s.template_size)
    x_img, x_mask = _inputs(s.search_size)
    with torch.inference_mode():
        template = model.forward_backbone(t_img, t_mask)
        templates = [template] * config.num_templates

        def step() -> tuple[float, float, dict]:
            t0 = time.perf_counter()
            search = model.forward_backbone(x_img, x_mask)
            t1 = time.perf_counter()
            out = model.forward_head(templates, search)
            return t1 - t0, time.perf_counter() - t1, out

        per_threads: dict[int, dict[str, list[float]]] = {n: {"backbone": [], "head": []} for n in threads}
        for n in threads:
            torch.set_num_threads(n)
            for _ in range(WARMUP_STEPS):
                *_, out = step()
        if not torch.isfinite(out["pred_boxes"]).all():
            # Non-finite activations can take slow paths on a CPU and would distort the figures.
            raise RuntimeError(f"{variant}: the seeded random network produced non-finite boxes")
        for _ in range(rounds):
            for n in threads:
                torch.set_num_threads(n)
                timings = [step()[:2] for _ in range(steps)]
                per_threads[n]["backbone"].append(statistics.median(t[0] for t in timings))
                per_threads[n]["head"].append(statistics.median(t[1] for t in timings))

    result = {"variant": variant, "backbone": config.backbone, "search_size": s.search_size,
              "tokens": config.num_templates * config.template_feat_size ** 2 + config.search_feat_size ** 2,
              "params_m": _parameters_m(model), "threads": {}}
    for n in threads:
        backbone = statistics.median(per_threads[n]["backbone"])
        head = statistics.median(per_threads[n]["head"])
        result["threads"][n] = {"backbone_s": backbone, "head_s": head, "step_s": backbone + head,
                                "fps": 1.0 / (backbone + head)}
    return result


def report(results: list[dict], threads: tuple[int, ...], steps: int, rounds: int) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"PyTorch eager, one tracking step (search backbone + transformer/heads), batch 1, "
          f"median of {rounds} rounds x {steps} steps; {os.cpu_count()} CPUs, load average {load:.2f}")
    head = f"{'variant':8} {'backbone':18} {'search':>6} {'tokens':>6} {'params':>8}"
    for n in threads:
        head += f" | {n}T ms (bb+head)      {n}T fps"
    if len(threads) > 1:
        head += f" | {threads[-1]}T/{threads[0]}T"
    print(head)
    print("-" * len(head))
    for r in results:
        line = (f"{r['variant']:8} {r['backbone']:18} {r['search_size']:>6} {r['tokens']:>6} "
                f"{r['params_m']:>7.1f}M")
        for n in threads:
            t = r["threads"][n]
            split = f"{t['step_s'] * MS_PER_S:7.1f} ({t['backbone_s'] * MS_PER_S:.0f}+{t['head_s'] * MS_PER_S:.0f})"
            line += f" | {split:21} {t['fps']:6.2f}"
        if len(threads) > 1:
            line += f" | {r['threads'][threads[-1]]['fps'] / r['threads'][threads[0]]['fps']:5.2f}x"
        print(line)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stark_ros.bench model",
        description="PyTorch eager frames/s of one STARK tracking step (search backbone + head) per variant "
                    "and thread count, measured in one run.")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        help=f"model presets (default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--threads", nargs="+", type=int, default=list(DEFAULT_THREADS),
                        help="torch intra-op thread counts to compare (default: 1 2)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help="rounds alternating the thread counts; the median round counts")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or any(n < 1 for n in args.threads):
        parser.error("--steps, --rounds and every --threads value must be >= 1")
    from stark_ros.model import PRESETS

    unknown = [v for v in args.variants if v.upper() not in PRESETS]
    if unknown:
        parser.error(f"unknown variants {unknown}; presets are {sorted(PRESETS)}")
    threads = tuple(args.threads)
    results = []
    for variant in args.variants:
        print(f"measuring {variant.upper()} ...", file=sys.stderr, flush=True)
        results.append(bench_variant(variant.upper(), threads, args.steps, args.rounds))
    report(results, threads, args.steps, args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
