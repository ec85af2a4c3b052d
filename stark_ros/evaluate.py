"""python -m stark_ros.evaluate: run trackers over a dataset, score them, write a report.

    python -m stark_ros.evaluate                                  # default model + baseline on shared/data/sot
    python -m stark_ros.evaluate --root ../shared/data/lt         # long-term: the target leaves and returns
    python -m stark_ros.evaluate --tracker runtime:models/st50 --tracker baseline --dataset otb --root ~/OTB100
    python -m stark_ros.evaluate --tracker reference:STARKST_ep0050.pth.tar --update-interval 200

Trackers: ``runtime[:MODEL_DIR]`` (ONNX Runtime; default: the installed default model),
``reference:CHECKPOINT`` (the PyTorch reference tracker; needs torch), ``baseline`` (OpenCV CSRT,
or MIL where OpenCV has no contrib modules; needs no weights), ``static`` (the initial box on every
frame: the floor), ``matcher`` (untrained backbone features matched by cosine: a diagnostic; needs
torch). Default: runtime, baseline and static.

``--dataset cuts --root shared/data/train --sequences ...`` tracks on the trainer's target-centred
cuts pasted back into whole frames (the validation split; :mod:`stark_ros.datasets.cuts`).

Beside the short-term metrics the report gives the long-term ones
(:mod:`stark_ros.evaluation.longterm`: VOT-LT precision / recall / F with present = not LOST, F-max,
absent -> LOST, false LOST, frames to LOST / found again per absence episode).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stark_ros.core.locate import file_sha256
from stark_ros.datasets import READERS, load_dataset, shared_dir
from stark_ros.evaluation.matcher import StaticBox
from stark_ros.evaluation.report import curves, write_report
from stark_ros.evaluation.runner import OpenCVBaseline, run_dataset, score

LOG = logging.getLogger("stark_ros.evaluate")
DEFAULT_TRACKERS = ("runtime", "baseline", "static")


def make_tracker(spec: str, update_interval: int | None, lost_logic: bool = True,
                 size_update_rate: float | None = None):
    kind, _, arg = spec.partition(":")
    if kind in ("runtime", "reference"):
        return _network_tracker(kind, arg, update_interval=update_interval, size_update_rate=size_update_rate,
                                lost_logic=lost_logic)
    if kind == "baseline":
        tracker = OpenCVBaseline(arg or None)
        return tracker, tracker.name, "OpenCV, no weights"
    if kind == "static":
        tracker = StaticBox()
        return tracker, tracker.name, "the initial box on every frame (the floor)"
    if kind == "matcher":
        from stark_ros.evaluation.matcher import FeatureMatcher

        tracker = FeatureMatcher()
        return tracker, tracker.name, "untrained EfficientNet-Lite0 ImageNet features, cosine matching (diagnostic)"
    raise ValueError(f"unknown tracker {spec!r} (runtime[:DIR], reference:CKPT, baseline[:csrt|mil], static, "
                     "matcher)")


def run_identity(spec: str, source: str, args: argparse.Namespace) -> dict:
    """What a tracker's results depend on beyond the package's code: the spec, the model's files
    (their metadata, i.e. the lost settings, included), the options and the dataset; stored with its
    results, so that a resumed run never reuses another model's or setting's results."""
    kind, _, _ = spec.partition(":")
    identity = {"spec": spec, "update_interval": args.update_interval, "lost_logic": args.lost_logic,
                "size_update_rate": args.size_update_rate, "dataset": args.dataset,
                "root": str(Path(args.root).resolve()) if args.root else "shared/data/sot"}
    if kind == "runtime":
        model = Path(source)
        identity["model_sha256"] = {path.name: file_sha256(path) for path in sorted(model.glob("*.onnx"))}
    elif kind == "reference":
        identity["checkpoint_sha256"] = file_sha256(source)
    return identity


def _network_tracker(kind: str, arg: str, lost_logic: bool, **overrides):
    """The tracking policy on ONNX Runtime (``runtime[:MODEL_DIR]``) or on PyTorch
    (``reference:CHECKPOINT``, the same algorithm as ``runtime:`` of its export), with the same
    overrides and lost logic, behind the one single-target adapter."""
    from stark_ros.tracking.lost import NEVER_LOST
    from stark_ros.tracking.policy import SingleTargetTracker

    lost = None if lost_logic else NEVER_LOST
    if kind == "runtime":
        from stark_ros.runtime import StarkRuntime, resolve_model

        source = resolve_model(arg or None)
        policy, engine_name = StarkRuntime(source, lost=lost, **overrides), "onnx"
    else:
        if not arg:
            raise ValueError("reference:CHECKPOINT needs a checkpoint")
        from stark_ros.model import ReferenceTracker, load_checkpoint

        source = arg
        policy, engine_name = ReferenceTracker(load_checkpoint(arg)[0], lost, **overrides), "torch"
    # Names of network trackers say which non-default tracking settings they ran with.
    size_update_rate = overrides.get("size_update_rate")
    suffix = ("" if lost_logic else "_nolost") + (f"_size{size_update_rate:g}" if size_update_rate else "")
    return SingleTargetTracker(policy), f"stark_{policy.variant.lower()}_{engine_name}{suffix}", f"{source}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="simple", choices=sorted(READERS), help="dataset layout")
    parser.add_argument("--root", default=None, help="dataset folder (default: shared/data/sot)")
    parser.add_argument("--sequences", nargs="*", default=None, help="only these sequences")
    parser.add_argument("--tracker", action="append", default=None,
                        help="tracker to run (repeatable); default: runtime, baseline and static")
    parser.add_argument("--update-interval", type=int, default=None, help="dynamic template update interval")
    parser.add_argument("--lost-logic", choices=["on", "off"], default="on",
                        help="runtime and reference trackers: the lost-target logic (default on, as the node runs it)")
    parser.add_argument("--size-update-rate", type=float, default=None,
                        help="runtime and reference trackers: share of the network's new box size taken per frame "
                             "(default: the model's own)")
    parser.add_argument("--out", default="out/eval", help="results and report folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = Path(args.root) if args.root else shared_dir() / "data" / "sot"
    try:
        sequences = load_dataset(args.dataset, root)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.sequences:
        sequences = [s for s in sequences if s.name in set(args.sequences)]
    if not sequences:
        print("error: no sequences to evaluate", file=sys.stderr)
        return 2
    scores, curve_data = {}, {}
    for spec in args.tracker or DEFAULT_TRACKERS:
        tracker, name, source = make_tracker(spec, args.update_interval, args.lost_logic == "on",
                                             args.size_update_rate)
        if name in scores:
            # Two trackers of one kind (e.g. two models): the later one is named after its source too.
            base, copy = name, 1
            name = f"{base}@{Path(source).name}"
            while name in scores:
                copy += 1
                name = f"{base}@{Path(source).name}#{copy}"
        print(f"{name}: {source}")
        results = run_dataset(tracker, name, sequences, Path(args.out) / "results", progress=not args.no_progress,
                              identity=run_identity(spec, source, args))
        scores[name] = score(results, sequences)
        curve_data[name] = curves(results, sequences)
    paths = write_report(scores, curve_data, args.out, title=f"{args.dataset}: {root}")
    print(Path(paths["markdown"]).read_text().split("\n## ")[0])
    print("report: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
