"""The GPU check of stark_ros, for any machine with an NVIDIA GPU and onnxruntime-gpu (run it through
scripts/gpu_check.sh, which sets the paths). Plain Python: no pytest, no ROS, no torch needed.

1. The precision setting on a real GPU: the CUDA provider's options say what the setting says
   (use_tf32 0 for fp32, 1 for tf32), fp16 runs the float16 graphs on CUDA, the nodes really run on
   CUDA, the crops are cut on the device and equal the CPU's bit for bit, CUDA fp32 gives the CPU's
   network outputs, and a request for TensorRT where it cannot start falls back with one warning and
   none of ONNX Runtime's own error blocks.
2. ``python -m stark_ros.bench runtime --providers cuda``: network alone and whole tracker at 1 / 8 /
   32 targets, per precision, the CPU-vs-GPU box difference over whole sequences.
3. One summary: each check, and the figures against the goals of issue 24.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import onnxruntime as ort

# Goals of issue 24 on a GPU.
GOAL_TRACKER_OVER_NETWORK = 1.2
GOAL_8_OVER_1 = 1.6
GOAL_32_OVER_1 = 4.0
GOAL_BOX_DIFF_PX = 0.01
# CUDA fp32 against the CPU on the same inputs: float32 sums in another order.
NETWORK_TOLERANCE = 1e-4
CROP_SHIFT_PX = 40.0
HEAVY_OPS = ("Conv", "MatMul", "Gemm")
# TensorRT, where its libraries are there, would build engines for minutes: the check gives up then.
FALLBACK_TIMEOUT_S = 120
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

RESULTS: list[tuple[str, str, str]] = []   # (check, PASS / FAIL / SKIP, detail)


def check(name, needs_gpu: bool = True):
    def wrap(fn):
        def run(gpu: bool, *args):
            t0 = time.perf_counter()
            if needs_gpu and not gpu:
                RESULTS.append((name, "SKIP", "needs the CUDA provider (run with --providers cuda on a GPU)"))
            else:
                try:
                    RESULTS.append((name, "PASS", fn(*args) or ""))
                except Exception as exc:
                    RESULTS.append((name, "FAIL", f"{type(exc).__name__}: {exc}"))
                    traceback.print_exc()
            print(f"[{RESULTS[-1][1]}] {name} ({time.perf_counter() - t0:.1f} s) {RESULTS[-1][2]}", flush=True)
        return run
    return wrap


def runtime(model, precision, providers=(CUDA, CPU), **kw):
    from stark_ros.runtime import RuntimeOptions, StarkRuntime

    return StarkRuntime(model, RuntimeOptions(providers=tuple(providers), precision=precision, **kw))


def first_frame_inputs(rt, data: Path, sequence: str):
    from stark_ros.core.geometry import plan_crop
    from stark_ros.datasets import load_simple_sequence

    seq = load_simple_sequence(data / sequence)
    frame, box = seq.frame(0), np.asarray(seq.boxes[0], dtype=np.float64)
    s = rt.settings
    # Five crops of growing size, shifted sideways: some inside the frame, some padded.
    shifts = [np.array([CROP_SHIFT_PX * (k - 2), 0.0, 0.0, 0.0]) for k in range(5)]
    plans = [plan_crop(frame.shape, box + shift, s.search_factor * (1 + k), s.search_size)
             for k, shift in enumerate(shifts)]
    return frame, box, plans


@check("precision fp32: CUDA runs the network with use_tf32=0")
def check_fp32(model, data, sequence):
    rt = runtime(model, "fp32")
    for graph in (rt.engine.template, rt.engine.track_graph):
        assert graph.providers[0] == CUDA, graph.providers
        assert graph.provider_options[CUDA]["use_tf32"] == "0", graph.provider_options[CUDA]
        assert not graph.float16
    return _compute_on_cuda(rt, data, sequence)


@check("precision tf32: use_tf32=1")
def check_tf32(model, data, sequence):
    rt = runtime(model, "tf32")
    assert rt.engine.track_graph.provider_options[CUDA]["use_tf32"] == "1"
    assert not rt.engine.track_graph.float16


@check("precision fp16: the float16 graphs run on CUDA")
def check_fp16(model, data, sequence):
    rt = runtime(model, "fp16")
    assert rt.engine.track_graph.float16 and rt.engine.template.float16
    assert rt.engine.track_graph.providers[0] == CUDA
    return _compute_on_cuda(rt, data, sequence)


def _compute_on_cuda(rt, data, sequence) -> str:
    """The track graph's Conv/MatMul/Gemm nodes all ran on CUDA (shape arithmetic may run on the CPU)."""
    frame, box, plans = first_frame_inputs(rt, data, sequence)
    feeds = rt.engine.track_feeds(*_network_inputs(rt, frame, box, plans))
    heavy = rt.engine.track_graph.nodes_by_provider(feeds, HEAVY_OPS)
    assert heavy.get(CUDA, 0) > 0 and not heavy.get(CPU, 0), heavy
    return f"track graph: all nodes {rt.engine.track_graph.nodes_by_provider(feeds)}, {'/'.join(HEAVY_OPS)} {heavy}"


def _network_inputs(rt, frame, box, plans):
    from stark_ros.core.geometry import crop_batch, plan_crop

    s = rt.settings
    template = plan_crop(frame.shape, box, s.template_factor, s.template_size)
    (token,) = rt.engine.encode_templates(*crop_batch(frame, [template], s.mean, s.std))
    images, masks = crop_batch(frame, plans, s.mean, s.std)
    return [[token] * len(plans)] * (1 + s.num_dynamic_templates), images, masks


@check("crops on the device: the crop graph on CUDA gives the CPU's crops bit for bit")
def check_device_crops(model, data, sequence):
    from stark_ros.core.geometry import crop_batch

    rt = runtime(model, "fp32")
    crops = rt.engine.crop_session
    assert crops is not None and crops.device == "cuda", (crops and crops.providers)
    frame, _, plans = first_frame_inputs(rt, data, sequence)
    s = rt.settings
    images, masks = rt.engine.crop(frame, plans, s.mean, s.std)
    assert isinstance(images, ort.OrtValue) and images.device_name().lower() == "cuda", type(images)
    want_images, want_masks = crop_batch(frame, plans, s.mean, s.std)
    assert np.array_equal(images.numpy(), want_images) and np.array_equal(masks.numpy(), want_masks)
    return f"{len(plans)} crops, sides {[p.side for p in plans]}"


@check("CUDA fp32 gives the CPU's network outputs")
def check_cuda_equals_cpu(model, data, sequence):
    gpu, cpu = runtime(model, "fp32"), runtime(model, "fp32", providers=(CPU,))
    frame, box, plans = first_frame_inputs(gpu, data, sequence)
    out_gpu = gpu.engine.predict(*_network_inputs(gpu, frame, box, plans))[0]
    out_cpu = cpu.engine.predict(*_network_inputs(cpu, frame, box, plans))[0]
    diff = float(np.abs(out_gpu - out_cpu).max())
    assert diff < NETWORK_TOLERANCE, diff
    return f"max |box difference| {diff:.1e} (normalised)"


@check("TensorRT requested where it cannot start: one warning, no ONNX Runtime error block")
def check_quiet_fallback(model, data, sequence):
    code = ("import logging, onnxruntime as o\n"
            "getattr(o, 'preload_dlls', lambda: None)()\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "from stark_ros.runtime import RuntimeOptions, StarkRuntime\n"
            f"rt = StarkRuntime({str(model)!r}, RuntimeOptions(precision='tf32'))\n"
            "print('ACTIVE', ','.join(rt.active_providers))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=FALLBACK_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    active = next(line for line in done.stdout.splitlines() if line.startswith("ACTIVE")).split()[1]
    ort_lines = [line for line in (done.stdout + done.stderr).splitlines()
                 if "[E:onnxruntime" in line or "EP Error" in line]
    warnings = [line for line in done.stderr.splitlines() if "TensorRT requested but it failed to start" in line]
    if active.startswith(TENSORRT):
        return f"TensorRT started here ({active}); nothing to fall back from"
    assert not ort_lines, ort_lines[:4]
    assert len(warnings) == 1, done.stderr[-2000:]
    return f"active: {active}; the warning: {warnings[0][-160:]}"


@check("the crop graph on the CPU provider gives numpy/OpenCV's crops bit for bit", needs_gpu=False)
def check_graph_crops_on_cpu(model, data, sequence):
    from stark_ros.core.geometry import crop_batch

    rt = runtime(model, "fp32", providers=(CPU,), crops="graph")
    frame, _, plans = first_frame_inputs(rt, data, sequence)
    s = rt.settings
    images, masks = rt.engine.crop(frame, plans, s.mean, s.std)
    want_images, want_masks = crop_batch(frame, plans, s.mean, s.std)
    assert np.array_equal(images, want_images) and np.array_equal(masks, want_masks)
    return f"{len(plans)} crops, sides {[p.side for p in plans]}"


def run_bench(provider: str, precisions, model_args, data: Path, sequences, out_json: Path, threads: int,
              frames: int, rounds: int, timeout: float) -> list | None:
    cmd = [sys.executable, "-c",
           "import sys, onnxruntime as o; getattr(o, 'preload_dlls', lambda: None)(); "
           "from stark_ros.bench.runtime import main; sys.exit(main(sys.argv[1:]))",
           "--providers", provider, "--precisions", *precisions, "--targets", "1", "8", "32",
           "--data", str(data), "--sequences", *sequences, "--frames", str(frames), "--rounds", str(rounds),
           "--threads", str(threads), "--json", str(out_json), "--variants", *model_args]
    print("$ python -m stark_ros.bench runtime " + " ".join(cmd[3:]), flush=True)
    try:
        subprocess.run(cmd, timeout=timeout, check=True)
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
        print(f"bench did not finish ({type(exc).__name__}); the rows it measured before follow", flush=True)
    return json.loads(out_json.read_text()) if out_json.is_file() else None


def summary(rows, label: str) -> None:
    print(f"\n=== {label}: figures against the goals of issue 24 ===")
    head = (f"{'model':10} {'prec':5} {'net b1 ms':>9} {'trk 1 ms':>9} {'trk/net':>8} {'8/1':>6} {'32/1':>6} "
            f"{'max dpx vs CPU':>15} {'AUC change':>12}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["error"]:
            print(f"{r['model'][:10]:10} {r['precision']:5} not run: {r['error']}")
            continue
        net, trk = r["net_ms"], r["tracker_ms"]
        dpx = max(r["max_box_diff_px"].values())
        dauc = np.mean([r["auc"][k] - r["cpu_auc"][k] for k in r["auc"]])
        print(f"{r['model'][:10]:10} {r['precision']:5} {net['1']:9.2f} {trk['1']:9.2f} "
              f"{trk['1'] / net['1']:7.2f}x {trk['8'] / trk['1']:5.2f}x {trk['32'] / trk['1']:5.2f}x "
              f"{dpx:15.2e} {dauc:+12.4f}")
    print(f"goals: trk/net <= {GOAL_TRACKER_OVER_NETWORK}, 8/1 <= {GOAL_8_OVER_1}, 32/1 <= {GOAL_32_OVER_1}, "
          f"fp32 max dpx <= {GOAL_BOX_DIFF_PX} px")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", default="cuda", choices=["cuda", "cpu"],
                        help="cuda (the check); cpu: a dry run of everything that needs no GPU")
    parser.add_argument("--data", required=True, type=Path, help="folder holding the sequences")
    parser.add_argument("--sequences", nargs="+", default=["otb_crossing", "vot_bag"])
    parser.add_argument("--model", type=Path, required=True, help="model folder (the shipped default model)")
    parser.add_argument("--extra-variants", nargs="*", default=[],
                        help="presets exported with random weights and measured after the model (needs torch)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "fp16"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bench-timeout", type=float, default=200.0, help="seconds for each bench run")
    args = parser.parse_args()
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    logging.basicConfig(level=logging.WARNING)
    print(f"onnxruntime {ort.__version__} from {Path(ort.__file__).parent}; providers: "
          f"{', '.join(ort.get_available_providers())}", flush=True)
    gpu = args.providers == "cuda"
    if gpu and CUDA not in ort.get_available_providers():
        print("[FAIL] this onnxruntime has no CUDA provider: install onnxruntime-gpu (or put it on PYTHONPATH)")
        return 1
    for fn in (check_fp32, check_tf32, check_fp16, check_device_crops, check_cuda_equals_cpu, check_quiet_fallback,
               check_graph_crops_on_cpu):
        fn(gpu, args.model, args.data, args.sequences[0])
    with tempfile.TemporaryDirectory(prefix="stark_gpu_check_") as tmp:
        def bench(variants, name):
            return run_bench(args.providers, args.precisions, variants, args.data, args.sequences, Path(tmp) / name,
                             args.threads, args.frames, args.rounds, args.bench_timeout)
        rows = bench([str(args.model)], "model.json")
        extra = bench(args.extra_variants, "extra.json") if args.extra_variants else None
    print("\n=== checks ===")
    for name, verdict, detail in RESULTS:
        print(f"[{verdict}] {name}: {detail}")
    if rows is not None:
        summary(rows, f"{args.model} on {args.providers}")
    if extra is not None:
        summary(extra, f"{' '.join(args.extra_variants)} on {args.providers}")
    return 0 if all(verdict != "FAIL" for _, verdict, _ in RESULTS) and rows is not None else 1


if __name__ == "__main__":
    sys.exit(main())
