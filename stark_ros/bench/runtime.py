"""``python -m stark_ros.bench runtime``: ONNX Runtime (CPU) against PyTorch eager, side by side.

Prints, per variant, figures measured in this one run on the same frames:
* network time per frame (search crop -> box and score, templates precomputed, the way a tracker
  runs) of PyTorch eager and of the exported tracking graph on ONNX Runtime, and their ratio;
* the whole tracker per frame (crops, network, box mapping) of the PyTorch reference tracker and
  of the ONNX runtime tracker;
* the tracking graph's FLOPs (counted on the exported graph) and the GFLOP/s ONNX Runtime achieves,
  as a share of the machine's sgemm peak measured here with numpy matmul at the same thread count;
* the cost of 1, 2, 4, 8 targets (one batched call) relative to one.

Speed does not depend on the weights, so models are seeded random networks unless a checkpoint is
given. Engines alternate round by round, and the median round counts, so that load from other
processes on a shared machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 0
DEFAULT_VARIANTS = ("ST50", "S50", "LITE")
DEFAULT_SEQUENCE = "otb_crossing"
DEFAULT_FRAMES = 12
DEFAULT_ROUNDS = 3
TARGET_COUNTS = (1, 2, 4, 8)
# Square sgemm sizes tried for the peak; the best of them counts (large enough to be compute bound).
SGEMM_SIZES = (1024, 2048)
SGEMM_REPEATS = 5
# Goals of the issue for ST50 on the CPU.
GOAL_SPEEDUP = 1.5
GOAL_PEAK_SHARE = 0.5


# ------------------------------------------------------------------------------------ FLOPs
def _dims(value_info) -> list[int] | None:
    shape = value_info.type.tensor_type.shape
    out = []
    for d in shape.dim:
        if not d.HasField("dim_value"):
            return None
        out.append(d.dim_value)
    return out


def count_flops(model_path, batch: int = 1) -> tuple[int, dict[str, int]]:
    """Multiply-adds x 2 of the graph's Conv, MatMul and Gemm nodes at the
    given batch size (shapes from ONNX shape inference, and where it gives up, e.g. inside
    STARK-Lite's attention reshapes, from one ONNX Runtime pass); element-wise ops are not counted
    (they are a few percent of a convolutional network and are memory bound anyway)."""
    import onnx

    proto = onnx.load(str(model_path))
    for inp in proto.graph.input:
        dim0 = inp.type.tensor_type.shape.dim[0]
        if not dim0.HasField("dim_value"):
            dim0.dim_value = batch
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[vi.name] = _dims(vi)
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    missing = sorted({name for node in inferred.graph.node if node.op_type in ("Conv", "MatMul", "Gemm")
                      for name in [*node.input[:2], node.output[0]] if name and shapes.get(name) is None})
    if missing:
        shapes.update(_run_shapes(proto, missing))
    per_op: dict[str, int] = {}
    unknown = []
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        ins = [shapes.get(n) for n in node.input]
        out = shapes.get(node.output[0])
        if out is None or any(s is None for s in ins[:2]):
            unknown.append(node.name)
            continue
        if node.op_type == "Conv":
            # Weight (Cout, Cin/groups, kh, kw): each output value takes Cin/groups*kh*kw MACs.
            macs = int(np.prod(out)) * int(np.prod(ins[1][1:]))
        elif node.op_type == "MatMul":
            macs = int(np.prod(out)) * ins[0][-1]
        else:
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            k = ins[0][0] if trans_a else ins[0][-1]
            macs = int(np.prod(out)) * k
        per_op[node.op_type] = per_op.get(node.op_type, 0) + 2 * macs
    if unknown:
        raise RuntimeError(f"{model_path}: shape inference left {len(unknown)} compute nodes without shapes "
                           f"(first: {unknown[:3]}); FLOPs would be undercounted")
    return sum(per_op.values()), per_op


def _run_shapes(proto, names: list[str]) -> dict[str, list[int]]:
    """Shapes of the tensors ``names`` from one ONNX Runtime pass on zeros (inputs' batch fixed)."""
    import onnx
    import onnxruntime as ort

    graph_outputs = {o.name for o in proto.graph.output}
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for name in names:
        if name not in graph_outputs:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros(_dims(i), dtype=np.float32) for i in proto.graph.input}
    values = session.run(names, feeds)
    return {name: list(value.shape) for name, value in zip(names, values, strict=True)}


# ------------------------------------------------------------------------------------ sgemm peak
def sgemm_peak_gflops(threads: int) -> float:
    """Best float32 matmul GFLOP/s of numpy with ``threads`` BLAS threads, measured in a child
    process because OpenBLAS fixes its thread count when numpy is first imported."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "stark_ros.bench.runtime", "--sgemm-child"],
                          capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _sgemm_child() -> None:
    best = 0.0
    rng = np.random.default_rng(SEED)
    for n in SGEMM_SIZES:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        a @ b  # warm-up: thread pool start, page faults
        times = []
        for _ in range(SGEMM_REPEATS):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        best = max(best, 2.0 * n ** 3 / min(times) / 1e9)
    print(best)


# ------------------------------------------------------------------------------------ inputs
@dataclass
class Inputs:
    frames: list            # RGB uint8 frames
    boxes: np.ndarray       # ground-truth boxes (x, y, w, h), used as search centres
    label: str


def load_inputs(sequence: str, num_frames: int) -> Inputs:
    from stark_ros.datasets import load_simple_sequence, shared_dir

    seq = load_simple_sequence(shared_dir() / "data" / "sot" / sequence)
    n = min(num_frames + 1, len(seq))
    return Inputs([seq.frame(i) for i in range(n)], np.asarray(seq.boxes[:n], dtype=np.float64),
                  f"{sequence} frames 0..{n - 1} ({seq.frame(0).shape[1]}x{seq.frame(0).shape[0]})")


def _median_round(run, rounds: int) -> float:
    return statistics.median(run() for _ in range(rounds))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------ one variant
def bench_variant(variant: str, inputs: Inputs, threads: int, rounds: int, checkpoint: str | None,
                  graph_optimization: str, workdir: Path) -> dict:
    import torch

    from stark_ros.core import model_metadata as md
    from stark_ros.core.geometry import crop_around, normalize_patch
    from stark_ros.export import export_model
    from stark_ros.model import ReferenceTracker, build_model, get_preset, load_checkpoint
    from stark_ros.runtime import RuntimeOptions, RuntimeTracker, StarkRuntime

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    if checkpoint:
        model, _ = load_checkpoint(checkpoint, variant=variant)
    else:
        model = build_model(get_preset(variant))
    model = model.eval()
    out_dir = workdir / variant
    export_model(model, out_dir, source_sha256=f"benchmark-seed-{SEED}")
    s = model.config.tracker
    options = RuntimeOptions(providers=("CPUExecutionProvider",), intra_op_threads=threads,
                             graph_optimization=graph_optimization)
    rt = StarkRuntime(out_dir, options=options)

    # ---- network only: identical search crops through both engines
    frames, boxes = inputs.frames, inputs.boxes
    t_crop = crop_around(frames[0], boxes[0], s.template_factor, s.template_size)
    t_img = normalize_patch(t_crop.patch, s.mean, s.std)
    t_mask = t_crop.pad_mask[None].astype(np.float32)
    searches = []
    for frame, box in zip(frames[1:], boxes[:-1], strict=True):
        c = crop_around(frame, box, s.search_factor, s.search_size)
        searches.append((normalize_patch(c.patch, s.mean, s.std), c.pad_mask[None].astype(np.float32)))
    with torch.no_grad():
        tpl = model.forward_backbone(torch.from_numpy(t_img), torch.from_numpy(t_mask))
    templates = [tpl] * model.config.num_templates
    tokens = rt._template.run({md.IN_IMAGE: t_img, md.IN_MASK: t_mask})
    prefixes = md.TEMPLATE_INPUT_PREFIXES[: model.config.num_templates]

    def feeds(batch_searches):
        f = {md.IN_SEARCH_IMAGE: np.concatenate([b[0] for b in batch_searches]),
             md.IN_SEARCH_MASK: np.concatenate([b[1] for b in batch_searches])}
        for p in prefixes:
            for name, value in zip(md.token_input_names(p), tokens, strict=True):
                f[name] = np.repeat(value, len(batch_searches), axis=0)
        return f

    ort_feeds = [feeds([x]) for x in searches]
    torch_inputs = [(torch.from_numpy(i), torch.from_numpy(m)) for i, m in searches]

    def run_torch():
        with torch.no_grad():
            for img, mask in torch_inputs:
                model.forward_head(templates, model.forward_backbone(img, mask))

    def run_ort():
        for f in ort_feeds:
            rt._track.run(f)

    # Agreement on the same inputs, so a fast but wrong graph cannot pass unnoticed.
    with torch.no_grad():
        ref = model.forward_head(templates, model.forward_backbone(*torch_inputs[0]))["pred_boxes"][:, 0].numpy()
    max_diff = float(np.abs(rt._track.run(ort_feeds[0])[0] - ref).max())

    run_torch()  # warm-up (oneDNN primitive caches, allocator)
    run_ort()
    torch_rounds, ort_rounds = [], []
    for _ in range(rounds):
        torch_rounds.append(_timed(run_torch))
        ort_rounds.append(_timed(run_ort))
    n = len(searches)
    torch_net = statistics.median(torch_rounds) / n
    ort_net = statistics.median(ort_rounds) / n

    # ---- whole tracker, same frames
    ref_tracker = ReferenceTracker(model)
    ort_tracker = RuntimeTracker(rt)

    def run_tracker(tracker):
        def go():
            tracker.initialize(frames[0], boxes[0])
            for frame in frames[1:]:
                tracker.track(frame)
        return go

    torch_trk, ort_trk = [], []
    for _ in range(rounds):
        torch_trk.append(_timed(run_tracker(ref_tracker)))
        ort_trk.append(_timed(run_tracker(ort_tracker)))
    torch_tracker = statistics.median(torch_trk) / n
    ort_tracker_t = statistics.median(ort_trk) / n

    # ---- targets: N targets, one batched call per frame, through the runtime
    per_targets = {}
    for count in TARGET_COUNTS:
        def go(count=count):
            rt.clear()
            for k in range(count):
                rt.add_target(frames[0], boxes[0] + np.array([2.0 * k, 0.0, 0.0, 0.0]), target_id=f"t{k}")
            t0 = time.perf_counter()
            for frame in frames[1:]:
                rt.update(frame)
            return (time.perf_counter() - t0) / n
        per_targets[count] = _median_round(go, rounds)
    rt.clear()

    flops, per_op = count_flops(out_dir / md.TRACK_FILE, batch=1)
    return {
        "variant": variant,
        "max_box_diff": max_diff,
        "torch_net_ms": torch_net * 1e3,
        "ort_net_ms": ort_net * 1e3,
        "torch_tracker_ms": torch_tracker * 1e3,
        "ort_tracker_ms": ort_tracker_t * 1e3,
        "track_gflop": flops / 1e9,
        "flops_by_op": {k: v / 1e9 for k, v in per_op.items()},
        "ort_gflops": flops / ort_net / 1e9,
        "torch_gflops": flops / torch_net / 1e9,
        "targets_ms": {k: v * 1e3 for k, v in per_targets.items()},
    }


# ------------------------------------------------------------------------------------ report
def report(results: list[dict], peak: float, threads: int, inputs: Inputs, graph_optimization: str) -> None:
    import onnxruntime
    import torch

    print(f"\nSTARK runtime benchmark: {threads} thread(s), {inputs.label}; torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__} (CPU, graph optimisation '{graph_optimization}')")
    print(f"sgemm peak (numpy float32 matmul, {threads} thread(s)): {peak:.1f} GFLOP/s\n")
    header = (f"{'variant':8} {'torch ms':>9} {'ORT ms':>8} {'speed-up':>8} {'GFLOP':>6} {'ORT GFLOP/s':>11} "
              f"{'% peak':>7} {'torch %':>7} | {'tracker torch':>13} {'tracker ORT':>11} {'speed-up':>8}")
    print("network per frame (search crop -> box + score, templates precomputed), and whole tracker per frame")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['variant']:8} {r['torch_net_ms']:9.1f} {r['ort_net_ms']:8.1f} "
              f"{r['torch_net_ms'] / r['ort_net_ms']:7.2f}x {r['track_gflop']:6.2f} {r['ort_gflops']:11.1f} "
              f"{100 * r['ort_gflops'] / peak:6.1f}% {100 * r['torch_gflops'] / peak:6.1f}% | "
              f"{r['torch_tracker_ms']:10.1f} ms {r['ort_tracker_ms']:8.1f} ms "
              f"{r['torch_tracker_ms'] / r['ort_tracker_ms']:7.2f}x")
    print("\ncost of N targets per frame (one batched call), relative to 1 target")
    print(f"{'variant':8} " + " ".join(f"{f'N={n}':>16}" for n in TARGET_COUNTS))
    for r in results:
        base = r["targets_ms"][1]
        cells = [f"{ms:7.1f} ms {ms / base:5.2f}x" for ms in r["targets_ms"].values()]
        print(f"{r['variant']:8} " + " ".join(f"{c:>16}" for c in cells))
    print("\nORT vs torch max |box difference| on the same crop: "
          + ", ".join(f"{r['variant']} {r['max_box_diff']:.1e}" for r in results))
    for r in results:
        if r["variant"] == "ST50":
            speedup = r["torch_net_ms"] / r["ort_net_ms"]
            share = r["ort_gflops"] / peak
            print(f"ST50 goals: ORT >= {GOAL_SPEEDUP}x eager: {speedup:.2f}x "
                  f"({'met' if speedup >= GOAL_SPEEDUP else 'NOT met'}); >= {GOAL_PEAK_SHARE:.0%} of sgemm peak: "
                  f"{share:.0%} ({'met' if share >= GOAL_PEAK_SHARE else 'NOT met'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stark_ros.bench runtime",
        description="ONNX Runtime CPU vs PyTorch eager for STARK models, on the same frames, in one run.")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        help=f"model presets to measure (default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--checkpoint", help="measure this checkpoint (one variant) instead of seeded random weights")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for torch, ONNX Runtime and the sgemm peak (default: all cores)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per round")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="alternating rounds; the median counts")
    parser.add_argument("--sequence", default=DEFAULT_SEQUENCE, help="shared sequence the frames come from")
    parser.add_argument("--graph-optimization", default="all", choices=["disable", "basic", "extended", "all"],
                        help="ONNX Runtime graph optimisation level")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--sgemm-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sgemm_child:
        _sgemm_child()
        return 0
    if args.checkpoint and len(args.variants) != 1:
        parser.error("--checkpoint needs exactly one --variants entry")
    if args.threads < 1 or args.frames < 1 or args.rounds < 1:
        parser.error("--threads, --frames and --rounds must be >= 1")

    peak = sgemm_peak_gflops(args.threads)
    inputs = load_inputs(args.sequence, args.frames)
    results = []
    with tempfile.TemporaryDirectory(prefix="stark_bench_") as tmp:
        for variant in args.variants:
            print(f"measuring {variant} ...", file=sys.stderr, flush=True)
            results.append(bench_variant(variant, inputs, args.threads, args.rounds, args.checkpoint,
                                         args.graph_optimization, Path(tmp)))
    report(results, peak, args.threads, inputs, args.graph_optimization)
    if args.json:
        Path(args.json).write_text(json.dumps({"sgemm_peak_gflops": peak, "threads": args.threads,
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
