"""``python -m stark_ros.bench runtime --providers cuda`` (or ``tensorrt``, ``cpu``): the ONNX Runtime
tracker on an execution provider, per precision, against the CPU provider, in one run.

Per model and precision it prints:
* the providers that really ran the nodes of each graph (counted from one profiled call, not just
  the ones registered);
* the network alone (``OrtEngine.predict`` on ready crops and tokens) at batch 1 / 8 / 32;
* the whole tracker per frame (crops, network, mapping, lost logic, score) at 1 / 8 / 32 targets,
  and its ratios: whole / network at 1 target, 8 and 32 targets / 1 target;
* over whole sequences, frame by frame, the largest box difference (px) between this provider and
  the CPU provider in float32, and each one's success AUC.

Needs neither torch nor ROS for the default model (``--variants`` other than ``default`` export
seeded random weights and need torch). Each time is the median over ``--rounds``, the network and
the whole tracker at the same count alternating round by round, so that load from other processes
hits both alike; ratios are of figures taken in this one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROVIDER_NAMES = {"cpu": ("CPUExecutionProvider",),
                  "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
                  "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")}
DEFAULT_PRECISIONS = ("fp32", "tf32", "fp16")
DEFAULT_COUNTS = (1, 8, 32)
DEFAULT_SEQUENCES = ("otb_crossing", "vot_bag")
DEFAULT_FRAMES = 20
DEFAULT_ROUNDS = 3
DEFAULT_MODEL = "default"
SEED = 0
MS = 1e3
# Boxes of the extra targets of a frame: the first box shifted by this many pixels per target, so
# that every target has its own crop (the work is the same as for distinct objects).
TARGET_SPREAD_PX = 2.0


@dataclass
class Sequence:
    name: str
    frames: list
    boxes: np.ndarray


@dataclass
class Row:
    model: str
    precision: str
    requested: tuple
    active: dict = field(default_factory=dict)          # graph -> {provider: nodes run}
    net_ms: dict = field(default_factory=dict)          # batch -> ms
    tracker_ms: dict = field(default_factory=dict)      # targets -> ms per frame
    max_box_diff_px: dict = field(default_factory=dict)  # sequence -> px (vs CPU fp32)
    auc: dict = field(default_factory=dict)             # sequence -> success AUC
    cpu_auc: dict = field(default_factory=dict)
    error: str = ""


def load_sequences(data_dir: Path, names) -> list[Sequence]:
    from stark_ros.datasets import load_simple_sequence

    out = []
    for name in names:
        seq = load_simple_sequence(data_dir / name)
        out.append(Sequence(name, [seq.frame(i) for i in range(len(seq))], np.asarray(seq.boxes, dtype=np.float64)))
    return out


def model_dirs(variants, workdir: Path) -> dict[str, Path]:
    from stark_ros.runtime import default_model_dir

    dirs = {}
    for variant in variants:
        if variant == DEFAULT_MODEL:
            dirs[variant] = default_model_dir()
        elif Path(variant).is_dir():
            dirs[Path(variant).name] = Path(variant)
        else:
            import torch

            from stark_ros.export import export_model
            from stark_ros.model import build_model, get_preset

            torch.manual_seed(SEED)
            export_model(build_model(get_preset(variant)).eval(), workdir / variant,
                         source_sha256=f"benchmark-seed-{SEED}")
            dirs[variant] = workdir / variant
    return dirs


def make_runtime(model_dir: Path, providers, precision: str, threads: int):
    from stark_ros.runtime import RuntimeOptions, StarkRuntime

    return StarkRuntime(model_dir, RuntimeOptions(providers=tuple(providers), precision=precision,
                                                  intra_op_threads=threads))


def network_inputs_for(rt, seq: Sequence, batch: int):
    """Ready inputs of the tracking graph for ``batch`` copies of one search crop of ``seq``."""
    from stark_ros.core.geometry import crop_batch, plan_crop

    s = rt.settings
    template = plan_crop(seq.frames[0].shape, seq.boxes[0], s.template_factor, s.template_size)
    (token,) = rt.engine.encode_templates(*crop_batch(seq.frames[0], [template], s.mean, s.std))
    search = plan_crop(seq.frames[1].shape, seq.boxes[0], s.search_factor, s.search_size)
    images, masks = crop_batch(seq.frames[1], [search] * batch, s.mean, s.std)
    return [[token] * batch] * (1 + s.num_dynamic_templates), images, masks


def network_round(rt, seq: Sequence, batch: int, calls: int):
    """A callable: ``calls`` network calls on ready inputs of ``batch`` crops; returns seconds per call."""
    templates, images, masks = network_inputs_for(rt, seq, batch)

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            rt.engine.predict(templates, images, masks)
        return (time.perf_counter() - t0) / calls
    return run


def tracker_round(rt, seq: Sequence, targets: int, frames: int):
    """A callable: ``targets`` targets started on the first frame (not timed: a frame's cost is the
    tracking), then tracked over ``frames`` frames, one batched update each; returns seconds per frame."""
    count = min(frames, len(seq.frames) - 1)

    def run() -> float:
        rt.clear()
        for k in range(targets):
            rt.add_target(seq.frames[0], seq.boxes[0] + np.array([TARGET_SPREAD_PX * k, 0.0, 0.0, 0.0]),
                          target_id=f"t{k}")
        t0 = time.perf_counter()
        for frame in seq.frames[1:count + 1]:
            rt.update(frame)
        seconds = (time.perf_counter() - t0) / count
        rt.clear()
        return seconds
    return run


def alternate_ms(runs: dict, rounds: int) -> dict:
    """Median ms of each callable, run one after the other round by round after one warm-up each
    (kernels chosen, allocator grown), so that load from other processes hits all alike."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(t) * MS for name, t in times.items()}


def track_sequence(rt, seq: Sequence) -> np.ndarray:
    from stark_ros.tracking.policy import SingleTargetTracker

    tracker = SingleTargetTracker(rt)
    tracker.initialize(seq.frames[0], seq.boxes[0])
    boxes = [seq.boxes[0]]
    boxes += [tracker.track(frame)[0] for frame in seq.frames[1:]]
    return np.asarray(boxes)


def active_nodes(rt, seq: Sequence) -> dict[str, dict[str, int]]:
    from stark_ros.core.geometry import crop_batch, plan_crop
    from stark_ros.tracking import model_metadata as md

    templates, images, masks = network_inputs_for(rt, seq, 1)
    s = rt.settings
    plan = plan_crop(seq.frames[0].shape, seq.boxes[0], s.template_factor, s.template_size)
    t_images, t_masks = crop_batch(seq.frames[0], [plan], s.mean, s.std)
    out = {"template": rt.engine.template.nodes_by_provider({md.IN_IMAGE: t_images, md.IN_MASK: t_masks}),
           "track": rt.engine.track_graph.nodes_by_provider(rt.engine.track_feeds(templates, images, masks))}
    crops = rt.engine.crop_session
    out["crops"] = ({"host (numpy/OpenCV)": 1} if crops is None
                    else {f"{crops.providers[0]}{' (outputs on the device)' if crops.device else ''}": 1})
    return out


def measure(model: str, model_dir: Path, provider: str, precision: str, sequences: list[Sequence],
            reference: dict, args) -> Row:
    row = Row(model, precision, PROVIDER_NAMES[provider])
    try:
        rt = make_runtime(model_dir, row.requested, precision, args.threads)
    except Exception as exc:  # a provider or precision this machine cannot run: say so, go on
        row.error = f"{type(exc).__name__}: {exc}"
        return row
    from stark_ros.evaluation.metrics import sequence_metrics

    timing = sequences[0]
    row.active = active_nodes(rt, timing)
    for count in args.targets:
        ms = alternate_ms({"net": network_round(rt, timing, count, args.frames),
                           "tracker": tracker_round(rt, timing, count, args.frames)}, args.rounds)
        row.net_ms[count], row.tracker_ms[count] = ms["net"], ms["tracker"]
    for seq in sequences:
        boxes = track_sequence(rt, seq)
        row.max_box_diff_px[seq.name] = float(np.abs(boxes - reference[seq.name]).max())
        # Without the first frame (the given box), as the evaluation tools score a sequence.
        row.auc[seq.name] = sequence_metrics(boxes[1:], seq.boxes[1:]).success_auc
        row.cpu_auc[seq.name] = sequence_metrics(reference[seq.name][1:], seq.boxes[1:]).success_auc
    return row


def report(rows: list[Row], args, sequences: list[Sequence]) -> None:
    import onnxruntime

    counts = args.targets
    print(f"\nSTARK on ONNX Runtime {onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())} "
          f"in this build), {args.threads or 'default'} CPU thread(s); timing on {sequences[0].name}, "
          f"{args.frames} frames x {args.rounds} rounds (median)")
    head = (f"{'model':10} {'provider':9} {'prec':5} | " + " ".join(f"{f'net b{b}':>8}" for b in counts) + " | "
            + " ".join(f"{f'trk {n}':>8}" for n in counts) + f" | {'trk/net':>7} "
            + " ".join(f"{f'{n}/1':>6}" for n in counts[1:]) + " | "
            + " ".join(f"{f'dpx {q.name[:10]}':>15}" for q in sequences) + " | "
            + " ".join(f"{f'AUC {q.name[:10]}':>15}" for q in sequences))
    print(head)
    print("-" * len(head))
    for r in rows:
        label = f"{r.model[:10]:10} {args.providers:9} {r.precision:5} | "
        if r.error:
            print(label + f"not run: {r.error}")
            continue
        base_net, base_trk = r.net_ms[counts[0]], r.tracker_ms[counts[0]]
        print(label + " ".join(f"{r.net_ms[b]:8.2f}" for b in counts) + " | "
              + " ".join(f"{r.tracker_ms[n]:8.2f}" for n in counts) + f" | {base_trk / base_net:6.2f}x "
              + " ".join(f"{r.tracker_ms[n] / base_trk:5.2f}x" for n in counts[1:]) + " | "
              + " ".join(f"{r.max_box_diff_px[q.name]:15.2e}" for q in sequences) + " | "
              + " ".join(f"{r.auc[q.name]:7.4f} ({r.auc[q.name] - r.cpu_auc[q.name]:+.4f})" for q in sequences))
    print("\nms: network alone (batch b) / whole tracker per frame (n targets); trk/net: whole tracker / network at "
          f"{counts[0]} target; n/1: whole tracker at n targets / at {counts[0]}; dpx: largest box difference "
          "(px, any coordinate, any frame) against the CPU provider in float32 over the whole sequence; "
          "AUC: success AUC (change against the CPU provider)")
    print("\nnodes run per provider (one profiled call), and where the crops are cut:")
    for r in rows:
        if not r.error:
            print(f"  {r.model} {r.precision}: " + "; ".join(
                f"{graph}: " + ", ".join(f"{p} {n}" for p, n in nodes.items()) for graph, nodes in r.active.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stark_ros.bench runtime --providers",
        description="The ONNX Runtime tracker on an execution provider, per precision, against the CPU provider.")
    parser.add_argument("--providers", required=True, choices=sorted(PROVIDER_NAMES),
                        help="cuda: CUDA then CPU; tensorrt: TensorRT, CUDA, CPU; cpu: the CPU alone")
    parser.add_argument("--precisions", nargs="+", default=list(DEFAULT_PRECISIONS), choices=DEFAULT_PRECISIONS)
    parser.add_argument("--variants", nargs="+", default=[DEFAULT_MODEL],
                        help="'default' (the shipped model), a model folder, or a preset name (seeded random "
                             "weights, exported here: needs torch)")
    parser.add_argument("--targets", nargs="+", type=int, default=list(DEFAULT_COUNTS),
                        help="batch sizes / target counts (the first is the base of the ratios)")
    parser.add_argument("--sequences", nargs="+", default=list(DEFAULT_SEQUENCES),
                        help="sequence folders inside --data (the first one is also used for timing)")
    parser.add_argument("--data", help="folder holding the sequences (default: shared/data/sot)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames (and network calls) per round")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime CPU threads (0: one per core)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rounds < 1 or min(args.targets) < 1:
        parser.error("--frames, --rounds and --targets must be >= 1")

    if args.data:
        data = Path(args.data)
    else:
        from stark_ros.datasets import shared_dir

        data = shared_dir() / "data" / "sot"
    sequences = load_sequences(data, args.sequences)
    rows = []
    with tempfile.TemporaryDirectory(prefix="stark_bench_") as tmp:
        for model, model_dir in model_dirs(args.variants, Path(tmp)).items():
            print(f"{model}: CPU reference ...", file=sys.stderr, flush=True)
            cpu = make_runtime(model_dir, PROVIDER_NAMES["cpu"], "fp32", args.threads)
            reference = {seq.name: track_sequence(cpu, seq) for seq in sequences}
            del cpu
            for precision in args.precisions:
                print(f"{model}: {args.providers} {precision} ...", file=sys.stderr, flush=True)
                rows.append(measure(model, model_dir, args.providers, precision, sequences, reference, args))
                if args.json:
                    # Written after every row: a run cut short still leaves what it measured.
                    Path(args.json).write_text(json.dumps([vars(r) for r in rows], indent=2, default=str))
    report(rows, args, sequences)
    return 0
