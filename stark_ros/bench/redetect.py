"""``python -m stark_ros.bench redetect``: what re-detection while LOST costs, side by side.

Runs one target through the runtime (the default model unless ``--model``) over every sequence of
a long-term dataset (``shared/data/lt`` by default: targets that leave the view and come back) twice,
with the model's re-detection settings and with re-detection off, on the same preloaded frames, in
lockstep: each frame goes to both trackers, one right after the other (which one first alternates from
frame to frame), so that load from other processes hits both alike. Times are of ``update()`` alone
(crops, network, lost logic, re-detection), not of decoding. Prints frames/s per sequence and over all
frames (total frames / total time), their ratio, the share of frames LOST and the re-detection crops
per frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# The issue's floor for one target on 2 CPU threads with re-detection on (frames/s over the dataset).
GOAL_FPS = 30.0
DEFAULT_THREADS = 2


def lockstep(trackers: dict, frames: list[np.ndarray], box) -> dict:
    """Per tracker: (seconds in update(), frames LOST, re-detection crops) over ``frames``, each
    frame tracked by every tracker in turn."""
    from stark_ros.tracking.lost import TargetState

    names = list(trackers)
    seconds, lost = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
    crops = {}
    for name, rt in trackers.items():
        rt.clear()
        rt.add_target(frames[0], box, "bench")
        crops[name] = rt.redetector.crops_cut
    for k, frame in enumerate(frames[1:]):
        for name in names if k % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            (result,) = trackers[name].update(frame)
            seconds[name] += time.perf_counter() - t0
            lost[name] += result.state is TargetState.LOST
    return {name: (seconds[name], lost[name], trackers[name].redetector.crops_cut - crops[name]) for name in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.bench redetect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: the installed default model)")
    parser.add_argument("--root", default=None, help="dataset in the simple layout (default: shared/data/lt)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="ONNX Runtime CPU threads")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first frames of each sequence")
    args = parser.parse_args(argv)
    from stark_ros.datasets import load_dataset, shared_dir
    from stark_ros.runtime import RuntimeOptions, StarkRuntime, resolve_model
    from stark_ros.tracking.redetect import NO_REDETECTION

    root = Path(args.root) if args.root else shared_dir() / "data" / "lt"
    options = RuntimeOptions(providers=("CPUExecutionProvider",), intra_op_threads=args.threads)
    model = resolve_model(args.model)
    on = StarkRuntime(model, options)
    off = StarkRuntime(model, options, redetect=NO_REDETECTION)
    print(f"model {model}; re-detection on: {on.redetect_settings}; {args.threads} CPU threads")
    print(f"{'sequence':<24} {'frames':>6} {'fps on':>7} {'fps off':>7} {'on/off':>6} {'LOST %':>6} "
          f"{'crops/frame':>11}")
    totals = {"on": 0.0, "off": 0.0}
    all_frames = 0
    for seq in load_dataset("simple", root):
        count = len(seq) if args.max_frames is None else min(len(seq), args.max_frames)
        frames = [seq.frame(i) for i in range(count)]
        measured = lockstep({"on": on, "off": off}, frames, seq.boxes[0])
        n = count - 1
        fps = {name: n / m[0] for name, m in measured.items()}
        for name, m in measured.items():
            totals[name] += m[0]
        all_frames += n
        print(f"{seq.name:<24} {n:>6} {fps['on']:>7.1f} {fps['off']:>7.1f} {fps['on'] / fps['off']:>6.2f} "
              f"{100 * measured['on'][1] / n:>6.1f} {measured['on'][2] / n:>11.2f}")
    fps_on, fps_off = all_frames / totals["on"], all_frames / totals["off"]
    print(f"{'all frames':<24} {all_frames:>6} {fps_on:>7.1f} {fps_off:>7.1f} {fps_on / fps_off:>6.2f}")
    print(f"goal: >= {GOAL_FPS:.0f} frames/s with re-detection on: {'met' if fps_on >= GOAL_FPS else 'NOT met'} "
          f"({fps_on:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
