"""``python -m stark_ros.bench soak``: the tracker node over many frames, the way a robot runs it
(camera, node and the consumer of ``tracks`` each in its own process, the shared sequence played in
a loop): the node's resident memory, the latency from publishing a frame to receiving its tracks,
and where the untracked frames went (dropped by the node's queue for newer ones, skipped by reason,
lost in transport), printed per time window and as a summary (memory growth from the first window
to the last). No goal is judged here: it is a curve to read.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from stark_ros.bench.node import DEFAULT_SEQUENCE, load_frames, node_run, parse_size
from stark_ros.client.process import use_transport_profile
from stark_ros.runtime import default_model_dir

DEFAULT_FRAMES = 2000
DEFAULT_RATE_HZ = 15.0
DEFAULT_WINDOW_S = 10.0
SAMPLE_PERIOD_S = 1.0
NS_PER_S = 1e9
NS_PER_MS = 1e6


def windows(result: dict, window_s: float) -> list[dict]:
    """Per window of publish time: frames published / tracked, latency p50 / p99, and the node's RSS
    and counters at the window's end (from the samples)."""
    published, arrived, samples = result["published_ns"], result["arrived_ns"], result["samples"]
    if not published:
        return []
    t0 = min(published.values())
    rows = []
    end = max(published.values())
    k = 0
    while t0 + k * window_s * NS_PER_S <= end:
        lo, hi = t0 + k * window_s * NS_PER_S, t0 + (k + 1) * window_s * NS_PER_S
        keys = [key for key, t in published.items() if lo <= t < hi]
        lat = [(arrived[key] - published[key]) / NS_PER_MS for key in keys if key in arrived]
        at_end = [s for s in samples if s["t_ns"] < hi]
        last = at_end[-1] if at_end else {}
        rows.append({"t_s": (k + 1) * window_s, "published": len(keys), "tracked": len(lat),
                     "p50_ms": float(np.percentile(lat, 50)) if lat else float("nan"),
                     "p99_ms": float(np.percentile(lat, 99)) if lat else float("nan"),
                     "rss_mb": last.get("rss_mb", float("nan")),
                     "dropped": int(last.get("frames_dropped", "0")),
                     "skipped": last.get("frames_skipped_by_reason", "")})
        k += 1
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.bench soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the installed default model)")
    parser.add_argument("--sequence", default=DEFAULT_SEQUENCE, help="a folder of shared/data/sot (played in a loop)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames published in all")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE_HZ, help="frames/s published")
    parser.add_argument("--size", type=parse_size, help="resize frames to WIDTHxHEIGHT")
    parser.add_argument("--encoding", default="bgr8", help="image encoding published")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads of the node (0: auto)")
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW_S, help="seconds per printed row")
    parser.add_argument("--default-transport", action="store_true", help="Fast DDS defaults, not the profile")
    parser.add_argument("--json", help="also write the rows and the summary to this JSON file")
    args = parser.parse_args(argv)

    model = Path(args.model) if args.model else default_model_dir()
    transport = use_transport_profile(not args.default_transport)
    name, frames, _ = load_frames(args.sequence, args.frames, args.size)
    h, w = frames[0].shape[:2]
    print(f"soak: model {model}, {args.frames} frames of {name} ({len(frames)} in a loop, {w}x{h} {args.encoding}) "
          f"at {args.rate:g} frames/s, transport: {transport}")
    with tempfile.TemporaryDirectory(prefix="stark_bench_soak_") as tmp:
        result = node_run(model, args.sequence, len(frames), args.size, args.rate, args.threads, Path(tmp),
                          encoding=args.encoding, count=args.frames, sample_period_s=SAMPLE_PERIOD_S)
    rows = windows(result, args.window)
    print(f"{'t [s]':>7} {'published':>9} {'tracked':>8} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>8} "
          f"{'queue drops':>11}  skipped by reason")
    for r in rows:
        print(f"{r['t_s']:7.0f} {r['published']:9d} {r['tracked']:8d} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
              f"{r['rss_mb']:8.1f} {r['dropped']:11d}  {r['skipped'] or '-'}")
    rss = [r["rss_mb"] for r in rows if np.isfinite(r["rss_mb"])]
    summary = {"published": result["published"], "tracked": result["tracked"], "processed": result["processed"],
               "dropped_by_queue": result["dropped"], "lost_in_transport": result["lost_in_transport"],
               "skipped_by_reason": result["skipped_by_reason"], "latency_ms": result["latency_ms"],
               "rss_first_mb": rss[0] if rss else float("nan"), "rss_last_mb": rss[-1] if rss else float("nan"),
               "rss_max_mb": max(rss) if rss else float("nan")}
    print(f"summary: tracked {summary['tracked']}/{summary['published']}; untracked frames: dropped by the node's "
          f"queue {summary['dropped_by_queue']}, lost in transport {summary['lost_in_transport']}, skipped "
          f"{summary['skipped_by_reason'] or 'none'}; latency p50 {summary['latency_ms']['p50']:.1f} ms, p99 "
          f"{summary['latency_ms']['p99']:.1f} ms; RSS {summary['rss_first_mb']:.0f} MB after the first window, "
          f"{summary['rss_last_mb']:.0f} MB at the end (max {summary['rss_max_mb']:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
