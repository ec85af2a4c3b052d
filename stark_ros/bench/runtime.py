"""``python -m stark_ros.bench runtime``: the library's two engines side by side, through its public API.

Prints, per variant, figures measured in this one run on the same frames:
* network time per frame (search crop -> box and score, templates encoded once, the way the policy
  runs it) of the PyTorch engine (:class:`stark_ros.model.engine.TorchEngine`, eager) and of the ONNX
  Runtime engine (:class:`stark_ros.runtime.engine.OrtEngine`), and their ratio;
* the whole tracker per frame (the tracking policy: crops, network, mapping, lost logic) of the
  PyTorch reference tracker and of the ONNX runtime tracker;
* the tracking graph's FLOPs (counted on the exported graph) and the GFLOP/s each engine achieves, as
  a share of the float32 matmul peak of ONNX Runtime itself (one MatMul graph built with the ``onnx``
  helper API, run at the same thread count): the library the engine runs on, in this process, with
  its own GEMM and threading, so no share exceeds 100% through a slower reference (numpy's sgemm,
  used before, depends on how OpenBLAS was told to pick its kernels); measured before each timed
  round, so that the peak and the networks see the same load from other processes;
* the cost of 1, 2, 4, 8 targets (one batched call) relative to one.

Speed does not depend on the weights, so models are seeded random networks unless a checkpoint is
given. Engines alternate round by round, and the median round counts, so that load from other
processes on a shared machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
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
# Square MatMul sizes tried for the peak; the best of them counts (large enough to be compute bound).
PEAK_SIZES = (1024, 2048)
PEAK_REPEATS = 5
# Opset of the peak's MatMul graph (MatMul is unchanged since opset 13).
PEAK_OPSET = 17
# Goals of the issue for ST50 on the CPU.
GOAL_SPEEDUP = 1.5
GOAL_PEAK_SHARE = 0.5
MS = 1e3
GIGA = 1e9


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


# ------------------------------------------------------------------------------------ matmul peak
class MatMulPeak:
    """Float32 GFLOP/s of ONNX Runtime's own MatMul (one MatMul node, CPU provider, ``threads``
    intra-op threads, full graph optimisation: as the engine's sessions are made). Each call measures
    again (best of the sizes and repeats), so that the benchmark can measure it between the rounds it
    times the networks in, under the same load from other processes as they are."""

    def __init__(self, threads: int):
        import onnxruntime as ort
        from onnx import TensorProto, helper

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        rng = np.random.default_rng(SEED)
        self._runs = []
        for n in PEAK_SIZES:
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["a", "b"], ["c"])], f"matmul_{n}",
                [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in ("a", "b")],
                [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", PEAK_OPSET)])
            session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                           providers=["CPUExecutionProvider"])
            feeds = {name: rng.standard_normal((n, n), dtype=np.float32) for name in ("a", "b")}
            session.run(None, feeds)  # warm-up: thread pool start, page faults
            self._runs.append((2.0 * n ** 3, lambda s=session, f=feeds: s.run(None, f)))

    def __call__(self) -> float:
        return max(flops / min(_timed(run) for _ in range(PEAK_REPEATS)) / GIGA for flops, run in self._runs)


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


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(runs: dict, rounds: int, peak: MatMulPeak | None = None) -> tuple[dict, float]:
    """Median seconds of each named callable, run one after the other round by round, and (with
    ``peak``) the median of the matmul peak measured at the start of each round: under the same load
    as the runs whose GFLOP/s are held against it."""
    times = {name: [] for name in runs}
    peaks = []
    for _ in range(rounds):
        if peak is not None:
            peaks.append(peak())
        for name, run in runs.items():
            times[name].append(_timed(run))
    return {name: statistics.median(t) for name, t in times.items()}, statistics.median(peaks) if peaks else math.nan


# ------------------------------------------------------------------------------------ one variant
@dataclass
class Setup:
    """One model, both ways: the reference tracker (policy + TorchEngine) and the runtime
    (policy + OrtEngine on its export), with the same settings."""

    variant: str
    model_dir: Path
    reference: object       # ReferenceTracker
    runtime: object         # StarkRuntime


def make_setup(variant: str, threads: int, checkpoint: str | None, graph_optimization: str,
               workdir: Path) -> Setup:
    import torch

    from stark_ros.export import export_model
    from stark_ros.model import ReferenceTracker, build_model, get_preset, load_checkpoint
    from stark_ros.runtime import RuntimeOptions, StarkRuntime

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = load_checkpoint(checkpoint, variant=variant)[0] if checkpoint else build_model(get_preset(variant))
    out_dir = workdir / variant
    export_model(model.eval(), out_dir, source_sha256=f"benchmark-seed-{SEED}")
    options = RuntimeOptions(providers=("CPUExecutionProvider",), intra_op_threads=threads,
                             graph_optimization=graph_optimization)
    return Setup(variant, out_dir, ReferenceTracker(model), StarkRuntime(out_dir, options=options))


def network_calls(setup: Setup, inputs: Inputs) -> tuple[dict, float]:
    """One callable per engine running every search crop through ``predict`` (templates encoded once
    by each engine), and the largest box difference of the two engines on the first crop."""
    from stark_ros.tracking.policy import network_input

    policies = {"torch": setup.reference, "ort": setup.runtime}
    s = setup.runtime.settings
    slots = 1 + s.num_dynamic_templates
    t_img, t_mask, _ = network_input(inputs.frames[0], inputs.boxes[0], s.template_factor, s.template_size, s)
    searches = [network_input(frame, box, s.search_factor, s.search_size, s)[:2]
                for frame, box in zip(inputs.frames[1:], inputs.boxes[:-1], strict=True)]
    calls, first = {}, {}
    for name, policy in policies.items():
        engine = policy.engine
        templates = [engine.encode_templates(t_img, t_mask)] * slots
        first[name] = engine.predict(templates, *searches[0])[0]

        def run(engine=engine, templates=templates):
            for image, mask in searches:
                engine.predict(templates, image, mask)
        calls[name] = run
    return calls, float(np.abs(first["torch"] - first["ort"]).max())


def tracker_calls(setup: Setup, inputs: Inputs) -> dict:
    """The whole tracker over the frames, each way, through the single-target protocol."""
    from stark_ros.tracking.policy import SingleTargetTracker

    def go(policy):
        tracker = SingleTargetTracker(policy)

        def run():
            tracker.initialize(inputs.frames[0], inputs.boxes[0])
            for frame in inputs.frames[1:]:
                tracker.track(frame)
        return run
    return {"torch": go(setup.reference), "ort": go(setup.runtime)}


def targets_cost(rt, inputs: Inputs, rounds: int) -> dict[int, float]:
    """Median seconds per frame of ``rt.update`` with N targets (one batched call per frame)."""
    per_targets = {}
    for count in TARGET_COUNTS:
        def go(count=count):
            rt.clear()
            for k in range(count):
                rt.add_target(inputs.frames[0], inputs.boxes[0] + np.array([2.0 * k, 0.0, 0.0, 0.0]), target_id=f"t{k}")
            t0 = time.perf_counter()
            for frame in inputs.frames[1:]:
                rt.update(frame)
            return (time.perf_counter() - t0) / (len(inputs.frames) - 1)
        per_targets[count] = statistics.median(go() for _ in range(rounds))
    rt.clear()
    return per_targets


def bench_variant(variant: str, inputs: Inputs, threads: int, rounds: int, checkpoint: str | None,
                  graph_optimization: str, workdir: Path, peak: MatMulPeak) -> dict:
    from stark_ros.tracking import model_metadata as md

    setup = make_setup(variant, threads, checkpoint, graph_optimization, workdir)
    n = len(inputs.frames) - 1
    calls, max_diff = network_calls(setup, inputs)
    for run in calls.values():
        run()  # warm-up (oneDNN primitive caches, allocators)
    net, peak_gflops = alternate(calls, rounds, peak)
    net = {k: v / n for k, v in net.items()}
    whole, _ = alternate(tracker_calls(setup, inputs), rounds)
    whole = {k: v / n for k, v in whole.items()}
    flops, per_op = count_flops(setup.model_dir / md.TRACK_FILE, batch=1)
    return {
        "variant": variant,
        "max_box_diff": max_diff,
        "peak_gflops": peak_gflops,
        "torch_net_ms": net["torch"] * MS,
        "ort_net_ms": net["ort"] * MS,
        "torch_tracker_ms": whole["torch"] * MS,
        "ort_tracker_ms": whole["ort"] * MS,
        "track_gflop": flops / GIGA,
        "flops_by_op": {k: v / GIGA for k, v in per_op.items()},
        "ort_gflops": flops / net["ort"] / GIGA,
        "torch_gflops": flops / net["torch"] / GIGA,
        "targets_ms": {k: v * MS for k, v in targets_cost(setup.runtime, inputs, rounds).items()},
    }


# ------------------------------------------------------------------------------------ report
def report(results: list[dict], threads: int, inputs: Inputs, graph_optimization: str) -> None:
    import onnxruntime
    import torch

    print(f"\nSTARK runtime benchmark: {threads} thread(s), {inputs.label}; torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__} (CPU, graph optimisation '{graph_optimization}')")
    print(f"peak: ONNX Runtime's own float32 MatMul, {threads} thread(s), best of "
          f"{' / '.join(str(n) for n in PEAK_SIZES)} square, measured before each timed round (median)\n")
    header = (f"{'variant':8} {'torch ms':>9} {'ORT ms':>8} {'speed-up':>8} {'GFLOP':>6} {'peak GFLOP/s':>12} "
              f"{'ORT GFLOP/s':>11} {'% peak':>7} {'torch %':>7} | {'tracker torch':>13} {'tracker ORT':>11} "
              f"{'speed-up':>8}")
    print("network per frame (search crop -> box + score, templates encoded once), and whole tracker per frame")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['variant']:8} {r['torch_net_ms']:9.1f} {r['ort_net_ms']:8.1f} "
              f"{r['torch_net_ms'] / r['ort_net_ms']:7.2f}x {r['track_gflop']:6.2f} {r['peak_gflops']:12.1f} "
              f"{r['ort_gflops']:11.1f} {100 * r['ort_gflops'] / r['peak_gflops']:6.1f}% "
              f"{100 * r['torch_gflops'] / r['peak_gflops']:6.1f}% | "
              f"{r['torch_tracker_ms']:10.1f} ms {r['ort_tracker_ms']:8.1f} ms "
              f"{r['torch_tracker_ms'] / r['ort_tracker_ms']:7.2f}x")
    over = [r["variant"] for r in results if max(r["ort_gflops"], r["torch_gflops"]) > r["peak_gflops"]]
    if over:
        # A network cannot beat a plain MatMul of the same library: the peak run was disturbed.
        print(f"WARNING: {', '.join(over)} above the measured peak: the peak measurement was disturbed "
              f"(other load on the machine?); run again")
    print("\ncost of N targets per frame (one batched call), relative to 1 target")
    print(f"{'variant':8} " + " ".join(f"{f'N={n}':>16}" for n in TARGET_COUNTS))
    for r in results:
        base = r["targets_ms"][1]
        cells = [f"{ms:7.1f} ms {ms / base:5.2f}x" for ms in r["targets_ms"].values()]
        print(f"{r['variant']:8} " + " ".join(f"{c:>16}" for c in cells))
    print("\nORT vs torch engine max |box difference| on the same crop: "
          + ", ".join(f"{r['variant']} {r['max_box_diff']:.1e}" for r in results))
    for r in results:
        if r["variant"] == "ST50":
            speedup = r["torch_net_ms"] / r["ort_net_ms"]
            share = r["ort_gflops"] / r["peak_gflops"]
            print(f"ST50 goals: ORT >= {GOAL_SPEEDUP}x eager: {speedup:.2f}x "
                  f"({'met' if speedup >= GOAL_SPEEDUP else 'NOT met'}); >= {GOAL_PEAK_SHARE:.0%} of the matmul "
                  f"peak: {share:.0%} ({'met' if share >= GOAL_PEAK_SHARE else 'NOT met'})")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--providers" or a.startswith("--providers=") for a in argv):
        # The GPU (or any provider's) benchmark: ONNX Runtime only, per precision, against the CPU.
        from stark_ros.bench import _providers

        return _providers.main(argv)
    parser = argparse.ArgumentParser(
        prog="python -m stark_ros.bench runtime",
        description="ONNX Runtime CPU vs PyTorch eager for STARK models, on the same frames, in one run. "
                    "With --providers {cpu,cuda,tensorrt}: ONNX Runtime alone on that provider, per precision, "
                    "against the CPU (see --providers cuda --help).")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        help=f"model presets to measure (default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--checkpoint", help="measure this checkpoint (one variant) instead of seeded random weights")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for torch, ONNX Runtime and the matmul peak (default: all cores)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per round")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="alternating rounds; the median counts")
    parser.add_argument("--sequence", default=DEFAULT_SEQUENCE, help="shared sequence the frames come from")
    parser.add_argument("--graph-optimization", default="all", choices=["disable", "basic", "extended", "all"],
                        help="ONNX Runtime graph optimisation level")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.checkpoint and len(args.variants) != 1:
        parser.error("--checkpoint needs exactly one --variants entry")
    if args.threads < 1 or args.frames < 1 or args.rounds < 1:
        parser.error("--threads, --frames and --rounds must be >= 1")

    peak = MatMulPeak(args.threads)
    inputs = load_inputs(args.sequence, args.frames)
    results = []
    with tempfile.TemporaryDirectory(prefix="stark_bench_") as tmp:
        for variant in args.variants:
            print(f"measuring {variant} ...", file=sys.stderr, flush=True)
            results.append(bench_variant(variant, inputs, args.threads, args.rounds, args.checkpoint,
                                         args.graph_optimization, Path(tmp), peak))
    report(results, args.threads, inputs, args.graph_optimization)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
