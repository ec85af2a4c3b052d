"""``python -m stark_ros.bench node``: the tracker node's end-to-end latency and tracked share next to
the bare runtime, the way a robot runs it: camera, node and the consumer of ``tracks`` each in its
own process.

Measured in one run on the same frames of a shared sequence (resized with ``--size``):
* the bare runtime (``StarkRuntime.update``, in this process, no ROS) per frame;
* the installed tracker node (a child process, the executable ``ros2 run`` starts), fed the frames as
  ``sensor_msgs/Image`` over real DDS by a **publisher in its own process** at ``--rate``, one target
  started by a ``TargetRequest``; this process subscribes to ``tracks``: the tracked share (frames
  whose tracks carry the target / frames published), the latency from publishing a frame to
  receiving its tracks (both processes read the same monotonic clock), where the untracked frames
  went (dropped by the node's queue for newer ones, or never arrived through DDS), and the node's
  own inference and decode time per frame (from its ``/diagnostics``);
* the node's own work per frame (decode, queue, bookkeeping, publish) as a share of the bare
  runtime's time; and the transport (end-to-end latency minus the node's inference and own work).

Without ``--rate`` frames are published at half the measured runtime rate, so the latency is the
pipeline's, not a queue's. The bare runtime runs again after the node, and the faster of its two
passes counts. ``--rates 30 60 100`` runs the node once per rate. Both DDS sides use the package's
Fast DDS transport profile for large images (``config/fastdds_large_images.xml``) unless
``--default-transport``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from stark_ros.client.process import rss_mb, use_transport_profile
from stark_ros.core.stamps import set_stamp
from stark_ros.datasets import load_simple_sequence, shared_dir
from stark_ros.runtime import RuntimeOptions, StarkRuntime, default_model_dir

DEFAULT_SEQUENCE = "otb_crossing"
DEFAULT_FRAMES = 120
# Publish at this share of the bare runtime's frame rate: the worker idles between frames.
DEFAULT_LOAD = 0.5
GOAL_OVERHEAD_SHARE = 0.10
GOAL_TRACKED_SHARE = 0.95
DIAGNOSTICS_WAIT_S = 3.0
PUBLISHER_TIMEOUT_S = 120.0
# The node's per-frame figures read from its /diagnostics (reported as node_<name>).
NODE_FIGURES = ("inference_p50_ms", "latency_p50_ms", "decode_p50_ms", "queue_wait_p50_ms", "worker_p50_ms")
MS = 1e3
NS_PER_MS = 1e6


def _percentiles(values_ms) -> dict:
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "n": int(arr.size)}


def parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    w, h = (int(v) for v in text.lower().split("x"))
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (WIDTHxHEIGHT)")
    return w, h


def load_frames(sequence: str, n: int, size: tuple[int, int] | None):
    """The first n frames of a shared sequence (resized to ``size``) and the first box, scaled."""
    seq = load_simple_sequence(shared_dir() / "data" / "sot" / sequence)
    n = min(n, len(seq))
    frames, box = [seq.frame(i) for i in range(n)], np.asarray(seq.boxes[0], dtype=np.float64)
    if size is not None:
        sx, sy = size[0] / frames[0].shape[1], size[1] / frames[0].shape[0]
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames]
        box = box * np.array([sx, sy, sx, sy])
    return seq.name, frames, box


def bare_runtime_ms(model: Path, frames, box, threads: int) -> list[float]:
    """Per-frame ``update`` time of the runtime on frames[1:], the target started on frames[0]."""
    rt = StarkRuntime(model, RuntimeOptions(providers=("CPUExecutionProvider",), intra_op_threads=threads))
    rt.add_target(frames[0], box)
    times = []
    for frame in frames[1:]:
        t0 = time.perf_counter()
        rt.update(frame)
        times.append((time.perf_counter() - t0) * MS)
    return times


def _publisher(spec: dict, results) -> None:
    """The camera, in its own process: waits for the node, then publishes every frame at the rate
    (stamped with its clock; the first carries the target request) and reports the publish times."""
    from stark_ros.client.harness import TrackerClient, paced

    _, frames, box = load_frames(spec["sequence"], spec["frames"], spec["size"])
    with TrackerClient(name="stark_bench_camera", listen=False) as camera:
        messages = [camera.image_msg(f, 0, encoding=spec["encoding"]) for f in frames]
        try:
            camera.wait_connected()
            # A soak publishes more frames than the sequence has: it plays the sequence in a loop.
            for i in paced(k / spec["rate"] for k in range(spec.get("count") or len(messages))):
                msg = messages[i % len(messages)]
                set_stamp(msg.header, camera.now_ns())
                camera.publish_image(msg)
                if i == 0:
                    camera.request(box, header=msg.header, target_id="bench")
        finally:
            results.put(camera.published_ns)


def _sample(consumer, pid: int, period_s: float, stop: threading.Event, samples: list) -> None:
    """The node's RSS and /diagnostics, every ``period_s`` until ``stop``."""
    while not stop.wait(period_s):
        samples.append({"t_ns": time.monotonic_ns(), "rss_mb": rss_mb(pid), **consumer.latest_diagnostics()})


def node_run(model: Path, sequence: str, n: int, size, rate_hz: float, threads: int, log_dir: Path,
             encoding: str = "bgr8", params: dict | None = None, count: int | None = None,
             sample_period_s: float | None = None) -> dict:
    """One run of the node process fed by a camera process; see the module docstring. ``count``
    frames are published (default: the n loaded, once); with ``sample_period_s`` the node's RSS
    and its /diagnostics are also sampled over time (``samples``)."""
    from stark_ros.client.harness import TrackerClient
    from stark_ros.client.process import TrackerNodeProcess, use_private_domain
    from stark_ros.interface import DEFAULT_NODE_NAME

    use_private_domain()
    params = {"model": str(model), "intra_op_threads": threads, "providers": "['CPUExecutionProvider']",
              **(params or {})}
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    camera = ctx.Process(target=_publisher, args=({"sequence": sequence, "frames": n, "size": size,
                                                   "rate": rate_hz, "encoding": encoding, "count": count},
                                                  results))
    samples: list[dict] = []
    stop_sampling = threading.Event()
    with TrackerNodeProcess(log_dir / "tracker_node.log", params=params) as tracker, \
            TrackerClient(name="stark_bench_consumer", diagnostics=DEFAULT_NODE_NAME) as consumer:
        consumer.wait_connected(tracker)
        if sample_period_s:
            threading.Thread(target=_sample, args=(consumer, tracker.proc.pid, sample_period_s, stop_sampling,
                                                   samples), daemon=True).start()
        camera.start()
        try:
            published = results.get(timeout=PUBLISHER_TIMEOUT_S + (count or n) / rate_hz)
            camera.join()
            if published:
                consumer.wait_last_tracks(max(published, key=published.get))
            time.sleep(DIAGNOSTICS_WAIT_S)  # one more /diagnostics period with every frame in it
        finally:
            stop_sampling.set()
            if camera.is_alive():
                camera.terminate()
        return _figures(published, consumer, samples)


def _figures(published: dict, consumer, samples: list) -> dict:
    """What one node run measured: tracked frames and their latency from this process's records,
    the node's own figures from its last /diagnostics."""
    tracks = consumer.tracks_by_stamp()
    arrived = {s: t for s, t in consumer.arrived_ns.items() if s in tracks and tracks[s].objects}
    latency = [(arrived[k] - published[k]) / NS_PER_MS for k in published if k in arrived]
    diagnostics = consumer.latest_diagnostics()
    processed = int(diagnostics.get("frames_processed", "0"))
    dropped = int(diagnostics.get("frames_dropped", "0"))
    figures = {f"node_{key}": float(diagnostics.get(key, "nan")) for key in NODE_FIGURES}
    return {"latency_ms": _percentiles(latency), "published": len(published),
            "tracked": sum(1 for k in published if k in arrived), **figures,
            "processed": processed, "dropped": dropped,
            "lost_in_transport": max(0, len(published) - processed - dropped),
            "skipped_by_reason": diagnostics.get("frames_skipped_by_reason", ""),
            "providers": diagnostics.get("providers", ""),
            "samples": samples, "published_ns": published, "arrived_ns": arrived}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.bench node", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the installed default model)")
    parser.add_argument("--sequence", default=DEFAULT_SEQUENCE, help="a folder of shared/data/sot")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help="frames published (more than the sequence has: it is played in a loop)")
    parser.add_argument("--size", type=parse_size, help="resize frames to WIDTHxHEIGHT (e.g. 640x480, 1280x720)")
    parser.add_argument("--encoding", default="bgr8", help="image encoding published (bgr8, rgb8, ...)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help=f"frames/s published (0: {DEFAULT_LOAD:g} x the measured runtime rate)")
    parser.add_argument("--rates", type=float, nargs="+", help="one node run per rate (overrides --rate)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads, same on both sides (0: auto)")
    parser.add_argument("--default-transport", action="store_true",
                        help="Fast DDS defaults instead of the package's large-image profile")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser


def _judge(rate: float, node: dict, bare: dict) -> dict:
    """One node run next to the bare runtime: the shares the goals are about, printed and returned."""
    e2e = node["latency_ms"]
    # The node's own work per frame: decoding the image in its callback, then the worker's
    # bookkeeping and publishing (its time on a frame minus inference). Waiting in the queue for
    # the worker is not work (it is the price of a rate above the runtime's); the rest of the
    # end-to-end time is transport: two DDS hops and this client's executor.
    own = node["node_decode_p50_ms"] + node["node_worker_p50_ms"] - node["node_inference_p50_ms"]
    if not np.isfinite(own):  # a node without the worker figures (an older build)
        own = node["node_decode_p50_ms"] + node["node_latency_p50_ms"] - node["node_inference_p50_ms"]
    share = own / bare["p50"]
    overhead = e2e["p50"] - node["node_inference_p50_ms"] - np.nan_to_num(node["node_queue_wait_p50_ms"])
    tracked_share = node["tracked"] / max(1, node["published"])
    arrived_share = (node["processed"] + node["dropped"]) / max(1, node["published"])
    node = {k: v for k, v in node.items() if k not in ("samples", "published_ns", "arrived_ns")}
    print(f"  at {rate:5.1f} frames/s: tracked {node['tracked']}/{node['published']} ({tracked_share:.1%}; goal >= "
          f"{GOAL_TRACKED_SHARE:.0%}: {'met' if tracked_share >= GOAL_TRACKED_SHARE else 'NOT met'}), "
          f"reached the node {arrived_share:.1%}: dropped by the node's queue for newer frames {node['dropped']}, "
          f"lost in transport {node['lost_in_transport']}")
    print(f"    image published -> tracks p50 {e2e['p50']:7.2f} ms   p99 {e2e['p99']:7.2f} ms; node inference p50 "
          f"{node['node_inference_p50_ms']:.2f} ms, decode p50 {node['node_decode_p50_ms']:.2f} ms, waiting for "
          f"the worker p50 {node['node_queue_wait_p50_ms']:.2f} ms")
    print(f"    node's own work per frame {own:6.2f} ms = {share:.1%} of the bare runtime's inference (goal <= "
          f"{GOAL_OVERHEAD_SHARE:.0%}: {'met' if share <= GOAL_OVERHEAD_SHARE else 'NOT met'}); transport "
          f"(2 DDS hops + this client) {overhead - own:5.2f} ms; providers: {node['providers']}")
    return {"rate_hz": rate, **node, "tracked_share": tracked_share, "arrived_share": arrived_share,
            "own_overhead_ms": own, "own_overhead_share": share, "overhead_ms": overhead,
            "transport_ms": overhead - own, "overhead_share": overhead / bare["p50"]}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    model = Path(args.model) if args.model else default_model_dir()
    transport = use_transport_profile(not args.default_transport)
    name, frames, box = load_frames(args.sequence, args.frames, args.size)
    n = len(frames)
    h, w = frames[0].shape[:2]
    print(f"node benchmark: model {model}, sequence {name}, {max(n, args.frames)} frames of {w}x{h} {args.encoding}, "
          f"threads {args.threads or 'auto'}, transport: {transport}")

    first = bare_runtime_ms(model, frames, box, args.threads)
    rates = args.rates or [args.rate or DEFAULT_LOAD * MS / float(np.median(first))]
    print(f"bare runtime: {np.median(first):.1f} ms/frame ({MS / np.median(first):.0f} frames/s)")
    runs = []
    for rate in rates:
        with tempfile.TemporaryDirectory(prefix="stark_bench_node_") as tmp:
            runs.append((rate, node_run(model, args.sequence, n, args.size, rate, args.threads, Path(tmp),
                                        encoding=args.encoding, count=max(n, args.frames))))
    second = bare_runtime_ms(model, frames, box, args.threads)
    bare = min((_percentiles(first), _percentiles(second)), key=lambda p: p["p50"])
    print(f"  bare runtime update         p50 {bare['p50']:7.2f} ms   p99 {bare['p99']:7.2f} ms")
    results = [_judge(rate, node, bare) for rate, node in runs]
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(model), "sequence": name, "frames": n, "size": [w, h],
                                               "encoding": args.encoding, "transport": transport,
                                               "bare_runtime_ms": bare, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
