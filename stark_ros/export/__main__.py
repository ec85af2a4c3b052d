"""python -m stark_ros.export CHECKPOINT -o DIR [--variant ST50] [--score-source appearance]"""

import argparse
import logging
import sys

from stark_ros.export.onnx_export import export_checkpoint
from stark_ros.model import CheckpointError
from stark_ros.tracking.settings import SCORE_SOURCES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stark_ros.export",
        description="Export a STARK checkpoint (official *.pth.tar, mmtracking, or stark_ros) to the two ONNX "
                    "graphs the runtime and the ROS node run: DIR/template.onnx and DIR/track.onnx.")
    parser.add_argument("checkpoint", help="checkpoint file; its layout is detected automatically")
    parser.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    parser.add_argument("--variant", choices=["S50", "ST50", "ST101", "LITE"],
                        help="architecture of an official/mmtracking checkpoint (default: read off the weights)")
    parser.add_argument("--score-source", choices=SCORE_SOURCES,
                        help="where the runtime takes a target's score from: the score head (default), the "
                             "colour appearance of the tracked box (for a model whose score head cannot tell "
                             "present from absent), or a combination of both (stark_ros.tracking.confidence); "
                             "the score study's --apply chooses one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        template, track = export_checkpoint(args.checkpoint, args.output, variant=args.variant,
                                            score_source=args.score_source)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {template} and {track}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
