"""The crop graph: the crops of all targets of a frame in one ONNX Runtime call, on the device the
network runs on (the frame uploaded once; gather, resample, normalise and pad mask there).

It computes what :func:`stark_ros.core.geometry.crop_batch` computes, bit for bit: the host plans
each crop (:class:`~stark_ros.core.geometry.CropPlan`: OpenCV's sampling positions and fixed-point
weights, a few hundred numbers per crop) and the graph gathers the sampled pixels and repeats
OpenCV's integer arithmetic, then normalises through the same float32 lookup table.

The runtime ships the graph (``stark_ros/runtime/crop.onnx``) and needs no onnx to run it; the
``onnx`` package is needed only to build it (``python -m stark_ros.runtime.crops`` rewrites the
shipped file; a test checks that it is up to date).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stark_ros.core.geometry import CropPlan, axis_taps, normalization_table

# Input and output names (the runtime's crop session uses the same, see stark_ros.runtime.crops).
IN_FRAME = "frame"                # (H, W, 3) uint8 RGB
IN_ROW_INDEX = "row_index"        # (N, 2, S) int64 frame rows of the two vertical taps
IN_ROW_WEIGHT = "row_weight"      # (N, 2, S) int32 their fixed-point weights
IN_COL_INDEX = "col_index"        # (N, 2, S) int64 frame columns of the two horizontal taps
IN_COL_WEIGHT = "col_weight"      # (N, 2, S) int32
IN_DIVISORS = "divisors"          # (N, 4) int32: 2**shift_in, 2**shift_mid, 2**shift_out, rounding term
IN_ROW_PAD = "row_pad"            # (N, S) float32, 1 where padding weighs in on the output row
IN_COL_PAD = "col_pad"            # (N, S) float32
IN_TABLE = "table"                # (3 * 256,) float32 normalised value of each level, channel-major
OUT_IMAGE = "image"               # (N, 3, S, S) float32
OUT_MASK = "mask"                 # (N, S, S) float32, 1 = padding
OPSET = 17
LEVELS = 256
SHIPPED = Path(__file__).resolve().with_name("crop.onnx")


def build_crop_graph():
    """The crop graph as an ``onnx.ModelProto``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = []

    def const(name, value):
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name)))
        return name

    def op(kind, inputs, name, **attrs):
        nodes.append(helper.make_node(kind, inputs, [name], name=f"{name}_{kind}", **attrs))
        return name

    zero, one = const("c0", np.int64(0)), const("c1", np.int64(1))
    width = op("Gather", [op("Shape", [IN_FRAME], "frame_shape"), one], "width", axis=0)
    flat = op("Reshape", [IN_FRAME, const("pixels_by_channel", np.array([-1, 3], dtype=np.int64))], "flat")
    taps = (zero, one)
    divisor = [op("Reshape", [op("Gather", [IN_DIVISORS, const(f"k{k}", np.int64(k))], f"div{k}_flat", axis=1),
                              const(f"div{k}_shape", np.array([-1, 1, 1, 1], dtype=np.int64))], f"div{k}")
               for k in range(4)]
    axes = {name: const(f"axes_{name}", np.array(v, dtype=np.int64))
            for name, v in {"1": [1], "2": [2], "13": [1, 3], "23": [2, 3]}.items()}
    row_start = [op("Mul", [op("Unsqueeze", [op("Gather", [IN_ROW_INDEX, t], f"rows{a}", axis=1), axes["2"]],
                                   f"rows{a}_col"), width], f"row_start{a}") for a, t in enumerate(taps)]
    cols = [op("Unsqueeze", [op("Gather", [IN_COL_INDEX, t], f"cols{b}", axis=1), axes["1"]], f"cols{b}_row")
            for b, t in enumerate(taps)]
    col_w = [op("Unsqueeze", [op("Gather", [IN_COL_WEIGHT, t], f"colw{b}", axis=1), axes["13"]], f"colw{b}_b")
             for b, t in enumerate(taps)]
    row_w = [op("Unsqueeze", [op("Gather", [IN_ROW_WEIGHT, t], f"roww{a}", axis=1), axes["23"]], f"roww{a}_b")
             for a, t in enumerate(taps)]
    vertical = []
    for a in range(2):
        weighted = []
        for b in range(2):
            pixels = op("Gather", [flat, op("Add", [row_start[a], cols[b]], f"at{a}{b}")], f"pix{a}{b}", axis=0)
            weighted.append(op("Mul", [op("Cast", [pixels], f"pix{a}{b}_i", to=TensorProto.INT32), col_w[b]],
                               f"h{a}{b}"))
        horizontal = op("Add", weighted, f"h{a}")
        # Integer Div truncates, which is the shift of these non-negative values.
        vertical.append(op("Div", [op("Mul", [row_w[a], op("Div", [horizontal, divisor[0]], f"h{a}_in")], f"v{a}_w"),
                                   divisor[1]], f"v{a}"))
    level = op("Div", [op("Add", [op("Add", vertical, "v"), divisor[3]], "v_round"), divisor[2]], "level")
    index = op("Add", [level, const("channel_offset", np.arange(3, dtype=np.int32) * LEVELS)], "table_index")
    values = op("Gather", [IN_TABLE, index], "normalised", axis=0)
    nodes.append(helper.make_node("Transpose", [values], [OUT_IMAGE], perm=[0, 3, 1, 2], name="image_chw"))
    nodes.append(helper.make_node("Max", [op("Unsqueeze", [IN_ROW_PAD, axes["2"]], "row_pad_col"),
                                          op("Unsqueeze", [IN_COL_PAD, axes["1"]], "col_pad_row")],
                                  [OUT_MASK], name="pad_mask"))
    tensor = helper.make_tensor_value_info
    inputs = [tensor(IN_FRAME, TensorProto.UINT8, ["H", "W", 3]),
              tensor(IN_ROW_INDEX, TensorProto.INT64, ["N", 2, "S"]),
              tensor(IN_ROW_WEIGHT, TensorProto.INT32, ["N", 2, "S"]),
              tensor(IN_COL_INDEX, TensorProto.INT64, ["N", 2, "S"]),
              tensor(IN_COL_WEIGHT, TensorProto.INT32, ["N", 2, "S"]),
              tensor(IN_DIVISORS, TensorProto.INT32, ["N", 4]),
              tensor(IN_ROW_PAD, TensorProto.FLOAT, ["N", "S"]),
              tensor(IN_COL_PAD, TensorProto.FLOAT, ["N", "S"]),
              tensor(IN_TABLE, TensorProto.FLOAT, [3 * LEVELS])]
    outputs = [tensor(OUT_IMAGE, TensorProto.FLOAT, ["N", 3, "S", "S"]),
               tensor(OUT_MASK, TensorProto.FLOAT, ["N", "S", "S"])]
    graph = helper.make_graph(nodes, "stark_ros_crops", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="stark_ros")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def crop_feeds(frame: np.ndarray, plans: list[CropPlan], mean, std) -> dict[str, np.ndarray]:
    """The crop graph's inputs for ``plans`` (all of one frame and one output size), computed for all
    crops at once."""
    size = plans[0].output_size
    height, width = frame.shape[:2]
    sides = [p.side for p in plans]
    rows = axis_taps(size, sides, [p.top for p in plans], height, False)
    cols = axis_taps(size, sides, [p.left for p in plans], width, True)
    shift_in, shift_mid, shift_out = np.array([p.shifts for p in plans], dtype=np.int32).T
    one = np.int32(1)
    divisors = np.stack([one << shift_in, one << shift_mid, one << shift_out, one << (shift_out - 1)], axis=1)
    return {IN_FRAME: np.ascontiguousarray(frame),
            IN_ROW_INDEX: np.stack([rows.index0, rows.index1], axis=1),
            IN_ROW_WEIGHT: np.stack([rows.weight0, rows.weight1], axis=1),
            IN_COL_INDEX: np.stack([cols.index0, cols.index1], axis=1),
            IN_COL_WEIGHT: np.stack([cols.weight0, cols.weight1], axis=1),
            IN_DIVISORS: divisors.astype(np.int32),
            IN_ROW_PAD: rows.padded.astype(np.float32),
            IN_COL_PAD: cols.padded.astype(np.float32),
            # A writable copy of the shared read-only table (3 KB): IO binding may want to own its input.
            IN_TABLE: normalization_table(tuple(float(m) for m in mean), tuple(float(s) for s in std)).ravel().copy()}


class CropSession:
    """The shipped crop graph in an ONNX Runtime session on ``providers``. With ``device`` (a GPU
    provider's device name, e.g. "cuda"), its outputs stay there as ``OrtValue``s for the network's
    session to read; without, they come back as numpy arrays."""

    def __init__(self, providers: list[tuple[str, dict]], device: str | None, session_options):
        self.session = ort.InferenceSession(str(SHIPPED), sess_options=session_options,
                                            providers=[p for p, _ in providers],
                                            provider_options=[o for _, o in providers])
        self.providers = tuple(self.session.get_providers())
        # Outputs stay on the device only where the graph really runs there.
        self.device = device if device and self.providers[0] != "CPUExecutionProvider" else None

    def run(self, frame: np.ndarray, plans: list[CropPlan], mean, std):
        feeds = crop_feeds(frame, plans, mean, std)
        if self.device is None:
            return tuple(self.session.run([OUT_IMAGE, OUT_MASK], feeds))
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in (OUT_IMAGE, OUT_MASK):
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return tuple(binding.get_outputs())


def main(argv=None) -> int:
    SHIPPED.write_bytes(build_crop_graph().SerializeToString())
    print(SHIPPED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
