"""The README's main job: the tracker node on a real recorded sequence, over real ROS 2 traffic.

    python -m stark_ros.demo [--sequence vot2014_car] [--rate 15] [--model DIR] [--out out/demo]

A player node publishes the sequence's frames as sensor_msgs/Image at a fixed rate and asks the
tracker (a separate process: the installed `tracker_node`) to follow the annotated box of the
first frame; the demo prints every tracked frame as it arrives, then a summary scored against the
ground truth, and writes a picture with the tracked (green) and true (yellow) boxes.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from stark_ros.client.harness import TrackerClient, paced
from stark_ros.client.process import NodeProcessError, TrackerNodeProcess, use_private_domain
from stark_ros.core.boxes import msg_to_box, pixel_corners
from stark_ros.core.stamps import stamp_ns
from stark_ros.datasets import MissingSharedDataError, load_simple_sequence, shared_dir
from stark_ros.evaluation.metrics import sequence_metrics
from stark_ros.interface import DEFAULT_ENCODING
from stark_ros.msg import TrackEvent
from stark_ros.runtime import ModelLoadError, default_model_dir

# A rigid, distinct target on which the default model tracks well (its card: AUC 0.76 here); the
# other shared sequences, where it does worse, are one --sequence away.
DEFAULT_SEQUENCE = "vot2014_car"
# Written beside a model's card by the evaluation that produced the card's table.
CARD_FIGURES = "evaluation.json"
DEFAULT_RATE_HZ = 15.0
PICTURE_FRAMES = 4
TRACK_COLOUR = (0, 220, 0)
TRUTH_COLOUR = (255, 210, 0)
EVENT_NAMES = {TrackEvent.INITIALIZED: "INITIALIZED", TrackEvent.LOST: "LOST", TrackEvent.REACQUIRED: "REACQUIRED",
               TrackEvent.CANCELLED: "CANCELLED", TrackEvent.REJECTED: "REJECTED"}


def _model_dir(requested: str | None, scratch: Path) -> tuple[Path, str]:
    """The model to run and a plain sentence about what its weights are."""
    if requested:
        return Path(requested), f"the model you named ({requested})"
    try:
        path = default_model_dir()
        card = path / "README.md"
        return path, f"the default STARK-Lite model shipped with the package ({path}; model card: {card})"
    except ModelLoadError:
        pass
    # No trained model installed: make an untrained one so the plumbing can still be shown.
    import torch

    from stark_ros.export import export_model
    from stark_ros.model import build_model, get_preset

    torch.manual_seed(0)
    out = scratch / "untrained_lite"
    export_model(build_model(get_preset("LITE")), out, source_sha256="untrained")
    return out, ("an UNTRAINED STARK-Lite (random weights): no trained model is installed, so the boxes below "
                 "are meaningless; they only show the ROS 2 plumbing")


def _print_card_figures(model_dir: Path, shown: str) -> None:
    """One sequence says little: put the model's figures over all the unseen sequences beside it
    (from its card's evaluation.json, written by the evaluation that produced the card)."""
    path = Path(model_dir) / CARD_FIGURES
    if not path.is_file():
        return
    figures = json.loads(path.read_text())
    mean = figures["mean_auc"]
    per_sequence = figures["per_sequence_auc"]
    baselines = ", ".join(f"{name} {value:.3f}" for name, value in figures.get("baselines_mean_auc", {}).items())
    print(f"  this model over all {len(per_sequence)} unseen sequences of shared/data/sot ({path}): mean success "
          f"AUC {mean:.3f}" + (f" (baselines: {baselines})" if baselines else ""))
    if shown in per_sequence:
        print(f"  on {shown} alone it scored {per_sequence[shown]:.3f} there: one sequence is not the average")
    for name, where in (("lt", "shared/data/lt (the target leaves the view and returns)"),
                        ("sot", "shared/data/sot")):
        mean = figures.get("longterm", {}).get(name, {}).get("mean")
        if mean:
            absent = mean.get("absent_lost_share")   # None where the set has no absent frames
            print(f"  lost and found on {where}: F {mean['f_score']:.3f} (precision {mean['precision']:.3f}, recall "
                  f"{mean['recall']:.3f}), false LOST {100 * mean['false_lost_share']:.1f}% of well-tracked frames"
                  + (f", {100 * absent:.1f}% of absent frames reported LOST" if absent is not None else ""))


def _picture(seq, boxes: dict, out: Path) -> Path:
    indices = [i for i in np.linspace(1, len(seq) - 1, PICTURE_FRAMES).astype(int)]
    tiles = []
    for i in indices:
        img = cv2.cvtColor(seq.frame(i), cv2.COLOR_RGB2BGR)
        for box, colour in ((seq.boxes[i], TRUTH_COLOUR), (boxes.get(i), TRACK_COLOUR)):
            if box is None or not np.all(np.isfinite(box)):
                continue
            cv2.rectangle(img, *pixel_corners(box), colour[::-1], 2)
        cv2.putText(img, f"frame {i + 1}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(img)
    height = min(t.shape[0] for t in tiles)
    tiles = [cv2.resize(t, (int(t.shape[1] * height / t.shape[0]), height)) for t in tiles]
    if len(tiles) == PICTURE_FRAMES:
        grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])
    else:
        grid = np.hstack(tiles)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), grid)
    return out


class _Printer:
    """Prints every tracked frame as its tracks arrive, and every event (on the client's thread)."""

    def __init__(self, frames: int, index: dict[int, int]):
        self.frames, self.index = frames, index  # index: frame stamp -> frame number
        self.tracked = 0
        self.start = time.monotonic()

    def tracks(self, msg) -> None:
        i = self.index.get(stamp_ns(msg.header.stamp))
        if i is None or not msg.objects:
            return
        obj = msg.objects[0]
        x, y, w, h = msg_to_box(obj.bbox)
        self.tracked += 1
        elapsed = time.monotonic() - self.start
        fps = self.tracked / elapsed if elapsed > 0 else math.nan
        state = "LOST" if obj.state == obj.STATE_LOST else "tracking"
        print(f"  frame {i + 1:4d}/{self.frames}  box x={x:7.1f} y={y:7.1f} w={w:6.1f} h={h:6.1f}"
              f"  score {obj.score:4.2f}  {state:8s}  {fps:5.1f} frames/s", flush=True)

    @staticmethod
    def event(msg) -> None:
        kind = EVENT_NAMES.get(msg.type, msg.type)
        print(f"  event: target '{msg.id}' {kind} {msg.reason}", flush=True)


def _play(seq, model: Path, rate: float, log_path: Path) -> tuple[dict, list, list]:
    """The tracker node fed the sequence at ``rate`` by a player client, the first frame's box asked
    for on the first frame: (frame number -> tracked box, latencies in ms, events)."""
    index: dict[int, int] = {}
    printer = _Printer(len(seq), index)
    with TrackerNodeProcess(log_path, params={"model": model}) as tracker, \
            TrackerClient(name="stark_demo_player", on_tracks=printer.tracks, on_event=printer.event) as client:
        client.wait_connected(tracker)
        print(f"tracker node is up; publishing frames (sensor_msgs/Image, {DEFAULT_ENCODING}) ...")
        printer.start = time.monotonic()
        for i in paced(k / rate for k in range(len(seq))):
            msg = client.image_msg(seq.frame(i), client.now_ns())
            last = stamp_ns(msg.header.stamp)
            index[last] = i  # before publishing: the tracks may come back before publish returns
            client.publish_image(msg)
            if i == 0:
                client.request(seq.boxes[0], header=msg.header, target_id="target", label=seq.name)
                print(f"  asked to track the annotated box of frame 1: {np.round(seq.boxes[0], 1).tolist()}")
        client.wait_last_tracks(last)
        tracked = {s: m for s, m in client.tracks_by_stamp().items() if s in index and m.objects}
        boxes = {index[s]: msg_to_box(m.objects[0].bbox) for s, m in tracked.items()}
        return boxes, client.latencies_ms(tracked), list(client.events)


def _summary(seq, boxes: dict, latency: list, events: list) -> None:
    tracked = sorted(boxes)
    print("\nsummary")
    print(f"  frames published {len(seq)}, tracked {len(tracked)}, not tracked (dropped or before the target "
          f"started) {len(seq) - len(tracked)}")
    if tracked:
        m = sequence_metrics(np.array([boxes[i] for i in tracked]), seq.boxes[tracked])
        print(f"  against the ground truth on tracked frames: success AUC {m.success_auc:.3f}, mean IoU {m.ao:.3f}, "
              f"precision@20px {m.precision_20:.3f}")
        print(f"  latency publish -> tracks received: p50 {np.percentile(latency, 50):.1f} ms, "
              f"p95 {np.percentile(latency, 95):.1f} ms")
    print(f"  events: {len(events)} ({', '.join(sorted({e.reason or str(e.type) for e in events})[:3])})")


def run(args) -> int:
    try:
        seq = load_simple_sequence(shared_dir() / "data" / "sot" / args.sequence)
    except (MissingSharedDataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.frames:
        seq.frames, seq.boxes = seq.frames[: args.frames], seq.boxes[: args.frames]
    scratch = Path(tempfile.mkdtemp(prefix="stark_demo_"))
    model, what = _model_dir(args.model, scratch)
    print(f"stark_ros demo: tracking '{seq.name}' ({len(seq)} frames) at {args.rate:g} frames/s")
    print(f"weights: {what}")
    use_private_domain()
    log_path = Path(args.out) / "tracker_node.log"
    try:
        boxes, latency, events = _play(seq, model, args.rate, log_path)
    except NodeProcessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _summary(seq, boxes, latency, events)
    _print_card_figures(model, seq.name)
    picture = _picture(seq, boxes, Path(args.out) / f"demo_{seq.name}.png")
    print(f"  picture: {picture} (green: tracked, yellow: ground truth); node log: {log_path}")
    return 0 if boxes else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", default=DEFAULT_SEQUENCE, help="a folder of shared/data/sot")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE_HZ, help="frames per second published")
    parser.add_argument("--frames", type=int, default=0, help="only the first N frames (0: all)")
    parser.add_argument("--model", default=None, help="model folder (default: the installed default model)")
    parser.add_argument("--out", default="out/demo", help="folder for the picture and the node's log")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
