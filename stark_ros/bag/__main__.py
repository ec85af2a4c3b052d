"""python -m stark_ros.bag write SEQDIR OUT | replay BAG [--out DIR]

write:  a sequence folder (img/ + groundtruth.txt) -> a ROS 2 bag (MCAP, or sqlite3) with
        sensor_msgs/Image (or CompressedImage) frames, the initial box as stark_ros/TargetRequest
        and the ground truth on /ground_truth.
replay: play a bag into the live tracker node over DDS (timing kept, --rate, /clock), record its
        tracks and events into OUT/tracks_bag, and score them against the bag's ground truth.
        Bags recorded elsewhere: name their topics (--image-topic, --target-topic, --gt-topic).
"""

import argparse
import json
import sys

from stark_ros.bag.io import BagError, write_sequence_bag


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.bag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="sequence folder -> bag")
    w.add_argument("seqdir")
    w.add_argument("out")
    w.add_argument("--rate", type=float, default=10.0, help="frames per second of the bag's time stamps")
    w.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (JPEG) frames")
    w.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    r = sub.add_parser("replay", help="bag -> live tracker node -> tracks, events, metrics")
    r.add_argument("bag")
    r.add_argument("--out", default="out/replay", help="folder for tracks_bag, replay.json and the node log")
    r.add_argument("--model", default=None, help="model folder (default: the installed default model)")
    r.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    r.add_argument("--image-topic")
    r.add_argument("--target-topic")
    r.add_argument("--gt-topic")
    r.add_argument("--use-sim-time", action="store_true", help="the node follows the bag's /clock")
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            print(f"wrote {write_sequence_bag(args.seqdir, args.out, args.rate, args.compressed, args.storage)}")
        else:
            from stark_ros.bag.replay import replay

            result = replay(args.bag, args.out, args.model, args.rate, args.image_topic, args.target_topic,
                            args.gt_topic, args.use_sim_time)
            print(json.dumps(result.summary(), indent=2, default=float))
    except (BagError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
